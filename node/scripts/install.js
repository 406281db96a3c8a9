// npm `install` hook: when no prebuilt native binding loads, build one from the Rust sources
// with napi (cargo must be installed). Builds with profile $CARGO_PROFILE (default dev) into the
// Cargo workspace's shared target dir.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.resolve(__dirname, '..')

function loads() {
  const probe = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', path.join(root, 'index.js')], {
    stdio: 'ignore',
  })
  return probe.status === 0
}

if (process.env.EDGEMODULE_SKIP_BUILD !== '1' && !loads()) {
  const profile = process.env.CARGO_PROFILE || 'dev'
  const args = ['build', '--platform', '--no-const-enum']
  if (profile === 'release') args.push('--release')
  else if (profile !== 'dev') args.push('--profile', profile)
  let command
  try {
    const pkg = require.resolve('@napi-rs/cli/package.json', { paths: [root] })
    command = [process.execPath, [path.join(path.dirname(pkg), require(pkg).bin.napi), ...args]]
  } catch {
    // Installed as a dependency, devDependencies are absent: fetch the pinned CLI with npx.
    const pinned = require(path.join(root, 'package.json')).devDependencies['@napi-rs/cli']
    command = ['npx', ['--yes', `--package=@napi-rs/cli@${pinned}`, 'napi', ...args]]
  }
  console.error(`edgemodule: building the native binding (cargo profile ${profile})`)
  const r = spawnSync(command[0], command[1], { cwd: root, stdio: 'inherit' })
  process.exit(r.status === null ? 1 : r.status)
}
