//! Checking a component before it is accepted: it must parse as a component and link against
//! exactly what the nodes provide. The origin runs this on every upload, so a component that
//! would fail on the nodes never becomes a version.

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::HostState;
use super::compile::check_header;
use super::linker;

/// Checks components against the nodes' linker, with an engine of its own that compiles
/// cheaply.
pub struct ComponentValidator {
    engine: Engine,
    linker: Linker<HostState>,
}

impl ComponentValidator {
    /// A validator with an unoptimizing engine and the same linker the nodes build.
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Only types and linking matter here, not the speed of the code: compile it cheaply.
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::None);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let linker = linker::build(&engine)?;
        Ok(ComponentValidator { engine, linker })
    }

    /// Ok if the component would deploy; otherwise the reason, in one line.
    pub fn check(&self, wasm: &[u8]) -> anyhow::Result<()> {
        check_header(wasm)?;
        let component = Component::new(&self.engine, wasm).map_err(|err| {
            let text = format!("{err:#}");
            anyhow::anyhow!(
                "not a valid WebAssembly component: {}",
                text.lines().next().unwrap_or(&text)
            )
        })?;
        linker::prelink(&self.linker, &component)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy component whose handler traps, importing `extra` beside wasi:http/types.
    fn component_importing(extra: &str) -> Vec<u8> {
        let text = include_str!("../tests/components/trapping-proxy.wat");
        wat::parse_str(text.replace(";; EXTRA", extra)).unwrap()
    }

    #[test]
    fn the_whole_wasi_command_world_links() {
        let validator = ComponentValidator::new().unwrap();
        for interface in [
            "wasi:filesystem/types@0.2.0",
            "wasi:filesystem/preopens@0.2.3",
            "wasi:sockets/network@0.2.0",
            "wasi:sockets/instance-network@0.2.9",
            "wasi:sockets/tcp@0.2.0",
            "wasi:sockets/tcp-create-socket@0.2.0",
            "wasi:sockets/udp@0.2.0",
            "wasi:sockets/udp-create-socket@0.2.0",
            "wasi:sockets/ip-name-lookup@0.2.12",
            "wasi:cli/stdin@0.2.0",
            "wasi:cli/environment@0.2.0",
            "wasi:cli/exit@0.2.0",
            "wasi:random/insecure-seed@0.2.0",
        ] {
            let wasm = component_importing(&format!("(import \"{interface}\" (instance))"));
            validator
                .check(&wasm)
                .unwrap_or_else(|err| panic!("{interface}: {err:#}"));
        }
    }

    #[test]
    fn imports_nothing_provides_are_refused_by_name() {
        let validator = ComponentValidator::new().unwrap();
        // (An import of an instance with no exports is satisfied by anything, so give it one.)
        for interface in ["acme:thing/api@1.0.0", "wasi:filesystem/types@1.0.0"] {
            let wasm = component_importing(&format!(
                "(import \"{interface}\" (instance (export \"f\" (func))))"
            ));
            let err = validator.check(&wasm).unwrap_err().to_string();
            assert!(err.contains(interface), "{interface}: {err}");
        }
    }

    #[test]
    fn refuses_what_would_not_deploy() {
        let validator = ComponentValidator::new().unwrap();
        assert!(
            validator
                .check(b"nope")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        let empty = wat::parse_str("(component)").unwrap();
        assert!(
            validator
                .check(&empty)
                .unwrap_err()
                .to_string()
                .contains("does not export")
        );
    }
}
