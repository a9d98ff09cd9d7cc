//! Embeds the guest SDK's non-Rust parts (the WIT worlds, the JavaScript and Python packages and
//! the pinned JS toolchain manifest) in the `outpost` binary, so `outpost build` can build JS
//! and Python handlers on a machine that has only the binary. Every file under the listed
//! folders is included; adding one needs no change here.

use std::path::{Path, PathBuf};

/// Folders of `guest-sdk/` whose files `outpost build` needs, relative to it.
const EMBEDDED: &[&str] = &["wit", "js/src", "js/toolchain", "python/outpost"];

fn main() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    let mut files = Vec::new();
    for folder in EMBEDDED {
        let dir = sdk.join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &mut files);
    }
    files.sort();
    let mut out = String::from(
        "/// Files of guest-sdk/ embedded by build.rs: (path relative to guest-sdk/, contents).\n\
         pub(crate) static FILES: &[(&str, &[u8])] = &[\n",
    );
    for file in &files {
        let relative = file.strip_prefix(&sdk).expect("under guest-sdk/");
        let relative = relative.to_str().expect("UTF-8 path").replace('\\', "/");
        let absolute = file.canonicalize().expect("canonical path");
        out.push_str(&format!(
            "    ({relative:?}, include_bytes!({absolute:?})),\n"
        ));
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("guest_sdk.rs");
    std::fs::write(target, out).expect("writing guest_sdk.rs");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || name == "__pycache__" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
