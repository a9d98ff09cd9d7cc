//! A handler for testing the host: each path exercises one behaviour, good or bad.
//!
//! | path              | does                                                         |
//! | ----------------- | ------------------------------------------------------------ |
//! | `/ok`             | 200 `ok`                                                     |
//! | `/count`          | bumps a static counter and returns it (always 1: fresh instance per request) |
//! | `/echo`           | returns the request body                                     |
//! | `/panic`          | panics (a trap)                                              |
//! | `/loop`           | spins forever (the CPU limit must stop it)                   |
//! | `/spin?ms=N`      | burns N ms of CPU, then 200                                  |
//! | `/sleep?ms=N`     | waits N ms on a WASI clock without using CPU, then 200       |
//! | `/oom`            | allocates until memory runs out                              |
//! | `/log`            | writes lines to stdout and stderr                            |
//! | `/config?key=K`   | K from wasi:config and from wasi:cli/environment             |
//! | `/fetch?url=U`    | fetches U, returns its status and body (or the error)        |

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use outpost_sdk::{Error, Handler, Request, Response, Result, config, fetch};

static COUNT: AtomicU32 = AtomicU32::new(0);

struct Probe;

impl Handler for Probe {
    fn handle(mut request: Request) -> Result<Response> {
        let millis = || -> Result<u64> {
            request
                .query_param("ms")
                .and_then(|ms| ms.parse().ok())
                .ok_or_else(|| Error::bad_request("give ?ms=N"))
        };
        match request.path() {
            "/ok" => Ok(Response::text("ok")),
            "/count" => Ok(Response::text(
                (COUNT.fetch_add(1, Ordering::Relaxed) + 1).to_string(),
            )),
            "/echo" => {
                let body = request.take_body()?;
                Ok(Response::bytes("application/octet-stream", body))
            }
            "/panic" => panic!("the probe was asked to panic"),
            "/loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/spin" => {
                let until = Instant::now() + Duration::from_millis(millis()?);
                let mut spins: u64 = 0;
                while Instant::now() < until {
                    spins = std::hint::black_box(spins + 1);
                }
                Ok(Response::text(format!("spun {spins}")))
            }
            "/sleep" => {
                let nanos = millis()? * 1_000_000;
                wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
                Ok(Response::text("slept"))
            }
            "/oom" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "/log" => {
                println!("line to stdout");
                eprintln!("line to stderr");
                outpost_sdk::error!("leveled error line");
                Ok(Response::text("logged"))
            }
            "/config" => {
                let key = request
                    .query_param("key")
                    .ok_or_else(|| Error::bad_request("give ?key=K"))?;
                let from_config = config::get(&key)?.unwrap_or_else(|| "(unset)".into());
                // wasi:cli/environment directly: std::env goes through the preview1 adapter, and
                // the proxy adapter (used to build this guest on Debian) has no environment.
                let from_env = wasip2::cli::environment::get_environment()
                    .into_iter()
                    .find(|(k, _)| *k == key)
                    .map_or_else(|| "(unset)".into(), |(_, v)| v);
                Ok(Response::text(format!("config={from_config} env={from_env}")))
            }
            "/fetch" => {
                let url = request
                    .query_param("url")
                    .ok_or_else(|| Error::bad_request("give ?url=U"))?;
                let response = fetch(Request::get(&url)?)?;
                Ok(Response::text(format!(
                    "{} {}",
                    response.status(),
                    response.text_body()?
                )))
            }
            other => Err(Error::not_found(format!("the probe has no {other}"))),
        }
    }
}

outpost_sdk::export!(Probe);
