//! `GET /v1/tail/{app}?status=5xx&sample=0.1`: the app's requests on every connected node, as
//! they happen, one JSON object per line, for as long as the client stays.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::api::{AdminApi, ApiError, Response};
use super::kv_api::query_pairs;
use crate::tail::TailFilter;

/// Lines waiting for a slow client at most.
const CLIENT_BUFFER: usize = 1024;

impl AdminApi {
    pub(super) async fn tail_request(
        &self,
        app: &str,
        request: http::Request<Incoming>,
    ) -> Result<Response, ApiError> {
        // Only apps that exist: a typo should not wait forever for nothing.
        self.registry.app(app).await?;
        let pairs = query_pairs(request.uri().query())?;
        let param = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let filter = TailFilter::parse(param("status"), param("sample"))
            .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
        let mut watch = self.tail.watch(app);
        let connected = self.nodes.snapshot().iter().filter(|n| n.connected).count();
        let (lines, body) = mpsc::channel::<Bytes>(CLIENT_BUFFER);
        let hello = json!({ "tailing": app, "nodes": connected });
        let _ = lines.try_send(line(&hello));
        let app = app.to_string();
        tokio::spawn(async move {
            loop {
                let record = tokio::select! {
                    record = watch.records.recv() => record,
                    () = lines.closed() => break,
                };
                let text = match record {
                    Ok(record) if record.app == app && filter.keeps(&record) => {
                        line(&serde_json::to_value(&*record).unwrap_or_default())
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(lost)) => {
                        line(&json!({ "lost": lost }))
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if lines.send(text).await.is_err() {
                    break;
                }
            }
            // Dropping the watch tells the nodes when this was the app's last tail.
            drop(watch);
        });
        let mut response = http::Response::new(
            LineBody(body)
                .map_err(|never: Infallible| match never {})
                .boxed_unsync(),
        );
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-ndjson"),
        );
        Ok(response)
    }
}

fn line(value: &serde_json::Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// A response body fed line by line from a channel.
struct LineBody(mpsc::Receiver<Bytes>);

impl Body for LineBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok(Frame::data(l))))
    }
}
