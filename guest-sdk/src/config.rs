//! Per-app configuration values, read through the proposed `wasi:config/store` interface.
//!
//! On Outpost the values come from the `[config]` table of the app's `outpost.toml` (and its
//! secrets). The same values are also the guest's environment, so `std::env::var` sees them too
//! (that import is not in the proxy world, so prefer this module for handlers that should also
//! run elsewhere). Off wasm, in a handler's unit tests, the values are those the test set with
//! [`crate::testing::set_config`].

use crate::{Error, Result};

/// The value of `key`, or `None` if the app defines no such value.
pub fn get(key: &str) -> Result<Option<String>> {
    backend::get(key)
}

/// The value of `key`, or a 500 naming the missing key.
pub fn require(key: &str) -> Result<String> {
    get(key)?
        .ok_or_else(|| Error::internal(format!("config value {key:?} is not set for this app")))
}

/// Every configuration value of the app.
pub fn all() -> Result<Vec<(String, String)>> {
    backend::all()
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use crate::bindings::wasi::config::store;
    use crate::{Error, Result};

    pub(super) fn get(key: &str) -> Result<Option<String>> {
        store::get(key).map_err(config_error)
    }

    pub(super) fn all() -> Result<Vec<(String, String)>> {
        store::get_all().map_err(config_error)
    }

    fn config_error(err: store::Error) -> Error {
        Error::internal(match err {
            store::Error::Upstream(message) => format!("config store failed: {message}"),
            store::Error::Io(message) => format!("config store i/o failed: {message}"),
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::Result;

    std::thread_local! {
        static VALUES: RefCell<BTreeMap<String, String>> = RefCell::default();
    }

    pub(crate) fn set(key: &str, value: &str) {
        VALUES.with(|values| values.borrow_mut().insert(key.into(), value.into()));
    }

    pub(crate) fn reset() {
        VALUES.with(|values| values.borrow_mut().clear());
    }

    pub(super) fn get(key: &str) -> Result<Option<String>> {
        Ok(VALUES.with(|values| values.borrow().get(key).cloned()))
    }

    pub(super) fn all() -> Result<Vec<(String, String)>> {
        Ok(VALUES.with(|values| {
            values
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }
}
