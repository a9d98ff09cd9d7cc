//! Why a request got no response from its handler, and what the edge answers for each reason.

use std::fmt;
use std::time::Duration;

use super::cpu::CpuLimitExceeded;
use super::limits::MemoryLimitExceeded;

/// Why a request got no response from its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// Every pool slot stayed busy: try again shortly.
    PoolBusy,
    /// The app had its whole share of the pool busy: try again shortly.
    AppBusy,
    /// The handler used up its CPU time budget (the one given).
    CpuLimit(Duration),
    /// A memory growth ran into a bound; the message says which.
    MemoryLimit(String),
    /// The whole request took longer than the app's `limits.timeout_ms`.
    Timeout(Duration),
    /// The guest trapped (a panic, `unreachable`, a stack overflow...).
    Trap(String),
    /// The guest answered with a `wasi:http` error code instead of a response.
    ErrorCode(String),
    /// The guest returned without setting a response.
    NoResponse,
    /// Instantiation or the host failed.
    Host(String),
}

impl GuestFailure {
    /// The HTTP status to answer with: 503 when busy or over a limit, 504 on timeout, else 500.
    pub fn status(&self) -> u16 {
        match self {
            GuestFailure::PoolBusy
            | GuestFailure::AppBusy
            | GuestFailure::CpuLimit(_)
            | GuestFailure::MemoryLimit(_) => 503,
            GuestFailure::Timeout(_) => 504,
            GuestFailure::Trap(_)
            | GuestFailure::ErrorCode(_)
            | GuestFailure::NoResponse
            | GuestFailure::Host(_) => 500,
        }
    }

    /// A short kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::PoolBusy => "pool_busy",
            GuestFailure::AppBusy => "app_busy",
            GuestFailure::CpuLimit(_) => "cpu_limit",
            GuestFailure::MemoryLimit(_) => "memory_limit",
            GuestFailure::Timeout(_) => "timeout",
            GuestFailure::Trap(_) => "trap",
            GuestFailure::ErrorCode(_) => "error_code",
            GuestFailure::NoResponse => "no_response",
            GuestFailure::Host(_) => "host_error",
        }
    }

    /// The failure an error out of the guest's run stands for.
    pub(crate) fn classify(err: wasmtime::Error) -> GuestFailure {
        if let Some(cpu) = err.downcast_ref::<CpuLimitExceeded>() {
            return GuestFailure::CpuLimit(cpu.budget);
        }
        if let Some(memory) = err.downcast_ref::<MemoryLimitExceeded>() {
            return GuestFailure::MemoryLimit(memory.to_string());
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return GuestFailure::PoolBusy;
        }
        if err.downcast_ref::<wasmtime::Trap>().is_some() {
            return GuestFailure::Trap(format!("{err:?}"));
        }
        GuestFailure::Host(format!("{err:#}"))
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::PoolBusy => write!(f, "every instance slot is busy; retry shortly"),
            GuestFailure::AppBusy => write!(
                f,
                "the app has its whole share of the instance pool busy; retry shortly"
            ),
            GuestFailure::CpuLimit(budget) => {
                write!(
                    f,
                    "handler exceeded its CPU time limit of {} ms",
                    budget.as_millis()
                )
            }
            GuestFailure::MemoryLimit(detail) => write!(f, "{detail}"),
            GuestFailure::Timeout(limit) => {
                write!(f, "handler did not finish within {} ms", limit.as_millis())
            }
            GuestFailure::Trap(detail) => write!(f, "handler trapped: {detail}"),
            GuestFailure::ErrorCode(code) => write!(f, "handler answered with error {code}"),
            GuestFailure::NoResponse => write!(f, "handler returned without a response"),
            GuestFailure::Host(detail) => write!(f, "host error: {detail}"),
        }
    }
}
