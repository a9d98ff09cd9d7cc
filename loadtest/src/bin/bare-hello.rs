//! The ceiling of Outpost's own stack: the same listener, TLS, hyper and connection handling as
//! the node, answering a fixed "hello" with no Wasm at all.
//!
//!     bare-hello --https 127.0.0.1:9443 --cert C --key K [--http 127.0.0.1:9080]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use outpost_core::config::{HttpSettings, TlsCertSpec};
use outpost_net::listener::{Connection, Handler, serve};
use outpost_net::tls::{SniResolver, server_config};
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    https: Option<SocketAddr>,
    #[arg(long)]
    http: Option<SocketAddr>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
}

struct Hello;

impl Handler for Hello {
    type Body = Full<Bytes>;

    async fn handle(
        &self,
        _request: http::Request<Incoming>,
        _connection: Connection,
    ) -> http::Response<Full<Bytes>> {
        let mut response =
            http::Response::new(Full::new(Bytes::from_static(b"hello from outpost\n")));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(addr) = args.https {
        let (Some(cert), Some(key)) = (args.cert, args.key) else {
            anyhow::bail!("--https needs --cert and --key");
        };
        let resolver = SniResolver::load(&[TlsCertSpec {
            hosts: Vec::new(),
            cert,
            key,
        }])?;
        let acceptor = TlsAcceptor::from(server_config(Arc::new(resolver))?);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("https {}", listener.local_addr()?);
        tasks.push(tokio::spawn(serve(
            listener,
            Some(acceptor),
            Arc::new(Hello),
            HttpSettings::default(),
            shutdown.clone(),
        )));
    }
    if let Some(addr) = args.http {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("http {}", listener.local_addr()?);
        tasks.push(tokio::spawn(serve(
            listener,
            None,
            Arc::new(Hello),
            HttpSettings::default(),
            shutdown.clone(),
        )));
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}
