//! Unit tests for handlers, on the host: `cargo test` in an app runs its handler with no node
//! and no wasm. Off wasm the SDK swaps what would be host calls for this thread's own state:
//!
//! * [`crate::kv`] is an in-memory store with the node's semantics;
//! * [`crate::config`] returns what [`set_config`] set;
//! * [`crate::fetch`] sends the request to the stub set with [`on_fetch`] (no stub: 502).
//!
//! Each test runs on its own thread, so tests do not see each other's state.
//!
//! ```
//! use outpost_sdk::prelude::*;
//! use outpost_sdk::{Handler, Request, Response, Result, testing};
//!
//! struct Greeter;
//!
//! impl Handler for Greeter {
//!     async fn handle(_request: Request) -> Result<Response> {
//!         let greeting = outpost_sdk::config::require("GREETING")?;
//!         Ok(Response::text(greeting))
//!     }
//! }
//!
//! testing::set_config("GREETING", "hi");
//! let response = testing::call::<Greeter>(Request::get("/").body(().into()).unwrap());
//! assert_eq!(response.status(), 200);
//! assert_eq!(testing::block_on(response.into_body().text()).unwrap(), "hi");
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::fetch::FetchOptions;
use crate::{Error, Handler, Request, Response, Result};

pub use crate::runtime::block_on;

type FetchFuture = Pin<Box<dyn Future<Output = Result<Response>>>>;
type FetchStub = Rc<dyn Fn(Request) -> FetchFuture>;

std::thread_local! {
    static FETCH: RefCell<Option<FetchStub>> = const { RefCell::new(None) };
}

/// Run `H` on `request` as the node would: an `Err` becomes the response it stands for.
pub fn call<H: Handler>(request: Request) -> Response {
    block_on(H::handle(request)).unwrap_or_else(Error::into_response)
}

/// Answer this thread's [`crate::fetch`] calls with `stub`. The fetch's timeouts apply: a stub
/// slower than the `first_byte_timeout` fails the fetch as the node would.
pub fn on_fetch<S, F>(stub: S)
where
    S: Fn(Request) -> F + 'static,
    F: Future<Output = Result<Response>> + 'static,
{
    let stub: FetchStub = Rc::new(move |request| Box::pin(stub(request)));
    FETCH.with(|slot| *slot.borrow_mut() = Some(stub));
}

/// Give the config value `key` for this thread's [`crate::config`] calls.
pub fn set_config(key: &str, value: &str) {
    crate::config::backend::set(key, value);
}

/// Forget this thread's KV contents, config values and fetch stub.
pub fn reset() {
    crate::kv::memory::reset();
    crate::config::backend::reset();
    FETCH.with(|slot| slot.borrow_mut().take());
}

pub(crate) async fn fetch_stub(
    request: Request,
    options: FetchOptions,
    authority: &str,
) -> Result<Response> {
    let stub = FETCH.with(|slot| slot.borrow().clone()).ok_or_else(|| {
        Error::bad_gateway(format!(
            "fetch to {authority} failed: no stub (set one with outpost_sdk::testing::on_fetch)"
        ))
    })?;
    let response = stub(request);
    match options.first_byte_timeout {
        Some(limit) => crate::runtime::timeout(limit, response)
            .await
            .map_err(|_| {
                crate::fetch::timed_out(authority, "no response within the first-byte timeout")
            })?,
        None => response.await,
    }
}
