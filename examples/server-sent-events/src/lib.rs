//! Server-sent events: a stream of events written one at a time, long after the response head
//! went out, as a browser's `EventSource` reads them.
//!
//! | request | does |
//! | --- | --- |
//! | `GET /` | a page that shows the events as they arrive |
//! | `GET /events?count=N&every_ms=M` | `text/event-stream`: N `tick` events (default 10, at most 10,000), one every M ms (default 1000, at least 10) |
//!
//! A reconnecting `EventSource` sends `Last-Event-ID`; the stream carries on after that id.
//! Each event says which node sent it, so a reconnect that lands on another node shows.

use std::time::Duration;

use outpost_sdk::prelude::*;
use outpost_sdk::{
    Body, BodySender, Error, Handler, Request, Response, Result, Router, sleep, spawn,
};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>server-sent events</title>
<ul id="events"></ul>
<script>
  const list = document.getElementById("events");
  const source = new EventSource("/events?count=20&every_ms=500");
  source.addEventListener("tick", (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    list.prepend(item);
  });
  source.addEventListener("done", () => source.close());
</script>
"#;

struct Events;

impl Handler for Events {
    async fn handle(request: Request) -> Result<Response> {
        Router::new()
            .get("/", |_| async { Ok(Response::html(PAGE)) })
            .get("/events", events)
            .handle(request)
            .await
    }
}

fn number(
    request: &Request,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    match request.query_param(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| Error::bad_request(format!("{name} must be a number in {range:?}"))),
    }
}

async fn events(request: Request) -> Result<Response> {
    let count = number(&request, "count", 10, 1..=10_000)?;
    let every = Duration::from_millis(number(&request, "every_ms", 1000, 10..=60_000)?);
    let first = request
        .header_str("last-event-id")
        .and_then(|id| id.parse::<u64>().ok())
        .map_or(1, |id| id + 1);
    let node = request.node().unwrap_or("local").to_string();

    // The response goes out now; a task writes each event into the body when it is due.
    let (sender, body) = Body::channel(1);
    spawn(write_events(sender, first, count, every, node)).detach();
    Response::bytes("text/event-stream", body).with_header("cache-control", "no-store")
}

async fn write_events(sender: BodySender, first: u64, count: u64, every: Duration, node: String) {
    // Tell the browser how soon to reconnect if the stream breaks.
    if sender.send("retry: 1000\n\n").await.is_err() {
        return;
    }
    for id in first..=count {
        let event =
            format!("id: {id}\nevent: tick\ndata: {{\"n\": {id}, \"node\": \"{node}\"}}\n\n");
        // An error means the client went away: stop writing.
        if sender.send(event).await.is_err() {
            return;
        }
        if id < count {
            sleep(every).await;
        }
    }
    let _ = sender.send("event: done\ndata: {}\n\n").await;
}

outpost_sdk::export!(Events);

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_sdk::{StatusCode, testing};

    #[test]
    fn events_are_written_one_at_a_time_and_resume_after_the_last_id() {
        let request = Request::get("/events?count=4&every_ms=10")
            .header("last-event-id", "1")
            .body(().into())
            .unwrap();
        let response = testing::call::<Events>(request);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body();
        let chunks = testing::block_on(async {
            let mut chunks = Vec::new();
            while let Some(chunk) = body.chunk().await.unwrap() {
                chunks.push(String::from_utf8(chunk.to_vec()).unwrap());
            }
            chunks
        });
        assert_eq!(chunks[0], "retry: 1000\n\n");
        assert_eq!(
            chunks[1],
            "id: 2\nevent: tick\ndata: {\"n\": 2, \"node\": \"local\"}\n\n"
        );
        assert_eq!(chunks.len(), 5, "{chunks:?}");
        assert!(chunks[4].starts_with("event: done"));
    }

    #[test]
    fn bad_parameters_are_a_400() {
        let response =
            testing::call::<Events>(Request::get("/events?every_ms=1").body(().into()).unwrap());
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
