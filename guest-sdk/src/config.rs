//! Per-app configuration values, read through the proposed `wasi:config/store` interface.
//!
//! On Outpost the values come from the `[config]` table of the app's `outpost.toml`. The same
//! values are also the guest's environment, so `std::env::var` sees them too (that import is not
//! in the proxy world, so prefer this module for handlers that should also run elsewhere).

use crate::bindings::wasi::config::store;

use crate::{Error, Result};

/// The value of `key`, or `None` if the app defines no such value.
pub fn get(key: &str) -> Result<Option<String>> {
    store::get(key).map_err(config_error)
}

/// The value of `key`, or a 500 naming the missing key.
pub fn require(key: &str) -> Result<String> {
    get(key)?
        .ok_or_else(|| Error::internal(format!("config value {key:?} is not set for this app")))
}

/// Every configuration value of the app.
pub fn all() -> Result<Vec<(String, String)>> {
    store::get_all().map_err(config_error)
}

fn config_error(err: store::Error) -> Error {
    Error::internal(match err {
        store::Error::Upstream(message) => format!("config store failed: {message}"),
        store::Error::Io(message) => format!("config store i/o failed: {message}"),
    })
}
