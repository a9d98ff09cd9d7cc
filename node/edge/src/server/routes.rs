//! Building the edge's route table from deployed apps, and sharing it with the request path.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use outpost_router::{RouteTable, SharedRoutes};

use outpost_runtime::Deployment;

/// A route table from host and path patterns to the deployment that serves them.
pub type Routes = RouteTable<Arc<Deployment>>;
/// The route table the request path reads, swapped whole when deployments change.
pub type LiveRoutes = SharedRoutes<Arc<Deployment>>;

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

/// One table over every app, in order; the first app to claim a pattern keeps it and the
/// conflict names both.
pub fn build<'a>(
    deployments: impl IntoIterator<Item = &'a Arc<Deployment>>,
) -> Result<Routes, RouteConflict> {
    let mut builder = Routes::builder();
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
    Ok(builder.build())
}
