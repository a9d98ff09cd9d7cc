//! The admin listener's requests: `/metrics`, `/healthz`, `/readyz`. Plain HTTP, meant for the
//! operator's network (Prometheus, load balancer and orchestrator health checks).

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;

use super::health::{Health, Readiness};
use crate::kv::KvProgress;
use crate::server::LiveRoutes;
use outpost_core::metrics::metrics;
use outpost_net::listener::{Connection, Handler};
use outpost_runtime::Runtime;
use outpost_runtime::body::{ResponseBody, full_response, host_response};

/// Answers the admin listener: metrics, liveness and readiness.
pub struct AdminHandler {
    /// What `/readyz` reports.
    pub health: Arc<Health>,
    /// Source of the instance pool and memory gauges.
    pub runtime: Arc<Runtime>,
    /// The live route table, for the `app_live` gauge of each deployed app.
    pub routes: Arc<LiveRoutes>,
    /// The KV replica's progress, copied into its gauges on each scrape.
    pub kv: Arc<KvProgress>,
}

impl AdminHandler {
    /// Gauges that mirror state owned elsewhere, brought up to date for a scrape.
    fn refresh_gauges(&self) {
        let m = metrics();
        m.pool_slots.set(i64::from(self.runtime.pool_instances()));
        m.pool_slots_in_use.set(self.runtime.slots_in_use() as i64);
        m.pool_queue_depth
            .set(self.runtime.pool_queue_depth() as i64);
        m.instance_memory.set(self.runtime.instance_memory() as i64);
        self.kv.publish();
        m.app_live.reset();
        m.app_traffic_percent.reset();
        let routes = self.routes.load();
        for deployment in routes.serving() {
            m.app_live
                .with_label_values(&[&*deployment.app.name, deployment.digest.as_str()])
                .set(1);
        }
        for (app, split) in routes.splits() {
            for share in split.shares() {
                m.app_traffic_percent
                    .with_label_values(&[&**app, share.version.to_string().as_str()])
                    .set(i64::from(share.percent));
            }
        }
    }
}

impl Handler for AdminHandler {
    type Body = ResponseBody;

    async fn handle(
        &self,
        request: http::Request<Incoming>,
        _connection: Connection,
    ) -> http::Response<ResponseBody> {
        if request.method() != http::Method::GET {
            return host_response(405, "the admin listener answers GET only");
        }
        match request.uri().path() {
            "/metrics" => {
                self.refresh_gauges();
                full_response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    Bytes::from(metrics().render()),
                )
            }
            "/healthz" => host_response(200, "ok"),
            "/readyz" => match self.health.readiness() {
                Readiness::Ready => host_response(200, "ready"),
                Readiness::NotReady(reasons) => {
                    host_response(503, &format!("not ready: {}", reasons.join("; ")))
                }
            },
            _ => host_response(
                404,
                "the admin listener serves /metrics, /healthz and /readyz",
            ),
        }
    }
}
