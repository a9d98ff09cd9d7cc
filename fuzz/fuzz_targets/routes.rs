//! Route patterns and request targets from arbitrary text: parsing never panics, a parsed
//! pattern prints back to itself, a table of one pattern matches the requests the pattern
//! names, and any lookup in a table of many returns one of its values or nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outpost_router::{HostPattern, PathPattern, RoutePattern, RouteTable};

#[derive(Arbitrary, Debug)]
struct Input {
    patterns: Vec<String>,
    requests: Vec<(String, String)>,
    below: String,
}

fuzz_target!(|input: Input| {
    let mut builder = RouteTable::builder();
    let mut added = 0usize;
    for (i, text) in input.patterns.iter().enumerate() {
        let Ok(pattern) = RoutePattern::parse(text) else {
            continue;
        };
        let printed = pattern.to_string();
        assert_eq!(RoutePattern::parse(&printed).as_ref(), Ok(&pattern), "{printed:?}");

        // What the pattern names, it matches when it is alone.
        let host = match &pattern.host {
            HostPattern::Any => "any.example".to_string(),
            HostPattern::Exact(host) => host.clone(),
            HostPattern::Subdomains(suffix) => format!("x.{suffix}"),
        };
        let path = match &pattern.path {
            PathPattern::Exact(path) => path.clone(),
            PathPattern::Prefix(prefix) => {
                let below: String = input.below.chars().filter(|c| *c != '?' && *c != '#').collect();
                format!("{prefix}/{below}")
            }
        };
        let mut alone = RouteTable::builder();
        alone.add(&pattern, ()).unwrap();
        assert!(
            alone.build().lookup(&host, &path).is_some(),
            "{pattern:?} does not match {host:?} {path:?}"
        );

        if builder.add(&pattern, i).is_ok() {
            added += 1;
        }
    }
    let table = builder.build();
    assert_eq!(table.len(), added);
    for (host, path) in &input.requests {
        if let Some(i) = table.lookup(host, path) {
            assert!(RoutePattern::parse(&input.patterns[*i]).is_ok());
        }
    }
});
