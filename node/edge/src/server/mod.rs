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
use outpost_net::listener::{Connection, Handler};
use outpost_runtime::body::ResponseBody;

impl Handler for Edge {
    type Body = ResponseBody;

    async fn handle(
        &self,
        request: http::Request<Incoming>,
        connection: Connection,
    ) -> http::Response<ResponseBody> {
        self.serve(request, connection).await
    }
}
