//! The smallest handler: answers 200 with the path it was asked for and the caller's
//! User-Agent header.

use outpost_sdk::{Handler, Request, Response, Result};

struct Hello;

impl Handler for Hello {
    fn handle(request: Request) -> Result<Response> {
        let agent = request.header("user-agent").unwrap_or("(none)");
        Ok(Response::text(format!(
            "hello from outpost\npath: {}\nuser-agent: {agent}\n",
            request.path()
        )))
    }
}

outpost_sdk::export!(Hello);
