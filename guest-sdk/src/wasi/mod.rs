//! The WASI side of the SDK (wasm only): requests and bodies in from `wasi:http`, responses and
//! fetches out, all on the request's event loop.

mod body;
pub(crate) mod executor;
mod fetch;
mod fields;
mod incoming;
mod outgoing;
mod streams;

pub(crate) use body::IncomingBody;
pub(crate) use fetch::fetch;
pub(crate) use incoming::request_from;
pub(crate) use outgoing::{enable_async_sending, respond};
