//! The smallest handler: answers 200 with the path it was asked for and the caller's
//! User-Agent header.

use outpost_sdk::prelude::*;
use outpost_sdk::{Handler, Request, Response, Result};

struct Hello;

impl Handler for Hello {
    async fn handle(request: Request) -> Result<Response> {
        let agent = request.header_str("user-agent").unwrap_or("(none)");
        Ok(Response::text(format!(
            "hello from outpost\npath: {}\nuser-agent: {agent}\n",
            request.uri().path()
        )))
    }
}

outpost_sdk::export!(Hello);

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_sdk::testing;

    #[test]
    fn says_hello_with_the_path_and_agent() {
        let request = Request::get("/some/where")
            .header("user-agent", "curl/8")
            .body(().into())
            .unwrap();
        let response = testing::call::<Hello>(request);
        assert_eq!(response.status(), 200);
        let text = testing::block_on(response.into_body().text()).unwrap();
        assert_eq!(
            text,
            "hello from outpost\npath: /some/where\nuser-agent: curl/8\n"
        );
    }
}
