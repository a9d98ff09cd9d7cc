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
use outpost_sdk::prelude::*;
use outpost_sdk::{Error, Handler, Request, Response, Result, StatusCode, config};
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
    Ok(request.header_str(&header).map(str::to_string))
}

impl Handler for GeoConfig {
    async fn handle(request: Request) -> Result<Response> {
        let rules = Store::open("rules")?;
        let country = country(&request)?
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(|c| c.to_ascii_uppercase());
        let keys = country
            .iter()
            .map(|c| format!("country/{c}"))
            .chain(["country/default".into()]);
        for key in keys {
            let Some(rule) = rules.get_json::<Rule>(&key)? else {
                continue;
            };
            let status = StatusCode::from_u16(rule.status)
                .ok()
                .filter(|s| matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308))
                .ok_or_else(|| {
                    Error::internal(format!(
                        "rule {key}: status {} is not a redirect",
                        rule.status
                    ))
                })?;
            return Response::redirect(status, &rule.location)?.with_header("x-geo-rule", key);
        }
        let who = country.unwrap_or_else(|| "unknown".into());
        Ok(Response::text(format!(
            "no redirect rule for country {who}\n"
        )))
    }
}

outpost_sdk::export!(GeoConfig);

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_sdk::testing;

    fn visit(path: &str, country: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(country) = country {
            request = request.header("x-client-country", country);
        }
        testing::call::<GeoConfig>(request.body(().into()).unwrap())
    }

    #[test]
    fn a_country_rule_wins_over_the_default() {
        testing::reset();
        let rules = Store::open("rules").unwrap();
        rules
            .set(
                "country/DE",
                r#"{"location": "https://example.de/", "status": 307}"#,
            )
            .unwrap();
        rules
            .set("country/default", r#"{"location": "https://example.com/"}"#)
            .unwrap();

        let german = visit("/", Some("de"));
        assert_eq!(german.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(german.headers()["location"], "https://example.de/");
        assert_eq!(german.headers()["x-geo-rule"], "country/DE");

        let other = visit("/?country=fr", None);
        assert_eq!(other.status(), StatusCode::FOUND);
        assert_eq!(other.headers()["location"], "https://example.com/");
    }

    #[test]
    fn without_rules_it_says_so_and_a_bad_rule_is_a_500() {
        testing::reset();
        let none = visit("/", Some("NL"));
        assert_eq!(
            testing::block_on(none.into_body().text()).unwrap(),
            "no redirect rule for country NL\n"
        );
        Store::open("rules")
            .unwrap()
            .set("country/NL", r#"{"location": "/", "status": 200}"#)
            .unwrap();
        assert_eq!(
            visit("/", Some("NL")).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
