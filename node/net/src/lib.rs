//! `outpost-net`: the serving plumbing the edge and the origin share, and nothing of what they
//! serve.
//!
//! * [`listener`]: the serve loop (accept, TLS with a handshake deadline, HTTP/1.1 or HTTP/2 by
//!   ALPN, per-client connection caps, first-request and idle deadlines, graceful drain) around
//!   any [`listener::Handler`]; [`http3`], the same over QUIC for an [`http3::Http3Handler`];
//! * [`tls`] and [`cert_reload`]: server TLS with certificates chosen by SNI, reloaded from disk;
//! * [`cluster_tls`] and [`head_proof`]: the cluster link's mutual TLS (QUIC) and the origin's
//!   signed KV heads that nodes verify before trusting a peer's data;
//! * [`pki`]: the certificate authority behind `outpost ca` and dev certificates.
//!
//! It may not depend on the Wasm runtime, on the edge or on the origin.

mod activity;
pub mod cert_reload;
mod client_cap;
pub mod cluster_tls;
pub mod head_proof;
pub mod http3;
pub mod listener;
pub mod pki;
pub mod tls;
