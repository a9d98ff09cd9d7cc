//! The per-request memory limit, as a wasmtime `ResourceLimiter` that traps with a typed error
//! so the node can tell an out-of-memory apart from any other trap.

use std::fmt;

use wasmtime::ResourceLimiter;

/// The trap raised when a guest asks for more linear memory than its app may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub requested: u64,
}

impl fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handler exceeded its memory limit of {} MiB (asked for {} MiB)",
            self.limit >> 20,
            self.requested.div_ceil(1 << 20)
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}

/// Most table elements an instance may grow to: generous for real code, a cap for runaway code.
const MAX_TABLE_ELEMENTS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    memory_bytes: u64,
}

impl GuestLimits {
    pub fn new(memory_bytes: u64) -> Self {
        GuestLimits { memory_bytes }
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_bytes,
                requested: desired as u64,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_a_typed_error() {
        let mut limits = GuestLimits::new(1 << 20);
        assert!(limits.memory_growing(0, 1 << 20, None).unwrap());
        let err = limits.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        let exceeded = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(exceeded.requested, 2 << 20);
        assert!(err.to_string().contains("memory limit of 1 MiB"));
        assert!(
            !limits
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
    }
}
