//! Route lookup with 10,000 routes: exact hosts with path prefixes, subdomain wildcards, exact
//! paths and a catch-all, looked up with a mix of hits on each kind and misses.
//!
//!     cargo bench -p outpost-router --bench lookup

// `criterion_group!` writes a public `benches` function and takes no doc comment for it.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use outpost_router::{RoutePattern, RouteTable};
use std::hint::black_box;

fn ten_thousand_routes() -> RouteTable<u32> {
    let mut builder = RouteTable::builder();
    let mut add = |pattern: String, value: u32| {
        builder
            .add(&RoutePattern::parse(&pattern).unwrap(), value)
            .unwrap();
    };
    for i in 0..4000 {
        add(format!("shop-{i}.example.com/api/*"), i);
        add(format!("shop-{i}.example.com/"), i + 100_000);
    }
    for i in 0..1000 {
        add(format!("*.tenant-{i}.example.net/"), i + 200_000);
    }
    for i in 0..999 {
        add(format!("static.example.org/assets/v{i}/*"), i + 300_000);
    }
    add("*".to_string(), 999_999);
    let table = builder.build();
    assert_eq!(table.len(), 10_000);
    table
}

fn bench(c: &mut Criterion) {
    let table = ten_thousand_routes();
    let requests: Vec<(String, String)> = (0..1024)
        .map(|i| match i % 4 {
            0 => (
                format!("shop-{}.example.com", i * 3 % 4000),
                format!("/api/v1/items/{i}"),
            ),
            1 => (
                format!("user{i}.tenant-{}.example.net", i % 1000),
                "/dashboard".to_string(),
            ),
            2 => (
                "static.example.org".to_string(),
                format!("/assets/v{}/app.js", i % 999),
            ),
            _ => (format!("unknown-{i}.example.io"), "/".to_string()),
        })
        .collect();
    let mut i = 0;
    c.bench_function("lookup_10k_routes", |b| {
        b.iter(|| {
            let (host, path) = &requests[i % requests.len()];
            i += 1;
            black_box(table.lookup(black_box(host), black_box(path)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
