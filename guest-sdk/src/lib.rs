//! `outpost-sdk`: write Outpost handlers in Rust.
//!
//! This crate owns the guest side of the contract: an ergonomic layer over the standard
//! `wasi:http/proxy` world (WASI 0.2). A handler built with it is an ordinary proxy-world
//! component, so it runs unmodified under `wasmtime serve`, Spin or any other host of that world;
//! Outpost-only extras are standard or proposed WASI interfaces ([`config`] uses `wasi:config`).
//!
//! ```ignore
//! use outpost_sdk::{Handler, Request, Response, Result};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     fn handle(req: Request) -> Result<Response> {
//!         Ok(Response::text(format!("hello from {}\n", req.path())))
//!     }
//! }
//!
//! outpost_sdk::export!(Hello);
//! ```
//!
//! State lives in the edge KV ([`kv`], `wasi:keyvalue`): reads are local to the node, writes
//! go to the origin and reach every node within moments.
//!
//! Build it as a `cdylib` for `wasm32-wasip2` (see the repository README for both toolchain
//! paths). Anything the handler prints to stdout or stderr becomes a log line on the node, tagged
//! with the app and the request id; [`log`] adds levels.

mod bindings;
mod error;
mod fetch;
mod headers;
mod method;
mod request;
mod response;
mod streams;
mod url;

pub mod config;
pub mod kv;
pub mod log;

pub use error::{Error, Result};
pub use fetch::fetch;
pub use headers::Headers;
pub use method::Method;
pub use request::Request;
pub use response::Response;

/// A request handler: one call per incoming request, on a fresh instance.
///
/// Returning `Err` sends the error's status and message (see [`Error`]), so `?` works for the
/// common failures: bad input becomes a 4xx, a failed fetch a 502.
pub trait Handler {
    /// Answer one request. An `Err` is sent as its status and message (see [`Error`]).
    fn handle(request: Request) -> Result<Response>;
}

/// Export a [`Handler`] as the component's `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        #[doc(hidden)]
        struct __OutpostIncomingHandler;

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

        $crate::__private::wasip2::http::proxy::export!(
            __OutpostIncomingHandler with_types_in $crate::__private::wasip2
        );
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wasip2;
    use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::{Handler, Request};

    /// The body of the exported `handle`: adapt the request, run the handler, send its answer.
    pub fn serve<H: Handler>(incoming: IncomingRequest, response_out: ResponseOutparam) {
        let response = Request::from_incoming(incoming)
            .and_then(H::handle)
            .unwrap_or_else(crate::Error::into_response);
        response.send(response_out);
    }
}
