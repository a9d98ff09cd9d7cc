//! A streaming reverse proxy: forward each request to the origin named by the `ORIGIN_URL`
//! config value (which must also be in the app's `[outbound] allow` list), then rewrite the
//! response on its way back: `Location` headers that point at the origin are made relative, so
//! redirects stay on the edge, and `x-served-by` says who answered.
//!
//! Neither body is held: the request body goes upstream as the client sends it and the
//! response body comes back as the origin sends it, so a download or upload of any size passes
//! through in the memory of a few chunks.

use outpost_sdk::http::header::{HOST, LOCATION};
use outpost_sdk::{Error, Handler, HeaderValue, Request, Response, Result, config, fetch};

struct FetchOrigin;

impl Handler for FetchOrigin {
    async fn handle(request: Request) -> Result<Response> {
        let origin = config::require("ORIGIN_URL")?;
        let origin = origin.trim_end_matches('/');
        let (mut parts, body) = request.into_parts();

        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let upstream = format!("{origin}{path}");
        let forwarded_host = parts.uri.authority().map(|a| a.as_str().to_string());
        parts.uri = upstream.parse().map_err(|err| {
            Error::internal(format!("ORIGIN_URL gives a bad URL {upstream:?}: {err}"))
        })?;
        // The origin's own name goes in Host (from the URL); the client's in x-forwarded-host.
        parts.headers.remove(HOST);
        if let Some(host) = forwarded_host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            parts.headers.insert("x-forwarded-host", host);
        }

        let mut response = fetch(Request::from_parts(parts, body)).await?;
        let relative = response
            .headers()
            .get(LOCATION)
            .and_then(|location| location.to_str().ok())
            .and_then(|location| location.strip_prefix(origin))
            .map(|rest| {
                if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                }
            });
        if let Some(relative) = relative.and_then(|r| HeaderValue::from_str(&r).ok()) {
            response.headers_mut().insert(LOCATION, relative);
        }
        response
            .headers_mut()
            .insert("x-served-by", HeaderValue::from_static("outpost"));
        Ok(response)
    }
}

outpost_sdk::export!(FetchOrigin);

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_sdk::prelude::*;
    use outpost_sdk::{Body, StatusCode, testing};

    #[test]
    fn requests_go_to_the_origin_and_redirects_stay_on_the_edge() {
        testing::reset();
        testing::set_config("ORIGIN_URL", "https://origin.test/");
        testing::on_fetch(|request| async move {
            assert_eq!(request.uri(), "https://origin.test/items?page=2");
            assert_eq!(request.headers()["x-forwarded-host"], "edge.test");
            assert!(request.headers().get("host").is_none());
            let body = request.into_body().text().await?;
            Response::redirect(
                StatusCode::FOUND,
                &format!("https://origin.test/moved/{body}"),
            )
        });
        let request = Request::post("https://edge.test/items?page=2")
            .header("host", "edge.test")
            .body(Body::from("here"))
            .unwrap();
        let response = testing::call::<FetchOrigin>(request);
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "/moved/here");
        assert_eq!(response.headers()["x-served-by"], "outpost");
    }

    #[test]
    fn bodies_stream_through_piece_by_piece() {
        testing::reset();
        testing::set_config("ORIGIN_URL", "https://origin.test");
        // The origin answers with the pieces it received, in order, as they come.
        testing::on_fetch(|request| async move {
            Ok(Response::new(Body::from_try_stream(
                request.into_body().into_stream(),
            )))
        });
        let pieces = futures_lite::stream::iter((0..100).map(|n| format!("{n},")));
        let request = Request::put("https://edge.test/up")
            .body(Body::from_stream(pieces))
            .unwrap();
        let response = testing::call::<FetchOrigin>(request);
        assert_eq!(
            response.body().exact_len(),
            None,
            "the body was not gathered"
        );
        let text = testing::block_on(response.into_body().text()).unwrap();
        assert!(
            text.starts_with("0,1,2,") && text.ends_with("98,99,"),
            "{text}"
        );
    }

    #[test]
    fn without_an_origin_configured_it_says_so() {
        testing::reset();
        let response = testing::call::<FetchOrigin>(Request::get("/").body(().into()).unwrap());
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
