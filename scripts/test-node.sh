#!/usr/bin/env bash
# Node package checks: npm ci, `npm install ./node` from a new project (its install hook builds
# the addon on a fresh checkout), build the addon and edgemodule-hub (shared target dir, profile
# ${CARGO_PROFILE:-dev}), the index.js/index.d.ts drift gate, tsc --noEmit, node --test against
# a real hub. Exits non-zero on the first failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${CARGO_PROFILE:-dev}"
case "$profile" in
  dev) profile_dir=debug; napi_profile=() ;;
  release) profile_dir=release; napi_profile=(--release) ;;
  *) profile_dir="$profile"; napi_profile=(--profile "$profile") ;;
esac

step() { printf '\n==> %s\n' "$*"; }

cd "$root/node"

step "package-lock.json downloads only from the npm registry"
# Local stand-ins (file:) are fine; every URL must be the npm registry's.
if grep -o '"resolved": *"[a-z+]*://[^"]*"' package-lock.json | grep -v '"https://registry.npmjs.org/'; then
  echo "package-lock.json records a download host other than the npm registry" >&2
  exit 1
fi

step "npm ci"
# The package's install hook would build the addon; it is built explicitly below.
EDGEMODULE_SKIP_BUILD=1 npm ci --no-audit --no-fund

step "npm install ./node from a new project (the install hook builds the addon when none loads yet)"
project="$(mktemp -d)"
trap 'rm -rf "$project"' EXIT
(
  cd "$project"
  npm init -y >/dev/null
  CARGO_PROFILE="$profile" npm install --no-audit --no-fund "$root/node"
  node -e '
    require("edgemodule").ModuleClient.fromConnectionString("HostName=h").then(
      () => { console.error("the installed package accepted a malformed connection string"); process.exit(1) },
      (e) => {
        if (e.code !== "INVALID_ARGUMENT") { console.error(e); process.exit(1) }
        console.log("npm install ./node: the package loads and its addon answers")
      })'
)

target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"

step "cargo build -p edgemodule-hub --profile $profile"
cargo build -p edgemodule-hub --profile "$profile" --manifest-path "$root/Cargo.toml"

step "napi build --platform (profile $profile, target dir $target_dir)"
npx --no-install napi build --platform --no-const-enum "${napi_profile[@]}"

step "index.js and index.d.ts match the committed ones"
cd "$root"
for f in node/index.js node/index.d.ts; do
  if ! git ls-files --error-unmatch "$f" >/dev/null 2>&1; then
    echo "$f is not committed" >&2
    exit 1
  fi
done
if ! git diff --exit-code -- node/index.js node/index.d.ts; then
  echo "index.js/index.d.ts are stale: commit the regenerated files" >&2
  exit 1
fi
cd "$root/node"

step "tsc --noEmit"
npx --no-install tsc --noEmit -p test/types

step "node --test"
export EDGEMODULE_HUB_BIN="$target_dir/$profile_dir/edgemodule-hub"
node --test --test-timeout=120000 --test-reporter=spec test/*.test.mjs
