//! Cron triggers: on each tick of an app's `[[triggers]]` schedule, one node of the fleet
//! sends the app's active version a `POST` to the trigger's path, marked with the
//! `outpost-trigger` header (see `server::metadata`).
//!
//! Every node that serves the app wakes at the tick and claims it (`claims`); the origin
//! grants each tick to the first claim and refuses the rest, so a tick fires once across the
//! fleet however many nodes run the app, and goes on firing while any of them is up. A tick is
//! fired at most once: one whose node dies while running it is not run again. Ticks no node
//! could claim (all of them down, or cut off from the origin) are not fired late: the node
//! that fires the next tick counts them as `missed` in `outpost_trigger_ticks_total` and says
//! so in its log. Each fired tick is a request like any other on the node: its metrics, its
//! access-log line and its `outpost tail` record (marked with the trigger).

mod claims;
mod plan;

pub use claims::{OriginClaims, TickClaims};

use std::sync::Arc;
use std::time::Duration;

use outpost_core::clock::unix_millis;
use outpost_core::metrics::metrics;
use outpost_core::wire::TickReply;
use outpost_net::listener::{ShutdownSignal, wait_for_shutdown};

use crate::server::{Edge, Routes};
use plan::{Due, Plan};

/// The most missed ticks counted at once (a schedule of seconds, down for a day, would
/// otherwise count for a while).
const MAX_MISSED_COUNTED: u64 = 100_000;

/// How often the served apps are read again when no tick is nearer.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Fire the triggers of the apps `edge` serves, claiming each tick from `claims`, until
/// shutdown.
pub async fn run(edge: Arc<Edge>, claims: Arc<TickClaims>, mut shutdown: ShutdownSignal) {
    let mut plan = Plan::default();
    let mut followed: Option<Arc<Routes>> = None;
    loop {
        let now_ms = unix_millis();
        let now = now_ms / 1000;
        let routes = Arc::clone(&edge.routes().load());
        if !followed.as_ref().is_some_and(|f| Arc::ptr_eq(f, &routes)) {
            plan.follow(
                routes
                    .active()
                    .map(|d| (&d.app.name, d.app.triggers.as_slice())),
                now,
            );
            followed = Some(routes);
        }
        for due in plan.due(now) {
            tokio::spawn(fire(edge.clone(), claims.clone(), due));
        }
        let wake_ms = plan
            .next_tick()
            .map_or(u64::MAX, |tick| tick.saturating_mul(1000))
            .min(now_ms + FOLLOW_EVERY.as_millis() as u64);
        let wait = Duration::from_millis(wake_ms.saturating_sub(now_ms));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
    }
}

/// Claim one tick, and fire it if the claim wins.
async fn fire(edge: Arc<Edge>, claims: Arc<TickClaims>, due: Due) {
    let count = |outcome: &str, n: u64| {
        metrics()
            .trigger_ticks
            .with_label_values(&[&*due.app, outcome])
            .inc_by(n);
    };
    let cron = due.trigger.schedule.as_str();
    let previous = match claims.claim(&due.app, &due.key, due.tick).await {
        Ok(TickReply::Fire { previous }) => previous,
        Ok(TickReply::Taken) => {
            tracing::debug!(app = %due.app, cron, tick = due.tick, "another node fires this tick");
            return count("taken", 1);
        }
        Ok(TickReply::Refused { message }) => {
            tracing::warn!(app = %due.app, cron, tick = due.tick, "tick not fired: {message}");
            return count("refused", 1);
        }
        Err(err) => {
            tracing::warn!(app = %due.app, cron, tick = due.tick, "tick not claimed: {err:#}");
            return count("unclaimed", 1);
        }
    };
    let missed = previous.map_or(0, |previous| {
        let schedule = &due.trigger.schedule;
        schedule.ticks_between(previous, due.tick, MAX_MISSED_COUNTED)
    });
    if missed > 0 {
        tracing::warn!(
            app = %due.app,
            cron,
            missed,
            "ticks were missed: no node could claim them (they are not fired late)"
        );
        count("missed", missed);
    }
    // The app's active version as of now: a deploy since the tick was due is what fires it.
    let deployment = edge
        .routes()
        .load()
        .active()
        .find(|d| d.app.name == due.app)
        .cloned();
    let Some(deployment) = deployment else {
        tracing::warn!(app = %due.app, cron, "tick not fired: the app is no longer served here");
        return count("error", 1);
    };
    let status = edge.fire(&deployment, &due.trigger, due.tick).await;
    let outcome = if status < 400 { "ok" } else { "error" };
    tracing::info!(
        app = %due.app,
        cron,
        path = due.trigger.path,
        tick = due.tick,
        status,
        "trigger fired"
    );
    count(outcome, 1);
}
