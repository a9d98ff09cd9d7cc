//! Routing by method and path, with path parameters: `/users/{id}` and catch-alls
//! `/files/{*path}` (the syntax of axum's router, `matchit`, which does the matching).
//!
//! Parameters are percent-decoded after the match, so `%2F` in a segment stays inside that
//! segment; a handler reads them with [`crate::RequestExt::param`]. A path that matches no
//! route is a 404; one that matches with another method is a 405 listing the methods that
//! would do (`Allow`); `HEAD` is served by a route's `GET` handler when it has no `HEAD` of its
//! own.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use http::Method;
use percent_encoding::percent_decode_str;

use crate::{Error, Request, Response, Result};

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response>>>>;
type BoxHandler = Box<dyn Fn(Request) -> BoxFuture>;

/// Requests dispatched to async handlers by method and path.
///
/// ```
/// use outpost_sdk::prelude::*;
/// use outpost_sdk::{Request, Response, Result, Router};
///
/// async fn show(request: Request) -> Result<Response> {
///     let name = request.param("name").unwrap_or_default();
///     Ok(Response::text(format!("hello, {name}\n")))
/// }
///
/// # outpost_sdk::testing::block_on(async {
/// let router = Router::new().get("/hello/{name}", show);
/// let request = Request::get("/hello/J%C3%BCrgen").body(().into()).unwrap();
/// let response = router.handle(request).await.unwrap();
/// assert_eq!(response.into_body().text().await.unwrap(), "hello, Jürgen\n");
/// # });
/// ```
#[derive(Default)]
pub struct Router {
    paths: matchit::Router<usize>,
    /// Each pattern's index in `routes`, so a second method joins the first's route.
    patterns: HashMap<String, usize>,
    routes: Vec<Route>,
}

struct Route {
    handlers: Vec<(Option<Method>, BoxHandler)>,
}

/// The path parameters a route matched, percent-decoded; in the request's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The parameter named `name` in the route (`{name}` or `{*name}`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every parameter, in the order of the route.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl Router {
    /// A router with no routes: everything is a 404.
    pub fn new() -> Self {
        Router::default()
    }

    /// Send `method` requests for paths matching `pattern` to `handler`.
    ///
    /// # Panics
    /// If `pattern` is not a valid route or conflicts with an earlier one (routes are part of
    /// the program, so this is found the first time the handler runs, in a unit test).
    pub fn route<H, F>(self, method: Method, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        self.add(Some(method), pattern, handler)
    }

    /// Send requests of any method for paths matching `pattern` to `handler` (after the
    /// method-specific routes of the same pattern).
    pub fn any<H, F>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        self.add(None, pattern, handler)
    }

    /// `GET` (and `HEAD`) requests for `pattern`.
    pub fn get<H, F>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        self.route(Method::GET, pattern, handler)
    }

    /// `POST` requests for `pattern`.
    pub fn post<H, F>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        self.route(Method::POST, pattern, handler)
    }

    /// `PUT` requests for `pattern`.
    pub fn put<H, F>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        self.route(Method::PUT, pattern, handler)
    }

    /// `PATCH` requests for `pattern`.
    pub fn patch<H, F>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        self.route(Method::PATCH, pattern, handler)
    }

    /// `DELETE` requests for `pattern`.
    pub fn delete<H, F>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        self.route(Method::DELETE, pattern, handler)
    }

    fn add<H, F>(mut self, method: Option<Method>, pattern: &str, handler: H) -> Self
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Result<Response>> + 'static,
    {
        let boxed: BoxHandler = Box::new(move |request| Box::pin(handler(request)));
        let index = match self.patterns.get(pattern) {
            // The same pattern again (another method): add to its route.
            Some(&index) => index,
            None => {
                let index = self.routes.len();
                if let Err(err) = self.paths.insert(pattern, index) {
                    panic!("route {pattern:?}: {err}");
                }
                self.patterns.insert(pattern.to_string(), index);
                self.routes.push(Route {
                    handlers: Vec::new(),
                });
                index
            }
        };
        let route = &mut self.routes[index];
        if route.handlers.iter().any(|(m, _)| *m == method) {
            panic!("route {pattern:?} has two handlers for {method:?}");
        }
        route.handlers.push((method, boxed));
        // Method-specific handlers are tried before `any`.
        route.handlers.sort_by_key(|(m, _)| m.is_none());
        self
    }

    /// Dispatch `request` to its route's handler; 404 or 405 when there is none.
    pub async fn handle(&self, mut request: Request) -> Result<Response> {
        let (index, params) = {
            let path = request.uri().path();
            let found = self
                .paths
                .at(path)
                .map_err(|_| Error::not_found(format!("no route for {path}")))?;
            let params = found
                .params
                .iter()
                .map(|(name, raw)| {
                    let value = percent_decode_str(raw).decode_utf8().map_err(|_| {
                        Error::bad_request(format!("path parameter {name} is not UTF-8"))
                    })?;
                    Ok((name.to_string(), value.into_owned()))
                })
                .collect::<Result<Vec<_>>>()?;
            (*found.value, params)
        };
        let route = &self.routes[index];
        let handler = route
            .handler_for(request.method())
            .ok_or_else(|| Error::method_not_allowed(&route.allowed()))?;
        request.extensions_mut().insert(Params(params));
        handler(request).await
    }
}

impl Route {
    fn handler_for(&self, method: &Method) -> Option<&BoxHandler> {
        let exact = |wanted: &Method| {
            self.handlers
                .iter()
                .find(|(m, _)| m.as_ref() == Some(wanted))
                .map(|(_, h)| h)
        };
        exact(method)
            .or_else(|| {
                (method == Method::HEAD)
                    .then(|| exact(&Method::GET))
                    .flatten()
            })
            .or_else(|| {
                self.handlers
                    .iter()
                    .find(|(m, _)| m.is_none())
                    .map(|(_, h)| h)
            })
    }

    fn allowed(&self) -> Vec<Method> {
        let mut methods: Vec<Method> = self
            .handlers
            .iter()
            .filter_map(|(m, _)| m.clone())
            .collect();
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        methods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;
    use crate::prelude::*;
    use crate::testing::block_on;
    use http::StatusCode;

    async fn echo(request: Request) -> Result<Response> {
        let params: Vec<String> = request
            .extensions()
            .get::<Params>()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Ok(Response::text(format!(
            "{} {}",
            request.method(),
            params.join(",")
        )))
    }

    fn router() -> Router {
        Router::new()
            .get("/", echo)
            .get("/docs/{name}", echo)
            .put("/docs/{name}", echo)
            .delete("/docs/{name}", echo)
            .get("/docs/special", echo)
            .any("/files/{*path}", echo)
    }

    fn send(method: Method, path: &str) -> (StatusCode, String, Option<String>) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = block_on(router().handle(request)).unwrap_or_else(Error::into_response);
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        let status = response.status();
        (
            status,
            block_on(response.into_body().text()).unwrap(),
            allow,
        )
    }

    #[test]
    fn parameters_are_matched_then_percent_decoded() {
        assert_eq!(send(Method::GET, "/").1, "GET ");
        assert_eq!(send(Method::GET, "/docs/a%20b").1, "GET name=a b");
        // An encoded slash stays inside its segment.
        assert_eq!(send(Method::PUT, "/docs/x%2Fy").1, "PUT name=x/y");
        assert_eq!(send(Method::GET, "/docs/special").1, "GET ");
        assert_eq!(
            send(Method::POST, "/files/a/b%21.txt").1,
            "POST path=a/b!.txt"
        );
        let (status, body, _) = send(Method::GET, "/docs/%FF");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[test]
    fn methods_are_matched_with_405_and_head_falls_back_to_get() {
        let (status, _, allow) = send(Method::POST, "/docs/a");
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allow.as_deref(), Some("GET, PUT, DELETE, HEAD"));
        assert_eq!(send(Method::HEAD, "/docs/a").1, "HEAD name=a");
        let (status, body, _) = send(Method::GET, "/nowhere");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, "no route for /nowhere\n");
    }

    #[test]
    #[should_panic(expected = "has two handlers")]
    fn the_same_route_twice_is_a_programming_error() {
        let _ = Router::new().get("/a/{x}", echo).get("/a/{x}", echo);
    }
}
