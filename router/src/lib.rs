//! Pure request routing for Outpost: host + path -> the value a route points at.
//!
//! This crate owns the route *language* (how `shop.example.com/api/*` is parsed and what it
//! matches) and the lookup table built from it. It does no I/O, holds no locks and knows nothing
//! of Wasm or HTTP libraries, so every rule is unit-tested here and the lookup can be benchmarked
//! alone. The node builds a [`RouteTable`] once per configuration change and reads it from the
//! request path.
//!
//! # Route patterns
//! A pattern is `[HOST][PATH]`, in the manner of Cloudflare Workers routes:
//!
//! | pattern                  | matches                                                    |
//! | ------------------------ | ---------------------------------------------------------- |
//! | `shop.example.com`       | every path on exactly that host                            |
//! | `*.example.com/`         | every path on any subdomain of `example.com` (not the apex)|
//! | `*` or `/*` or `/`       | every host, every path                                     |
//! | `example.com/api/*`      | `/api`, `/api/` and everything below, on that host         |
//! | `example.com/health`     | exactly `/health` on that host                             |
//!
//! Hosts compare case-insensitively and without a port. A path ending in `/*` (or `*`) or the
//! bare `/` is a prefix that matches whole segments only (`/api/*` does not match `/apis`);
//! any other path matches exactly.
//!
//! # Precedence
//! The most specific host wins first: an exact host, then the longest wildcard suffix, then the
//! any-host routes. Within a host, an exact path beats a prefix and a longer prefix beats a
//! shorter one. If the most specific host has no route for the path, the lookup falls through to
//! the next less specific host, so `*/` can serve as a catch-all beside `a.com/api/*`.
//!
//! # Swapping
//! [`SharedRoutes`] holds the current table behind an atomic pointer: lookups take no lock, and a
//! deploy replaces the whole table in one store.

mod pattern;
mod shared;
mod table;

pub use pattern::{HostPattern, PathPattern, RoutePattern, RoutePatternError};
pub use shared::SharedRoutes;
pub use table::{DuplicateRoute, RouteTable, RouteTableBuilder};
