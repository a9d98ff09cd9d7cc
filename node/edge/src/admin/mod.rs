//! Operating a node: the admin listener (`/metrics`, `/healthz`, `/readyz`), readiness and the
//! hooks that tell an anycast route announcer about it, and the drain sequence on shutdown.

mod handler;
mod health;
mod hooks;

pub use handler::AdminHandler;
pub use health::{Health, Readiness};
pub use hooks::{Lifecycle, run_lifecycle};
