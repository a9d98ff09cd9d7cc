//! The WIT world a JavaScript or Python app is built against, written per app: the proxy world,
//! `wasi:config` (an app's config can change at deploy without a rebuild), and the edge KV's
//! interfaces only when the app binds KV namespaces. componentize-js and componentize-py import
//! everything their world names, so a world kept to what the app uses keeps an app without KV
//! a plain proxy component that `wasmtime serve -S cli -S config` runs as well.

use std::path::Path;

use anyhow::Context;

use super::sdk;
use outpost_core::config::Language;

/// The world's package and name, as the tools take it.
pub(super) const WORLD: &str = "outpost:app/handler";

/// The KV interfaces, as the SDK's `extras` world lists them.
const KV_IMPORTS: &str = "    import wasi:keyvalue/store@0.2.0-draft;\n    \
                          import wasi:keyvalue/atomics@0.2.0-draft;\n    \
                          import wasi:keyvalue/batch@0.2.0-draft;\n    \
                          import outpost:kv/extras@0.1.0;\n";

/// The world's text for an app in `language`, with the KV interfaces if `kv`.
pub(super) fn world(language: Language, kv: bool) -> String {
    let http = match language {
        // StarlingMonkey imports the rest of the proxy world itself; the labels must be the
        // ones the engine was built with. (The SDK's own handler, for reused instances, uses
        // the types directly.)
        Language::Js => {
            "    import wasi:http/types@0.2.10;\n    export wasi:http/incoming-handler@0.2.10;\n"
        }
        _ => "    include wasi:http/proxy@0.2.12;\n",
    };
    format!(
        "// Written by `outpost build`: what this app imports and exports.\n\
         package outpost:app;\n\n\
         world handler {{\n{http}    import wasi:config/store@0.2.0-rc.1;\n{}}}\n",
        if kv { KV_IMPORTS } else { "" }
    )
}

/// A WIT folder at `target` (replacing what is there): the app's world at its root and the
/// SDK's WIT packages as its dependencies.
pub(super) fn write(target: &Path, language: Language, kv: bool) -> anyhow::Result<()> {
    if target.exists() {
        std::fs::remove_dir_all(target)
            .with_context(|| format!("removing {}", target.display()))?;
    }
    for (path, contents) in sdk::FILES {
        if let Some(dep) = path.strip_prefix("wit/deps/") {
            let file = target.join("deps").join(dep);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, contents)
                .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    let root = target.join("world.wit");
    std::fs::write(&root, world(language, kv))
        .with_context(|| format!("writing {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_interfaces_only_when_the_app_binds_namespaces() {
        let plain = world(Language::Python, false);
        assert!(plain.contains("include wasi:http/proxy@0.2.12;"), "{plain}");
        assert!(plain.contains("import wasi:config/store@0.2.0-rc.1;"));
        assert!(!plain.contains("keyvalue"));
        let js = world(Language::Js, true);
        assert!(
            js.contains("export wasi:http/incoming-handler@0.2.10;"),
            "{js}"
        );
        assert!(js.contains("import outpost:kv/extras@0.1.0;"));
        assert!(js.contains("import wasi:keyvalue/batch@0.2.0-draft;"));
    }
}
