//! A page-view counter and a small JSON document API on the edge KV.
//!
//! | request                   | does                                                    |
//! | ------------------------- | ------------------------------------------------------- |
//! | `GET /`                   | counts the view (at the origin, so every node's add up) |
//! | `GET /api/docs`           | lists stored documents (`?prefix=`)                     |
//! | `GET /api/docs/{name}`    | a document, from this node's replica                    |
//! | `PUT /api/docs/{name}`    | stores a JSON document (`?ttl=SECONDS` to expire it)    |
//! | `DELETE /api/docs/{name}` | deletes it                                              |
//!
//! With the origin out of reach, reads keep working and writes answer 503 with Retry-After.

use outpost_sdk::kv::{SetOptions, Store};
use outpost_sdk::{Error, Handler, Method, Request, Response, Result};

const NAMESPACE: &str = "counter";
const VIEWS: &str = "page-views";
const DOCS: &str = "doc/";
/// Documents are small by design; the KV would take up to 25 MiB.
const MAX_DOC_BYTES: usize = 64 * 1024;

struct Counter;

impl Handler for Counter {
    fn handle(mut request: Request) -> Result<Response> {
        let store = Store::open(NAMESPACE)?;
        let path = request.path().to_string();
        match (request.method().clone(), path.as_str()) {
            (Method::Get, "/") => {
                let views = store.increment(VIEWS, 1)?;
                Ok(Response::text(format!("views: {views}\n")))
            }
            (Method::Get, "/api/docs") => {
                let prefix = request.query_param("prefix").unwrap_or_default();
                let mut names = Vec::new();
                let mut cursor = None;
                loop {
                    let page = store.list(&format!("{DOCS}{prefix}"), cursor.as_deref(), 1000)?;
                    names.extend(page.keys.into_iter().map(|k| k[DOCS.len()..].to_string()));
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Response::json(&names)
            }
            (method, doc) if doc.starts_with("/api/docs/") => {
                let name = &doc["/api/docs/".len()..];
                if name.is_empty() {
                    return Err(Error::bad_request("name the document: /api/docs/{name}"));
                }
                let key = format!("{DOCS}{name}");
                match method {
                    Method::Get => match store.get(&key)? {
                        Some(bytes) => Ok(Response::bytes("application/json", bytes)),
                        None => Err(Error::not_found(format!("no document {name:?}"))),
                    },
                    Method::Put => {
                        let body = request.body_limited(MAX_DOC_BYTES)?.to_vec();
                        serde_json::from_slice::<serde_json::Value>(&body)
                            .map_err(|e| Error::bad_request(format!("the body is not JSON: {e}")))?;
                        let ttl_seconds = match request.query_param("ttl") {
                            Some(ttl) => Some(ttl.parse().map_err(|_| {
                                Error::bad_request(format!("ttl={ttl:?} is not a number of seconds"))
                            })?),
                            None => None,
                        };
                        store.set_with(&key, body, SetOptions { ttl_seconds, ..SetOptions::default() })?;
                        Ok(Response::text(format!("stored {name}\n")).with_status(201))
                    }
                    Method::Delete => {
                        store.delete(&key)?;
                        Ok(Response::text(format!("deleted {name}\n")))
                    }
                    _ => Err(Error::method_not_allowed(&[Method::Get, Method::Put, Method::Delete])),
                }
            }
            _ => Err(Error::not_found(format!("no route for {path}"))),
        }
    }
}

outpost_sdk::export!(Counter);
