//! The HTTP front end of an edge node: the request path into the runtime, the routes it looks
//! up, and the sockets a takeover hands over. The serve loop itself is `outpost_net::listener`.

pub mod edge;
pub mod front;
pub mod handoff;
pub mod metadata;
pub mod preview;
pub mod redirect;
pub mod routes;
pub mod split;

pub use edge::{Edge, EdgeSettings};
pub use redirect::RedirectToHttps;
pub use routes::{LiveRoutes, RouteConflict, Routes};

use hyper::body::Incoming;
use outpost_net::http3::{Http3Handler, RequestBody};
use outpost_net::listener::{Connection, Handler};
use outpost_runtime::body::ResponseBody;

impl Handler for Edge {
    type Body = ResponseBody;

    async fn handle(
        &self,
        request: http::Request<Incoming>,
        connection: Connection,
    ) -> http::Response<ResponseBody> {
        let mut response = self.serve(request, connection).await;
        // Clients of the HTTPS listener learn they may come back over HTTP/3.
        if let (Some(_), Some(alt_svc)) = (connection.tls, self.alt_svc()) {
            response
                .headers_mut()
                .insert(http::header::ALT_SVC, alt_svc.clone());
        }
        response
    }
}

impl Http3Handler for Edge {
    type Body = ResponseBody;

    async fn handle(
        &self,
        request: http::Request<RequestBody>,
        connection: Connection,
    ) -> http::Response<ResponseBody> {
        use http_body_util::BodyExt;
        // A body that breaks off is a client gone, as hyper reports it on HTTP/1 and HTTP/2.
        let request =
            request.map(|body| body.map_err(|_| wasmtime_wasi_http::Error::ConnectionTerminated));
        self.serve(request, connection).await
    }
}
