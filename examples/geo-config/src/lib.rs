//! Redirect rules per country, read from the edge KV on every request.
//!
//! Rules live in the `rules` namespace under `country/{CC}` (ISO 3166 code, upper case), with
//! `country/default` for everyone else, as JSON:
//!
//! ```json
//! {"location": "https://example.de/", "status": 302}
//! ```
//!
//! Change them with `outpost kv put` (or any handler that writes the namespace) and every node
//! follows within moments; reads are local to the node, so a rule costs microseconds per request.
//! The country comes from the header named by the `country_header` config value (set by the
//! GeoIP-aware load balancer in front), or from `?country=` to try rules out.

use outpost_sdk::kv::Store;
use outpost_sdk::{Error, Handler, Request, Response, Result, config};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    location: String,
    #[serde(default = "found")]
    status: u16,
}

fn found() -> u16 {
    302
}

struct GeoConfig;

fn country(request: &Request) -> Result<Option<String>> {
    if let Some(country) = request.query_param("country") {
        return Ok(Some(country));
    }
    let header = config::get("country_header")?.unwrap_or_else(|| "x-client-country".into());
    Ok(request.header(&header).map(str::to_string))
}

impl Handler for GeoConfig {
    fn handle(request: Request) -> Result<Response> {
        let rules = Store::open("rules")?;
        let country = country(&request)?
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(|c| c.to_ascii_uppercase());
        let keys = country.iter().map(|c| format!("country/{c}")).chain(["country/default".into()]);
        for key in keys {
            let Some(rule) = rules.get_json::<Rule>(&key)? else {
                continue;
            };
            if !matches!(rule.status, 301 | 302 | 303 | 307 | 308) {
                return Err(Error::internal(format!("rule {key}: status {} is not a redirect", rule.status)));
            }
            return Ok(Response::redirect(rule.status, &rule.location).with_header("x-geo-rule", key));
        }
        let who = country.unwrap_or_else(|| "unknown".into());
        Ok(Response::text(format!("no redirect rule for country {who}\n")))
    }
}

outpost_sdk::export!(GeoConfig);
