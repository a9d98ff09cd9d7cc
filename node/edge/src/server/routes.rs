//! What the request path looks requests up in, built from deployed apps and swapped whole:
//! the route table (host and path patterns to each app's active version), the splits of apps
//! whose traffic is shared between versions, and every version a preview host reaches.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use outpost_router::RouteTable;
use outpost_runtime::Deployment;

use super::split::Split;

/// The deployments requests go to.
#[derive(Default)]
pub struct Routes {
    /// Host and path patterns to the app's active version (a split's base).
    table: RouteTable<Arc<Deployment>>,
    /// By app: how its traffic is shared, when it is split between versions.
    splits: HashMap<Arc<str>, Split>,
    /// By app, then version: what its preview host reaches.
    previews: HashMap<Arc<str>, HashMap<u64, Arc<Deployment>>>,
}

impl Routes {
    /// The active deployment routed at `host` and `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Arc<Deployment>> {
        self.table.lookup(host, path)
    }

    /// How `app`'s traffic is shared, if it is split.
    pub fn split(&self, app: &str) -> Option<&Split> {
        self.splits.get(app)
    }

    /// Every split, by app.
    pub fn splits(&self) -> impl Iterator<Item = (&Arc<str>, &Split)> {
        self.splits.iter()
    }

    /// Version `version` of `app`, for its preview host.
    pub fn preview(&self, app: &str, version: u64) -> Option<&Arc<Deployment>> {
        self.previews.get(app)?.get(&version)
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Each app's active version (a split's base), one for each of its routes.
    pub fn active(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.table.values()
    }

    /// Every deployment routed requests reach, splits included, previews not (one may come
    /// more than once).
    pub fn serving(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.table
            .values()
            .chain(self.splits.values().flat_map(Split::deployments))
    }

    /// These routes, with `app`'s traffic shared by `split`.
    pub fn with_split(mut self, app: Arc<str>, split: Split) -> Self {
        self.splits.insert(app, split);
        self
    }

    /// These routes, with version `version` of its app reachable by preview host.
    pub fn with_preview(mut self, version: u64, deployment: Arc<Deployment>) -> Self {
        self.previews
            .entry(deployment.app.name.clone())
            .or_default()
            .insert(version, deployment);
        self
    }
}

/// The routes the request path reads: loaded without a lock, swapped whole when deployments
/// change, so no request sees half of a change.
pub struct LiveRoutes {
    current: ArcSwap<Routes>,
}

impl LiveRoutes {
    /// Start with `routes`.
    pub fn new(routes: Routes) -> Self {
        LiveRoutes {
            current: ArcSwap::from_pointee(routes),
        }
    }

    /// The routes as of now; holding the guard keeps them alive without blocking a swap.
    pub fn load(&self) -> arc_swap::Guard<Arc<Routes>> {
        self.current.load()
    }

    /// Replace all of them.
    pub fn swap(&self, routes: Routes) {
        self.current.store(Arc::new(routes));
    }
}

/// The same route pattern in two apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConflict {
    /// The route pattern both apps claim.
    pub pattern: String,
    /// The app that had the route first.
    pub first: String,
    /// The app that asked for it again.
    pub second: String,
}

impl fmt::Display for RouteConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route {} of app {} is already a route of app {}",
            self.pattern, self.second, self.first
        )
    }
}

impl std::error::Error for RouteConflict {}

/// Routes over every app, in order; the first app to claim a pattern keeps it and the
/// conflict names both. No splits, no previews.
pub fn build<'a>(
    deployments: impl IntoIterator<Item = &'a Arc<Deployment>>,
) -> Result<Routes, RouteConflict> {
    let mut builder = RouteTable::builder();
    let mut owners: HashMap<String, Arc<str>> = HashMap::new();
    for deployment in deployments {
        for pattern in &deployment.app.routes {
            let key = pattern.to_string();
            if builder.add(pattern, deployment.clone()).is_err() {
                return Err(RouteConflict {
                    first: owners.get(&key).map(|a| a.to_string()).unwrap_or_default(),
                    second: deployment.app.name.to_string(),
                    pattern: key,
                });
            }
            owners.insert(key, deployment.app.name.clone());
        }
    }
    Ok(Routes {
        table: builder.build(),
        ..Routes::default()
    })
}
