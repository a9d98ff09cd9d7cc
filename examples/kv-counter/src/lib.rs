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
//! `{name}` is percent-decoded (`/api/docs/my%20notes` is the document `my notes`). Other
//! methods get 405 with `Allow`. With the origin out of reach, reads keep working and writes
//! answer 503 with Retry-After.

use outpost_sdk::kv::{SetOptions, Store};
use outpost_sdk::prelude::*;
use outpost_sdk::{Error, Handler, Request, Response, Result, Router, StatusCode};

const NAMESPACE: &str = "counter";
const VIEWS: &str = "page-views";
const DOCS: &str = "doc/";
/// Documents are small by design; the KV would take up to 25 MiB.
const MAX_DOC_BYTES: usize = 64 * 1024;

struct Counter;

impl Handler for Counter {
    async fn handle(request: Request) -> Result<Response> {
        Router::new()
            .get("/", count_view)
            .get("/api/docs", list_docs)
            .get("/api/docs/{name}", get_doc)
            .put("/api/docs/{name}", put_doc)
            .delete("/api/docs/{name}", delete_doc)
            .handle(request)
            .await
    }
}

async fn count_view(_request: Request) -> Result<Response> {
    let views = Store::open(NAMESPACE)?.increment(VIEWS, 1)?;
    Ok(Response::text(format!("views: {views}\n")))
}

async fn list_docs(request: Request) -> Result<Response> {
    let store = Store::open(NAMESPACE)?;
    let prefix = format!(
        "{DOCS}{}",
        request.query_param("prefix").unwrap_or_default()
    );
    let mut names = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(&prefix, cursor.as_deref(), 1000)?;
        names.extend(page.keys.into_iter().map(|k| k[DOCS.len()..].to_string()));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Response::json(&names)
}

fn doc_key(request: &Request) -> String {
    format!("{DOCS}{}", request.param("name").unwrap_or_default())
}

async fn get_doc(request: Request) -> Result<Response> {
    let key = doc_key(&request);
    match Store::open(NAMESPACE)?.get(&key)? {
        Some(bytes) => Ok(Response::bytes("application/json", bytes)),
        None => Err(Error::not_found(format!(
            "no document {:?}",
            &key[DOCS.len()..]
        ))),
    }
}

async fn put_doc(request: Request) -> Result<Response> {
    let key = doc_key(&request);
    let ttl_seconds =
        match request.query_param("ttl") {
            Some(ttl) => Some(ttl.parse().map_err(|_| {
                Error::bad_request(format!("ttl={ttl:?} is not a number of seconds"))
            })?),
            None => None,
        };
    let body = request.into_body().bytes_limited(MAX_DOC_BYTES).await?;
    serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| Error::bad_request(format!("the body is not JSON: {e}")))?;
    let options = SetOptions {
        ttl_seconds,
        ..SetOptions::default()
    };
    Store::open(NAMESPACE)?.set_with(&key, body, options)?;
    Ok(Response::text(format!("stored {}\n", &key[DOCS.len()..])).with_status(StatusCode::CREATED))
}

async fn delete_doc(request: Request) -> Result<Response> {
    let key = doc_key(&request);
    Store::open(NAMESPACE)?.delete(&key)?;
    Ok(Response::text(format!("deleted {}\n", &key[DOCS.len()..])))
}

outpost_sdk::export!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_sdk::{Body, Method, testing};

    fn send(method: Method, path: &str, body: &'static str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body))
            .unwrap();
        let response = testing::call::<Counter>(request);
        let status = response.status();
        (
            status,
            testing::block_on(response.into_body().text()).unwrap(),
        )
    }

    #[test]
    fn views_are_counted() {
        testing::reset();
        assert_eq!(send(Method::GET, "/", "").1, "views: 1\n");
        assert_eq!(send(Method::GET, "/", "").1, "views: 2\n");
    }

    #[test]
    fn documents_are_stored_listed_and_deleted_by_decoded_name() {
        testing::reset();
        let (status, text) = send(Method::PUT, "/api/docs/my%20notes", r#"{"a": 1}"#);
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::CREATED, "stored my notes\n")
        );
        assert_eq!(
            send(Method::GET, "/api/docs/my%20notes", "").1,
            r#"{"a": 1}"#
        );
        assert_eq!(
            send(Method::GET, "/api/docs?prefix=my", "").1,
            r#"["my notes"]"#
        );
        assert_eq!(
            send(Method::PUT, "/api/docs/x", "not json").0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            send(Method::POST, "/api/docs/x", "").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            send(Method::DELETE, "/api/docs/my%20notes", "").1,
            "deleted my notes\n"
        );
        assert_eq!(
            send(Method::GET, "/api/docs/my%20notes", "").0,
            StatusCode::NOT_FOUND
        );
    }
}
