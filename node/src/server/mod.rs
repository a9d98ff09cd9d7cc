//! The HTTP front end: listeners, TLS, and the request path into the runtime.

mod activity;
pub mod body;
pub mod cert_reload;
mod client_cap;
pub mod edge;
pub mod front;
pub mod handoff;
pub mod listener;
pub mod redirect;
pub mod routes;
pub mod tls;

pub use edge::Edge;
pub use listener::{Handler, ShutdownSignal, serve};
pub use redirect::RedirectToHttps;
pub use routes::{LiveRoutes, RouteConflict, Routes};

use hyper::body::Incoming;

impl Handler for Edge {
    async fn handle(
        &self,
        request: http::Request<Incoming>,
        scheme: http::uri::Scheme,
    ) -> http::Response<body::ResponseBody> {
        self.serve(request, scheme).await
    }
}
