//! `outpost tail [APP]`: an app's requests on every node of the fleet, live, through the origin
//! (through every origin, for a fleet of several).

use anyhow::{Context, anyhow};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::admin_client::{AdminClient, OriginArgs};
use super::fleet::resolve_app;

#[derive(Args)]
pub(super) struct TailArgs {
    /// The app (default: the name in ./outpost.toml).
    app: Option<String>,
    /// Only these statuses: codes and classes, comma-separated (`5xx,429`).
    #[arg(long)]
    status: Option<String>,
    /// Only this fraction of requests (0 < RATE <= 1), chosen by request id.
    #[arg(long)]
    sample: Option<f64>,
    /// Print each request as the JSON object the origin sends.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    origin: OriginArgs,
}

pub(super) async fn run(args: TailArgs) -> anyhow::Result<()> {
    let (app, client) = resolve_app(args.app.as_deref(), &args.origin)?;
    let mut query = Vec::new();
    if let Some(status) = &args.status {
        query.push(format!(
            "status={}",
            utf8_percent_encode(status, NON_ALPHANUMERIC)
        ));
    }
    if let Some(sample) = args.sample {
        query.push(format!("sample={sample}"));
    }
    let path = format!(
        "/v1/tail/{}?{}",
        utf8_percent_encode(&app, NON_ALPHANUMERIC),
        query.join("&")
    );
    let origins = client.each_origin();
    if let [only] = origins.as_slice() {
        return Err(match tail_one(only, &path, args.json).await {
            Ended::Refused(err) | Ended::Broken(err) => err,
        });
    }
    // A fleet of several origins: each node sends its records to the origin it is linked
    // to, so the tail follows every origin at once, and takes up again with one that goes
    // away (a node that fails over is followed through its new origin meanwhile).
    let mut tails = tokio::task::JoinSet::new();
    for origin in origins {
        let path = path.clone();
        tails.spawn(async move {
            loop {
                match tail_one(&origin, &path, args.json).await {
                    Ended::Refused(err) => return err,
                    Ended::Broken(err) => {
                        eprintln!("{}: {err:#}; trying again in 2 s", origin.origin());
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        });
    }
    // Only a refusal (an unknown app, a token without the right) ends it.
    match tails.join_next().await {
        Some(refused) => Err(refused.context("a tail task failed")?),
        None => Err(anyhow!("no origin to tail")),
    }
}

/// How long the tail of a fleet of several origins waits before it follows again an origin
/// it lost.
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Why following one origin ended.
enum Ended {
    /// The origin refused the tail: it would again.
    Refused(anyhow::Error),
    /// The origin could not be reached, or its stream broke or ended.
    Broken(anyhow::Error),
}

/// Print what one origin sends for `path` until it stops.
async fn tail_one(client: &AdminClient, path: &str, json: bool) -> Ended {
    let response = match client
        .open(
            http::Method::GET,
            path,
            "application/json",
            &[],
            Empty::<Bytes>::new(),
        )
        .await
    {
        Ok(response) => response,
        Err(err) => return Ended::Broken(err),
    };
    if !response.status().is_success() {
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => return Ended::Broken(err.into()),
        };
        let reason = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Ended::Refused(anyhow!(
            "the origin refused ({}): {reason}",
            status.as_u16()
        ));
    }
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame.context("the tail stream broke") {
            Ok(frame) => frame,
            Err(err) => return Ended::Broken(err),
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<Value>(&line) {
                Ok(value) => print_line(&value, json),
                Err(err) => return Ended::Broken(anyhow!("a malformed tail line: {err}")),
            }
        }
    }
    Ended::Broken(anyhow!(
        "the origin ended the tail (it may be shutting down)"
    ))
}

fn print_line(value: &Value, json: bool) {
    if let Some(app) = value["tailing"].as_str() {
        eprintln!(
            "tailing {app} on {} connected node(s); Ctrl-C to stop",
            value["nodes"]
        );
    } else if let Some(lost) = value["lost"].as_u64() {
        eprintln!("({lost} requests not shown: this client fell behind)");
    } else if json {
        println!("{value}");
    } else {
        // A trigger's request shows its schedule where a client's shows the client.
        let trigger = value["trigger"].as_str();
        println!(
            "{} {} {} {} {} {} {:.2} ms (guest {:.2} ms) {} {}{}",
            format_time(value["at_ms"].as_u64().unwrap_or(0)),
            value["node"].as_str().unwrap_or("?"),
            match trigger {
                Some(_) => "trigger",
                None => value["client"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                    .unwrap_or("-"),
            },
            value["status"],
            value["method"].as_str().unwrap_or("?"),
            value["path"].as_str().unwrap_or("?"),
            value["micros"].as_f64().unwrap_or(0.0) / 1000.0,
            value["guest_us"].as_f64().unwrap_or(0.0) / 1000.0,
            value["version"].as_str().unwrap_or("?"),
            value["request_id"].as_str().unwrap_or("?"),
            trigger
                .map(|cron| format!(" (cron {cron})"))
                .unwrap_or_default(),
        );
    }
}

/// `HH:MM:SS.mmm` UTC.
fn format_time(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}
