//! Live request logs for `outpost tail APP`: while a tail client watches an app, every node
//! sends the origin one record per request of that app over its cluster link; the origin fans
//! them out to the app's tail clients, each with its own status filter and sampling.
//!
//! Nodes send nothing for apps nobody watches: the request path checks one atomic flag.

mod filter;
mod hub;
mod tap;

pub use filter::TailFilter;
pub use hub::{TailHub, TailWatch};
pub use outpost_core::wire::{LogBatch, RequestRecord, TailSet};
pub use tap::TailTap;
