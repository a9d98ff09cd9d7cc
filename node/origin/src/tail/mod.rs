//! Live request logs for `outpost tail APP`, the origin's side: while a tail client watches an
//! app, every node sends one record per request of that app over its cluster link; the origin
//! fans them out to the app's tail clients, each with its own status filter and sampling.

mod filter;
mod hub;

pub use filter::TailFilter;
pub use hub::{TailHub, TailWatch};
