//! Checking a component before it is accepted: it must parse as a component and link against
//! exactly what the nodes provide. The origin runs this on every upload, so a component that
//! would fail on the nodes never becomes a version.

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::HostState;
use super::compile::check_header;
use super::linker;

pub struct ComponentValidator {
    engine: Engine,
    linker: Linker<HostState>,
}

impl ComponentValidator {
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
