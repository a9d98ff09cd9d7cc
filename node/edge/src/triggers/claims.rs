//! Who decides which node fires a tick: for a fleet app, the origin (each node that runs the
//! app claims the tick over its link, and the origin's registry grants it to one); for an app
//! the node serves of its own (node.toml's `apps`, every app under `outpost dev`), the node
//! itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use arc_swap::ArcSwapOption;
use outpost_core::wire::{Open, TickReply, read_frame, write_frame};

/// How long a claim may take: past this, the tick is another node's to fire or no one's.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a node's claims of ticks are decided.
pub struct TickClaims {
    /// The fleet's apps' claims, sent to the origin; `None` for a node without a fleet.
    origin: Option<Arc<OriginClaims>>,
    /// The apps the node serves of its own, beside the fleet's: their ticks are its alone.
    own: HashSet<String>,
    local: LocalClaims,
}

impl TickClaims {
    /// For a node without a fleet: it decides every claim.
    pub fn alone() -> Self {
        TickClaims {
            origin: None,
            own: HashSet::new(),
            local: LocalClaims::default(),
        }
    }

    /// For a fleet node: the origin decides, except for the apps in `own` (its node.toml's).
    pub fn fleet(origin: Arc<OriginClaims>, own: impl IntoIterator<Item = String>) -> Self {
        TickClaims {
            origin: Some(origin),
            own: own.into_iter().collect(),
            local: LocalClaims::default(),
        }
    }

    /// Claim `tick` of the trigger `key` of `app`.
    pub(crate) async fn claim(&self, app: &str, key: &str, tick: u64) -> anyhow::Result<TickReply> {
        match &self.origin {
            Some(origin) if !self.own.contains(app) => origin.claim(app, key, tick).await,
            _ => Ok(self.local.claim(app, key, tick)),
        }
    }
}

/// Claims sent to the origin on the connection the node's link holds now.
pub struct OriginClaims {
    node: String,
    connection: ArcSwapOption<quinn::Connection>,
}

impl OriginClaims {
    /// Claims made as `node`, the name in its cluster certificate.
    pub fn new(node: &str) -> Self {
        OriginClaims {
            node: node.to_string(),
            connection: ArcSwapOption::empty(),
        }
    }

    /// The link is up on `connection`: claims go there.
    pub(crate) fn connected(&self, connection: &quinn::Connection) {
        self.connection.store(Some(Arc::new(connection.clone())));
    }

    /// The link is down: claims fail until it is up again.
    pub(crate) fn disconnected(&self) {
        self.connection.store(None);
    }

    /// Claim `tick` of trigger `key` of `app` from the origin (a relay claims its followers'
    /// ticks this way too).
    pub(crate) async fn claim(&self, app: &str, key: &str, tick: u64) -> anyhow::Result<TickReply> {
        let connection = self
            .connection
            .load_full()
            .ok_or_else(|| anyhow!("no link to the origin"))?;
        let exchange = async {
            let (mut send, mut recv) = connection.open_bi().await?;
            let open = Open::Tick {
                node: self.node.clone(),
                app: app.to_string(),
                trigger: key.to_string(),
                tick,
            };
            write_frame(&mut send, &open).await?;
            send.finish()?;
            match read_frame::<_, TickReply>(&mut recv).await? {
                Some(reply) => Ok(reply),
                None => bail!("the origin closed the stream without an answer"),
            }
        };
        tokio::time::timeout(CLAIM_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("the origin did not answer within {CLAIM_TIMEOUT:?}"))?
            .context("claiming the tick")
    }
}

/// Claims decided in memory, by the same rule as the origin's (a trigger's ticks move forward
/// only).
#[derive(Default)]
struct LocalClaims {
    last: Mutex<HashMap<(String, String), u64>>,
}

impl LocalClaims {
    fn claim(&self, app: &str, key: &str, tick: u64) -> TickReply {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let previous = last.get(&(app.to_string(), key.to_string())).copied();
        if !outpost_core::cron::claim_wins(previous, tick) {
            return TickReply::Taken;
        }
        last.insert((app.to_string(), key.to_string()), tick);
        TickReply::Fire { previous }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_claims_fire_each_tick_once_and_in_order() {
        let claims = TickClaims::alone();
        let claim = |tick| claims.claim("shop", "* * * * * * /", tick);
        assert_eq!(claim(10).await.unwrap(), TickReply::Fire { previous: None });
        assert_eq!(claim(10).await.unwrap(), TickReply::Taken);
        assert_eq!(claim(9).await.unwrap(), TickReply::Taken);
        assert_eq!(
            claim(12).await.unwrap(),
            TickReply::Fire { previous: Some(10) }
        );
        let other = claims.claim("blog", "* * * * * * /", 10).await.unwrap();
        assert_eq!(other, TickReply::Fire { previous: None });
    }

    #[tokio::test]
    async fn without_a_link_a_fleet_claim_fails_at_once_and_an_own_app_claims_itself() {
        let origin = Arc::new(OriginClaims::new("edge-1"));
        let claims = TickClaims::fleet(origin, ["local".to_string()]);
        let err = claims.claim("shop", "k", 1).await.unwrap_err();
        assert!(err.to_string().contains("no link to the origin"), "{err}");
        let own = claims.claim("local", "k", 1).await.unwrap();
        assert_eq!(own, TickReply::Fire { previous: None });
    }
}
