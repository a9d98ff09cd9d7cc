//! A reverse proxy in a few lines: forward each request to the origin named by the `ORIGIN_URL`
//! config value (which must also be in the app's `[outbound] allow` list), then rewrite the
//! response on its way back: `Location` headers that point at the origin are made relative, so
//! redirects stay on the edge, and `x-served-by` says who answered.

use outpost_sdk::{Handler, Request, Response, Result, config, fetch};

struct FetchOrigin;

impl Handler for FetchOrigin {
    fn handle(mut request: Request) -> Result<Response> {
        let origin = config::require("ORIGIN_URL")?;
        let origin = origin.trim_end_matches('/');
        let url = format!("{origin}{}", request.path_with_query());

        let mut upstream = Request::new(request.method().clone(), &url)?;
        for (name, value) in request.headers().iter() {
            upstream.headers_mut().append(name, value);
        }
        if let Some(host) = request.authority() {
            upstream.headers_mut().insert("x-forwarded-host", host);
        }
        let upstream = upstream.with_body(request.take_body()?);

        let mut response = fetch(upstream)?;
        if let Some(location) = response.headers().get("location").map(str::to_string)
            && let Some(relative) = location.strip_prefix(origin)
        {
            let relative = if relative.is_empty() { "/" } else { relative };
            response.headers_mut().insert("location", relative);
        }
        response.headers_mut().insert("x-served-by", "outpost");
        Ok(response)
    }
}

outpost_sdk::export!(FetchOrigin);
