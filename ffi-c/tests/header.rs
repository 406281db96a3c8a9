//! The header drift gate: generates include/edgemodule.h in memory with the pinned cbindgen and
//! compares it with the committed file. Set EDGEMODULE_BLESS=1 to rewrite the file instead.

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("../include/edgemodule.h")
}

fn generate() -> String {
    let dir = crate_dir();
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    config.after_includes = Some(format!(
        "\n#define EDGE_VERSION_MAJOR {}\n#define EDGE_VERSION_MINOR {}\n#define EDGE_VERSION_PATCH {}\n\
         #define EDGE_VERSION \"{}\"\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<_>, Vec<_>) = (old.lines().collect(), new.lines().collect());
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            if let Some(x) = x {
                out.push_str(&format!("{:5} - {x}\n", i + 1));
            }
            if let Some(y) = y {
                out.push_str(&format!("{:5} + {y}\n", i + 1));
            }
            shown += 1;
            if shown > 40 {
                out.push_str("...\n");
                break;
            }
        }
    }
    out
}

#[test]
fn header_is_up_to_date() {
    let generated = generate();
    let path = header_path();
    if std::env::var_os("EDGEMODULE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate with EDGEMODULE_BLESS=1 cargo test -p edgemodule-ffi --test header\n{}",
        path.display(),
        diff(&committed, &generated)
    );
}

fn macro_value(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("{name} missing from the header"))
        .trim()
        .to_string()
}

#[test]
fn version_macros_match_the_crate_version() {
    let header = std::fs::read_to_string(header_path()).unwrap();
    assert_eq!(macro_value(&header, "EDGE_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(macro_value(&header, "EDGE_VERSION_MINOR"), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(macro_value(&header, "EDGE_VERSION_PATCH"), env!("CARGO_PKG_VERSION_PATCH"));
    assert_eq!(macro_value(&header, "EDGE_VERSION"), format!("\"{}\"", env!("CARGO_PKG_VERSION")));
    let runtime = unsafe { std::ffi::CStr::from_ptr(edgemodule::edge_version()) };
    assert_eq!(runtime.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn header_uses_only_the_allowed_system_includes() {
    let header = std::fs::read_to_string(header_path()).unwrap();
    let includes: Vec<&str> = header.lines().filter(|l| l.starts_with("#include")).collect();
    assert_eq!(includes, ["#include <stdint.h>", "#include <stddef.h>", "#include <stdbool.h>"]);
    assert!(header.contains("#ifndef EDGEMODULE_H"));
    assert!(header.contains("do not edit"));
    let _ = Path::new("");
}
