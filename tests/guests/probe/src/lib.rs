//! A handler for testing the host: each path exercises one behaviour, good or bad.
//!
//! | path              | does                                                         |
//! | ----------------- | ------------------------------------------------------------ |
//! | `/ok`             | 200 `ok`                                                     |
//! | `/count`          | bumps a static counter and returns it (always 1: fresh instance per request) |
//! | `/echo`           | returns the request body                                     |
//! | `/bytes?kb=N`     | answers N KiB of `x`                                         |
//! | `/panic`          | panics (a trap)                                              |
//! | `/loop`           | spins forever (the CPU limit must stop it)                   |
//! | `/spin?ms=N`      | burns N ms of CPU, then 200                                  |
//! | `/sleep?ms=N`     | waits N ms on a WASI clock without using CPU, then 200       |
//! | `/oom`            | allocates until memory runs out                              |
//! | `/log`            | writes lines to stdout and stderr                            |
//! | `/config?key=K`   | K from wasi:config and from wasi:cli/environment             |
//! | `/fetch?url=U`    | fetches U, returns its status and body (or the error)        |
//! | `/fetch-many?url=U&n=N` | fetches U N times, one after another; a line per fetch (status or error) |
//! | `/fetch-all?url=U&n=N` | fetches U N times at once (`join_all`); a line per fetch, in order |
//! | `/fetch-timed?url=U&connect_ms=&first_byte_ms=&between_ms=` | fetches U with those timeouts and reads the whole body: `STATUS LENGTH` or the error |
//! | `/meta`           | what the node said of the request: `client= protocol= tls= node= region= id=`, one line each (`-` if unset) |
//! | `/tick?ns=N`      | a cron trigger's path: adds 1 to `tick-<scheduled time>` in N (400 unless a trigger sent it) |
//! | `/wasi`           | tries every capability the host links but withholds (files, sockets, name lookup, stdin) and reports what WASI answered, one line each |
//! | `/kv/OP?ns=N&key=K` | the KV: OP is get, set (body is the value; `ttl=S`), delete, exists, incr (`by=D`), cas (`expect=V`, body), list (`prefix=P`), get-many (`keys=a,b`), set-many (`keys=a,b`, body is each value) |

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use outpost_sdk::prelude::*;
use outpost_sdk::{
    Body, Error, FetchOptions, Handler, Request, Response, Result, config, fetch, fetch_with,
    join_all, kv, sleep,
};

static COUNT: AtomicU32 = AtomicU32::new(0);

struct Probe;

impl Handler for Probe {
    async fn handle(request: Request) -> Result<Response> {
        let millis = || -> Result<u64> {
            request
                .query_param("ms")
                .and_then(|ms| ms.parse().ok())
                .ok_or_else(|| Error::bad_request("give ?ms=N"))
        };
        let path = request.uri().path().to_string();
        match path.as_str() {
            "/ok" => Ok(Response::text("ok")),
            "/count" => Ok(Response::text(
                (COUNT.fetch_add(1, Ordering::Relaxed) + 1).to_string(),
            )),
            // Read whole before answering, so a body cut off for its size is a 413, not a
            // truncated 200.
            "/echo" => {
                let body = request.into_body().bytes().await?;
                Ok(Response::bytes("application/octet-stream", body))
            }
            "/bytes" => {
                let kb: usize = request
                    .query_param("kb")
                    .and_then(|kb| kb.parse().ok())
                    .ok_or_else(|| Error::bad_request("give ?kb=N"))?;
                Ok(Response::bytes(
                    "application/octet-stream",
                    vec![b'x'; kb << 10],
                ))
            }
            "/panic" => panic!("the probe was asked to panic"),
            // A streamed body whose second piece panics: the head and a piece are already out.
            "/panic-mid-body" => Ok(Response::new(Body::from_stream(
                futures_lite::stream::iter(0..2).map(|n| {
                    assert!(n == 0, "the probe was asked to panic mid-body");
                    "first piece\n"
                }),
            ))),
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
                sleep(Duration::from_millis(millis()?)).await;
                Ok(Response::text("slept"))
            }
            // Which node answered (its `node` config value), after `ms` milliseconds if given.
            "/whoami" => {
                if let Ok(ms) = millis() {
                    sleep(Duration::from_millis(ms)).await;
                }
                Ok(Response::text(config::get("node")?.unwrap_or_default()))
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
            // `mb` MiB of memory written, then held for `ms` milliseconds.
            "/hold" => {
                let mb: usize = request
                    .query_param("mb")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let held = std::hint::black_box(vec![1u8; mb << 20]);
                sleep(Duration::from_millis(millis()?)).await;
                Ok(Response::text(format!("held {} MiB", held.len() >> 20)))
            }
            // `n` lines of `size` bytes to stderr, as fast as the guest can write them.
            "/log-flood" => {
                let number = |name: &str, default: usize| {
                    request
                        .query_param(name)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(default)
                };
                let (n, size) = (number("n", 1000), number("size", 64));
                let line = format!("flood line {}", "x".repeat(size.saturating_sub(11)));
                for _ in 0..n {
                    eprintln!("{line}");
                }
                Ok(Response::text(format!("wrote {n} lines")))
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
                Ok(Response::text(format!(
                    "config={from_config} env={from_env}"
                )))
            }
            "/fetch" => {
                let url = request
                    .query_param("url")
                    .ok_or_else(|| Error::bad_request("give ?url=U"))?;
                let response = fetch(Request::get(&url).body(Body::empty())?).await?;
                let status = response.status().as_u16();
                Ok(Response::text(format!(
                    "{status} {}",
                    response.into_body().text().await?
                )))
            }
            "/wasi" => Ok(Response::text(withheld_capabilities())),
            "/tick" => {
                let (Some(_), Some(at)) = (request.trigger(), request.scheduled_time()) else {
                    return Err(Error::bad_request("not a trigger's request"));
                };
                let namespace = request
                    .query_param("ns")
                    .ok_or_else(|| Error::bad_request("give ?ns=N"))?;
                let fired = kv::Store::open(&namespace)?.increment(&format!("tick-{at}"), 1)?;
                Ok(Response::text(fired.to_string()))
            }
            "/meta" => {
                let or_dash = |value: Option<&str>| value.unwrap_or("-").to_string();
                Ok(Response::text(format!(
                    "client={}\nprotocol={}\ntls={}\nnode={}\nregion={}\nid={}\n",
                    request
                        .client_ip()
                        .map_or_else(|| "-".into(), |ip| ip.to_string()),
                    or_dash(request.protocol()),
                    or_dash(request.tls_version()),
                    or_dash(request.node()),
                    or_dash(request.region()),
                    or_dash(request.request_id()),
                )))
            }
            "/fetch-many" => {
                let (url, n) = url_and_count(&request)?;
                let mut lines = Vec::new();
                for _ in 0..n {
                    lines.push(status_line(fetch_get(&url).await));
                }
                Ok(Response::text(lines.join("\n")))
            }
            "/fetch-all" => {
                let (url, n) = url_and_count(&request)?;
                let results = join_all((0..n).map(|_| fetch_get(&url))).await;
                let lines: Vec<String> = results.into_iter().map(status_line).collect();
                Ok(Response::text(lines.join("\n")))
            }
            "/fetch-timed" => {
                let url = request
                    .query_param("url")
                    .ok_or_else(|| Error::bad_request("give ?url=U"))?;
                let ms = |name: &str| {
                    request
                        .query_param(name)
                        .and_then(|v| v.parse().ok())
                        .map(Duration::from_millis)
                };
                let options = FetchOptions {
                    connect_timeout: ms("connect_ms"),
                    first_byte_timeout: ms("first_byte_ms"),
                    between_bytes_timeout: ms("between_ms"),
                };
                let outcome = async {
                    let response =
                        fetch_with(Request::get(&url).body(Body::empty())?, options).await?;
                    let status = response.status().as_u16();
                    let mut body = response.into_body();
                    let mut length = 0;
                    while let Some(chunk) = body.chunk().await? {
                        length += chunk.len();
                    }
                    Ok::<_, Error>(format!("{status} {length}"))
                };
                Ok(Response::text(
                    outcome.await.unwrap_or_else(|err| format!("error: {err}")),
                ))
            }
            path if path.starts_with("/kv/") => kv(&path["/kv/".len()..], request).await,
            other => Err(Error::not_found(format!("the probe has no {other}"))),
        }
    }
}

/// What the guest gets when it reaches for what the host links but does not grant. Each line is
/// `capability: outcome`; the node must answer with WASI's own error codes, never trap.
fn withheld_capabilities() -> String {
    use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasip2::sockets::{instance_network, ip_name_lookup, tcp_create_socket, udp_create_socket};
    let mut lines = Vec::new();
    let directories = wasip2::filesystem::preopens::get_directories();
    lines.push(format!("preopens: {}", directories.len()));
    let stdin = wasip2::cli::stdin::get_stdin();
    lines.push(format!(
        "stdin: {}",
        match stdin.blocking_read(16) {
            Ok(bytes) => format!("read {} bytes", bytes.len()),
            Err(wasip2::io::streams::StreamError::Closed) => "closed".into(),
            Err(err) => format!("{err:?}"),
        }
    ));
    let network = instance_network::instance_network();
    let outcome = |result: Result<(), wasip2::sockets::network::ErrorCode>| match result {
        Ok(()) => "granted".to_string(),
        Err(code) => code.name().to_string(),
    };
    lines.push(format!(
        "tcp-create: {}",
        outcome(tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map(drop))
    ));
    lines.push(format!(
        "udp-create: {}",
        outcome(udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map(drop))
    ));
    lines.push(format!(
        "lookup: {}",
        outcome(ip_name_lookup::resolve_addresses(&network, "localhost").map(drop))
    ));
    // If a socket could be made, it must not reach anything: connect to the loopback admin port.
    if let Ok(socket) = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        let address = IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port: 9901,
            address: (127, 0, 0, 1),
        });
        lines.push(format!(
            "tcp-connect: {}",
            outcome(socket.start_connect(&network, address))
        ));
    }
    lines.join("\n")
}

/// `?url=U&n=N` (N defaults to 1).
fn url_and_count(request: &Request) -> Result<(String, usize)> {
    let url = request
        .query_param("url")
        .ok_or_else(|| Error::bad_request("give ?url=U"))?;
    let n = request
        .query_param("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    Ok((url, n))
}

async fn fetch_get(url: &str) -> Result<Response> {
    fetch(Request::get(url).body(Body::empty())?).await
}

fn status_line(outcome: Result<Response>) -> String {
    match outcome {
        Ok(response) => response.status().as_u16().to_string(),
        Err(err) => format!("error: {}", err.message()),
    }
}

async fn kv(op: &str, request: Request) -> Result<Response> {
    let param = |name: &str| request.query_param(name);
    let namespace = param("ns").ok_or_else(|| Error::bad_request("give ?ns=N"))?;
    let key = param("key").unwrap_or_default();
    let store = kv::Store::open(&namespace)?;
    let list = |text: Option<String>| -> Vec<String> {
        text.map(|t| t.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    match op {
        "get" => match store.get(&key)? {
            Some(value) => Ok(Response::bytes("application/octet-stream", value)),
            None => Err(Error::not_found(format!("no key {key:?}"))),
        },
        "entry" => match store.get_entry(&key)? {
            Some(entry) => Ok(Response::text(format!(
                "value={} version={} metadata={} expires={}",
                String::from_utf8_lossy(&entry.value),
                entry.version,
                entry
                    .metadata
                    .map(|m| String::from_utf8_lossy(&m).into_owned())
                    .unwrap_or_default(),
                entry
                    .expires_at_ms
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ))),
            None => Err(Error::not_found(format!("no key {key:?}"))),
        },
        "set" => {
            let ttl = param("ttl").and_then(|t| t.parse().ok());
            let metadata = param("meta").map(String::into_bytes);
            let value = request.into_body().bytes().await?;
            if ttl.is_some() || metadata.is_some() {
                store.set_with(
                    &key,
                    value,
                    kv::SetOptions {
                        metadata,
                        ttl_seconds: ttl,
                    },
                )?;
            } else {
                store.set(&key, value)?;
            }
            Ok(Response::text("stored"))
        }
        "delete" => {
            store.delete(&key)?;
            Ok(Response::text("deleted"))
        }
        "exists" => Ok(Response::text(store.exists(&key)?.to_string())),
        "incr" => {
            let by = param("by").and_then(|b| b.parse().ok()).unwrap_or(1);
            Ok(Response::text(store.increment(&key, by)?.to_string()))
        }
        "cas" => {
            let expected = param("expect").map(String::into_bytes);
            let value = request.into_body().bytes().await?;
            Ok(Response::text(
                store
                    .compare_and_swap(&key, expected.as_deref(), value)?
                    .to_string(),
            ))
        }
        "list" => {
            let prefix = param("prefix").unwrap_or_default();
            // Small pages by default, so every listing pages; ?page=N for large key sets.
            let page_size = param("page").and_then(|p| p.parse().ok()).unwrap_or(2);
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = store.list(&prefix, cursor.as_deref(), page_size)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok(Response::text(keys.join(",")))
        }
        "list-keys" => {
            // The standard interface's paging (wasi:keyvalue list-keys with a cursor).
            Ok(Response::text(store.keys()?.join(",")))
        }
        "get-many" => {
            let found = store.get_many(&list(param("keys")))?;
            let shown: Vec<String> = found
                .into_iter()
                .map(|pair| {
                    pair.map_or("-".into(), |(k, v)| {
                        format!("{k}={}", String::from_utf8_lossy(&v))
                    })
                })
                .collect();
            Ok(Response::text(shown.join(",")))
        }
        "set-many" => {
            let keys = list(param("keys"));
            let value = request.into_body().bytes().await?.to_vec();
            let items: Vec<(String, Vec<u8>)> =
                keys.into_iter().map(|k| (k, value.clone())).collect();
            store.set_many(&items)?;
            Ok(Response::text("stored"))
        }
        "delete-many" => {
            store.delete_many(&list(param("keys")))?;
            Ok(Response::text("deleted"))
        }
        "time-get" => {
            // Each get timed on the guest's monotonic clock, beside empty intervals of that
            // clock, so the clock's own cost can be told apart.
            let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(1000);
            let (mut gets, mut empty) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let started = Instant::now();
                std::hint::black_box(store.get(&key)?);
                gets.push(started.elapsed().as_nanos() as u64);
                let started = Instant::now();
                empty.push(started.elapsed().as_nanos() as u64);
            }
            let summary = |mut samples: Vec<u64>| {
                samples.sort_unstable();
                let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
                format!("p50={} p99={} max={}", at(0.5), at(0.99), at(1.0))
            };
            Ok(Response::text(format!(
                "get_ns {} clock_ns {}",
                summary(gets),
                summary(empty)
            )))
        }
        other => Err(Error::not_found(format!("no KV op {other}"))),
    }
}

outpost_sdk::export!(Probe);
