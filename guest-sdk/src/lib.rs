//! `outpost-sdk`: write Outpost handlers in Rust.
//!
//! This crate owns the guest side of the contract: async handlers on the `http` crate's types
//! over the standard `wasi:http/proxy` world (WASI 0.2). A handler built with it runs unmodified
//! under `wasmtime serve -S cli`, Spin or any other host of that world that also gives
//! `wasi:random/insecure-seed` (std seeds `HashMap` hashing from it, and the `http` crate's
//! `HeaderMap` links that); Outpost-only extras are standard or proposed WASI interfaces
//! ([`config`] uses `wasi:config`, [`kv`] `wasi:keyvalue`).
//!
//! ```
//! use outpost_sdk::prelude::*;
//! use outpost_sdk::{Handler, Request, Response, Result, Router};
//!
//! struct App;
//!
//! impl Handler for App {
//!     async fn handle(request: Request) -> Result<Response> {
//!         Router::new()
//!             .get("/", |_| async { Ok(Response::text("hello\n")) })
//!             .get("/hello/{name}", hello)
//!             .handle(request)
//!             .await
//!     }
//! }
//!
//! async fn hello(request: Request) -> Result<Response> {
//!     let name = request.param("name").unwrap_or("stranger");
//!     Ok(Response::text(format!("hello, {name}\n")))
//! }
//!
//! outpost_sdk::export!(App);
//! # let response = outpost_sdk::testing::call::<App>(Request::get("/hello/you").body(().into()).unwrap());
//! # assert_eq!(outpost_sdk::testing::block_on(response.into_body().text()).unwrap(), "hello, you\n");
//! ```
//!
//! At a glance:
//!
//! | need | use |
//! | --- | --- |
//! | request, response | [`Request`] and [`Response`]: `http::Request<Body>`, `http::Response<Body>` |
//! | quick responses | [`ResponseExt`]: `Response::text`, `html`, `json`, `bytes`, `redirect`, `empty` |
//! | query, path parameters, client address | [`RequestExt`]: `query_param`, `param`, `client_ip`, ... |
//! | routing | [`Router`]: `get("/users/{id}", handler)`, 404 and 405 for you |
//! | bodies | [`Body`]: read with `chunk`, `into_stream`, `bytes`, `text`, `json`; write with `from_stream` or `channel` |
//! | outbound HTTP | [`fetch`], [`fetch_with`] and [`FetchOptions`] (timeouts), streamed both ways |
//! | concurrency | [`join_all`], [`spawn`], [`sleep`], [`timeout`] |
//! | errors | [`Error`]: a status and a message; `?` turns failures into responses |
//! | state, settings, logs | [`kv`], [`config`], [`log`] |
//! | unit tests on the host | `testing`: `call`, `block_on`, `on_fetch`, `set_config`, `reset` |
//!
//! Each request runs on a fresh instance, in an event loop that ends with the response: tasks
//! spawned and left running are dropped then. Anything the handler prints to stdout or stderr
//! becomes a log line on the node, tagged with the app and the request id.
//!
//! Build it as a `cdylib` for `wasm32-wasip2` (`outpost build`; see the repository README for
//! both toolchain paths). `cargo test` runs the same code on the host, with the KV, config and
//! fetch of the `testing` module in place of the node's.

mod body;
mod error;
mod fetch;
mod request;
mod response;
mod router;
mod runtime;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod wasi;

pub mod config;
pub mod kv;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use body::{Body, BodySender};
pub use bytes::Bytes;
pub use error::{Error, Result};
pub use fetch::{FetchOptions, fetch, fetch_with};
pub use http::{self, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
pub use request::RequestExt;
pub use response::ResponseExt;
pub use router::{Params, Router};
pub use runtime::{Task, join_all, sleep, spawn, timeout};

/// An HTTP request: the `http` crate's, with a streaming [`Body`].
pub type Request = http::Request<Body>;

/// An HTTP response: the `http` crate's, with a streaming [`Body`].
pub type Response = http::Response<Body>;

/// The extension traits, for `use outpost_sdk::prelude::*`.
pub mod prelude {
    pub use crate::{RequestExt, ResponseExt};
}

/// A request handler: one call per incoming request, on a fresh instance.
///
/// Returning `Err` sends the error's status and message (see [`Error`]), so `?` works for the
/// common failures: bad input becomes a 4xx, a failed fetch a 502 or 504.
pub trait Handler {
    /// Answer one request: `async fn handle(request: Request) -> Result<Response>`.
    fn handle(request: Request) -> impl std::future::Future<Output = Result<Response>>;
}

/// Export a [`Handler`] as the component's `wasi:http/incoming-handler`. Off wasm it expands to
/// nothing, so the crate's unit tests build on the host.
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        struct __OutpostIncomingHandler;

        #[cfg(target_arch = "wasm32")]
        impl $crate::__private::wasip2::exports::http::incoming_handler::Guest
            for __OutpostIncomingHandler
        {
            fn handle(
                request: $crate::__private::wasip2::http::types::IncomingRequest,
                response_out: $crate::__private::wasip2::http::types::ResponseOutparam,
            ) {
                $crate::__private::serve::<$handler>(request, response_out)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::__private::wasip2::http::proxy::export!(
            __OutpostIncomingHandler with_types_in $crate::__private::wasip2
        );
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    pub use wasip2;
    use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::{Error, Handler};

    /// The body of the exported `handle`: run the handler on the request's event loop, then
    /// send its answer, streaming the body.
    pub fn serve<H: Handler>(incoming: IncomingRequest, response_out: ResponseOutparam) {
        crate::wasi::executor::block_on(async move {
            let response = match crate::wasi::request_from(incoming) {
                Ok(request) => H::handle(request)
                    .await
                    .unwrap_or_else(Error::into_response),
                Err(err) => err.into_response(),
            };
            crate::wasi::respond(response, response_out).await;
        })
    }
}
