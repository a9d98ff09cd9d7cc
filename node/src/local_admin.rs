//! The admin listener of a node that belongs to no fleet (`outpost dev`): the node's
//! `/metrics`, `/healthz` and `/readyz`, and the KV API of the authority it embeds, asking no
//! token. [`launch`](crate::launch) serves the KV API only where the listener is bound to a
//! loopback address, so nothing off this machine reaches it; `outpost kv --local` talks to it.

use hyper::body::Incoming;

use outpost_edge::admin::AdminHandler;
use outpost_net::listener::{Connection, Handler};
use outpost_origin::kv::KvAuthority;
use outpost_origin::kv_api;
use outpost_runtime::body::ResponseBody;

/// The node's admin answers, and the embedded KV authority's API under `/v1/kv/`.
pub struct LocalAdmin {
    /// Metrics, liveness and readiness, as on any node.
    pub node: AdminHandler,
    /// The authority `/v1/kv/...` reads and writes.
    pub kv: KvAuthority,
}

impl Handler for LocalAdmin {
    type Body = ResponseBody;

    async fn handle(
        &self,
        request: http::Request<Incoming>,
        connection: Connection,
    ) -> http::Response<ResponseBody> {
        if request.uri().path().starts_with("/v1/kv/") {
            kv_api::answer_without_token(&self.kv, request).await
        } else {
            self.node.handle(request, connection).await
        }
    }
}
