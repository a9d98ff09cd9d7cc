//! `outpost-edge`: an edge node, everything between its sockets and the runtime.
//!
//! * [`server`]: the request path (route lookup, request ids, body limits, the front buffer,
//!   the HTTP-to-HTTPS redirect), the live route table, and the listening-socket hand-off of a
//!   takeover;
//! * [`fleet`]: applying the desired state the origin publishes, never replacing what serves
//!   with something that failed;
//! * [`kv`]: the node's replica and the replication driver around `outpost_kv::Follower`;
//! * [`cluster`]: the node's ends of the cluster links (to the origin, to peers);
//! * [`admin`]: the admin listener (`/metrics`, `/healthz`, `/readyz`), readiness hooks and
//!   the drain sequence;
//! * [`tail_tap`]: the request records a tailed app's requests offer to the origin link;
//! * [`triggers`]: apps' cron triggers, each tick claimed from the origin and fired by one node.
//!
//! It builds on `outpost-runtime` (which runs the guests) and `outpost-net` (the serve loop,
//! TLS), and may not depend on the origin: they meet only on the wire (`outpost_core::wire`).

pub mod admin;
pub mod cluster;
pub mod fleet;
pub mod kv;
pub mod server;
pub mod tail_tap;
pub mod triggers;
