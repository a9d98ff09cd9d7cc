//! Who decides which node fires a tick: in a fleet, the origin (each node that runs the app
//! claims the tick over its link, and the origin's registry grants it to one); under
//! `outpost dev`, the one node itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use arc_swap::ArcSwapOption;
use outpost_core::wire::{Open, TickReply, read_frame, write_frame};

/// How long a claim may take: past this, the tick is another node's to fire or no one's.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a node's claims of ticks are decided.
pub enum TickClaims {
    /// By the origin, over the node's link.
    Origin(Arc<OriginClaims>),
    /// By this node alone: it runs without a fleet.
    Local(LocalClaims),
}

impl TickClaims {
    /// Claim `tick` of the trigger `key` of `app`.
    pub(crate) async fn claim(&self, app: &str, key: &str, tick: u64) -> anyhow::Result<TickReply> {
        match self {
            TickClaims::Origin(origin) => origin.claim(app, key, tick).await,
            TickClaims::Local(local) => Ok(local.claim(app, key, tick)),
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

    async fn claim(&self, app: &str, key: &str, tick: u64) -> anyhow::Result<TickReply> {
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

/// Claims decided in memory: the same rule as the origin's (a trigger's ticks move forward
/// only), for a node that is the whole fleet.
#[derive(Default)]
pub struct LocalClaims {
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
        let claims = TickClaims::Local(LocalClaims::default());
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
    async fn without_a_link_a_claim_fails_at_once() {
        let claims = TickClaims::Origin(Arc::new(OriginClaims::new("edge-1")));
        let err = claims.claim("shop", "k", 1).await.unwrap_err();
        assert!(err.to_string().contains("no link to the origin"), "{err}");
    }
}
