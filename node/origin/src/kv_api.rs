//! The admin API's KV endpoints, shaped like Cloudflare's KV REST API: keys listed under
//! `/v1/kv/{app}/{namespace}/keys`, values read and written as raw bytes under
//! `/v1/kv/{app}/{namespace}/values/{key}` (the key percent-encoded). They go straight to the
//! origin's authority, so reads see every committed write and writes reach every node.
//! `outpost dev` serves the same endpoints on its loopback admin listener, with no token.

use std::borrow::Cow;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use outpost_kv::model::MAX_VALUE_BYTES;
use outpost_kv::{WriteError, WriteOp, validate_key};
use percent_encoding::percent_decode_str;
use serde_json::json;

use super::api::{ApiError, Response, json_response};
use super::kv::KvAuthority;
use outpost_core::api::{Deleted, KvKey, KvKeys, KvStored};
use outpost_core::clock::unix_millis;
use outpost_core::config::{validate_name, validate_namespace_name};
use outpost_kv::paging;
use outpost_runtime::body::full_response;

/// The header that carries an entry's metadata on `PUT` (and back on `GET`).
pub(crate) const METADATA_HEADER: &str = "outpost-kv-metadata";

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn decode(text: &str) -> Result<Cow<'_, str>, ApiError> {
    percent_decode_str(text)
        .decode_utf8()
        .map_err(|_| bad_request(format!("{text:?} does not decode to UTF-8")))
}

/// `?a=1&b=x` as decoded pairs.
pub(super) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let plus_as_space = |s: &str| s.replace('+', " ");
            Ok((
                decode(&plus_as_space(name))?.into_owned(),
                decode(&plus_as_space(value))?.into_owned(),
            ))
        })
        .collect()
}

fn write_error(err: WriteError) -> ApiError {
    let status = match &err {
        WriteError::Limit(_) => StatusCode::PAYLOAD_TOO_LARGE,
        WriteError::NotAnInteger { .. } | WriteError::Overflow { .. } => StatusCode::CONFLICT,
        WriteError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        WriteError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        WriteError::Refused(_) => StatusCode::FORBIDDEN,
        WriteError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
    };
    ApiError::new(status, err.to_string())
}

fn storage_error(err: String) -> ApiError {
    tracing::error!("KV read failed: {err}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the origin's KV storage failed",
    )
}

/// The KV endpoints alone, with no token asked: for a listener that only this machine can
/// reach (`outpost dev`'s). Any path outside `/v1/kv/` is answered 404.
pub async fn answer_without_token(kv: &KvAuthority, request: http::Request<Incoming>) -> Response {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match segments.as_slice() {
        ["v1", "kv", rest @ ..] => kv_request(kv, rest, request).await,
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint: {path} (this listener serves /v1/kv/{{app}}/{{namespace}}/...)"
            ),
        )),
    };
    answer.unwrap_or_else(ApiError::into_response)
}

/// `rest` is the path after `/v1/kv/`; the caller has checked the token's right.
pub(super) async fn kv_request(
    kv: &KvAuthority,
    rest: &[&str],
    request: http::Request<Incoming>,
) -> Result<Response, ApiError> {
    let [app, namespace, kind, key @ ..] = rest else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "KV paths are /v1/kv/{app}/{namespace}/keys and /v1/kv/{app}/{namespace}/values/{key}",
        ));
    };
    // Segments as the client sent them: percent-encoded or not (the CLI encodes every '-').
    let (app, namespace) = (decode(app)?, decode(namespace)?);
    validate_name(&app).map_err(|m| ApiError::field(StatusCode::BAD_REQUEST, "app", m))?;
    validate_namespace_name(&namespace)
        .map_err(|m| ApiError::field(StatusCode::BAD_REQUEST, "namespace", m))?;
    let stored = outpost_kv::scope::stored_namespace(&app, &namespace);
    let method = request.method().clone();
    match (&method, *kind, key) {
        (&Method::GET, "keys", []) => kv_list(kv, &stored, request.uri().query()).await,
        (_, "values", key @ [_, ..]) => {
            // A key may hold '/' whether or not the client encoded it.
            let key = key
                .iter()
                .map(|part| decode(part))
                .collect::<Result<Vec<_>, _>>()?
                .join("/");
            validate_key(&key)
                .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
            match method {
                Method::GET => kv_get(kv, &stored, &key).await,
                Method::PUT => kv_put(kv, stored, key, request).await,
                Method::DELETE => {
                    let op = WriteOp::Delete {
                        namespace: stored,
                        key: key.clone(),
                    };
                    kv.write_as_origin(op).await.map_err(write_error)?;
                    Ok(json_response(
                        StatusCode::OK,
                        &json!(Deleted { deleted: key }),
                    ))
                }
                _ => Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET, PUT or DELETE",
                )),
            }
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such KV endpoint: {method} {}", request.uri().path()),
        )),
    }
}

async fn kv_get(kv: &KvAuthority, namespace: &str, key: &str) -> Result<Response, ApiError> {
    let entry = kv.get(namespace, key).await.map_err(storage_error)?;
    let Some(entry) = entry.filter(|e| e.is_live(unix_millis())) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no key {key:?}"),
        ));
    };
    let mut response = full_response(
        200,
        "application/octet-stream",
        Bytes::from(entry.value.unwrap_or_default()),
    );
    let headers = response.headers_mut();
    headers.insert("outpost-kv-version", entry.version.into());
    if let Some(at) = entry.expires_at_ms {
        headers.insert("outpost-kv-expires-at-ms", at.into());
    }
    if let Some(value) = entry
        .metadata
        .and_then(|m| http::HeaderValue::from_bytes(&m).ok())
    {
        headers.insert(METADATA_HEADER, value);
    }
    Ok(response)
}

async fn kv_put(
    kv: &KvAuthority,
    namespace: String,
    key: String,
    request: http::Request<Incoming>,
) -> Result<Response, ApiError> {
    let mut ttl_secs = None;
    for (name, value) in query_pairs(request.uri().query())? {
        match name.as_str() {
            "ttl" => {
                let secs: u64 = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    bad_request(format!("ttl={value:?}: give a number of seconds above 0"))
                })?;
                ttl_secs = Some(secs);
            }
            other => {
                return Err(bad_request(format!(
                    "unknown parameter {other:?} (known: ttl)"
                )));
            }
        }
    }
    let metadata = request
        .headers()
        .get(METADATA_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let value = Limited::new(request.into_body(), MAX_VALUE_BYTES)
        .collect()
        .await
        .map_err(|err| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the value could not be read within the 25 MiB limit: {err}"),
            )
        })?
        .to_bytes()
        .to_vec();
    let size = value.len();
    let op = WriteOp::Put {
        namespace,
        key: key.clone(),
        value,
        metadata,
        ttl_secs,
    };
    let ack = kv.write_as_origin(op).await.map_err(write_error)?;
    let version = ack.entries.first().map(|e| e.version);
    let stored = KvStored {
        key,
        size: size as u64,
        version,
    };
    Ok(json_response(StatusCode::OK, &json!(stored)))
}

async fn kv_list(
    kv: &KvAuthority,
    namespace: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let (mut prefix, mut cursor, mut limit) = (String::new(), None, paging::MAX_PAGE);
    for (name, value) in query_pairs(query)? {
        match name.as_str() {
            "prefix" => prefix = value,
            "cursor" => cursor = Some(value).filter(|c| !c.is_empty()),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=paging::MAX_PAGE).contains(l))
                    .ok_or_else(|| {
                        bad_request(format!("limit={value:?}: give 1 to {}", paging::MAX_PAGE))
                    })?;
            }
            other => {
                return Err(bad_request(format!(
                    "unknown parameter {other:?} (known: prefix, cursor, limit)"
                )));
            }
        }
    }
    let fetched = kv
        .list(namespace, &prefix, cursor, paging::fetch_limit(limit))
        .await
        .map_err(storage_error)?;
    let page = paging::page(fetched, limit, unix_millis());
    let keys = page
        .items
        .iter()
        .map(|e| KvKey {
            name: e.key.clone(),
            expires_at_ms: e.expires_at_ms,
            metadata: e
                .metadata
                .as_ref()
                .map(|m| String::from_utf8_lossy(m).into_owned()),
            version: e.version,
        })
        .collect();
    let listed = KvKeys {
        keys,
        list_complete: page.next.is_none(),
        cursor: page.next,
    };
    Ok(json_response(StatusCode::OK, &json!(listed)))
}
