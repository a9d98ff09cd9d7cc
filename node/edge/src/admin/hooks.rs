//! Acting on readiness: run the operator's hooks when it changes, and on shutdown turn it
//! false first, let the announcer withdraw the route, wait, and only then stop the listeners.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::health::{Health, Readiness};
use outpost_core::config::HealthSettings;
use outpost_core::metrics::metrics;
use outpost_net::listener::ShutdownSignal;
use outpost_net::listener::wait_for_shutdown;

/// How often readiness is re-evaluated.
const POLL: Duration = Duration::from_millis(250);
/// The longest a hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`run_lifecycle`] needs: the readiness to watch and the hooks to run.
pub struct Lifecycle {
    /// The readiness polled for the hooks; set to draining once the process is to stop.
    pub health: Arc<Health>,
    /// The `on_ready` and `on_drain` hooks, and how long to keep serving after draining.
    pub settings: HealthSettings,
    /// The node's name, for the hooks' environment.
    pub node: String,
}

/// Watch readiness and run the hooks on each change until the process is asked to stop
/// (`shutdown`) or a new process has taken the listeners over (`handed_off`). Then tell the
/// listeners to stop accepting (`stop_listeners`): after the drain sequence on shutdown, at
/// once on a hand-off (the new process serves the same sockets and addresses, so nothing is
/// withdrawn).
pub async fn run_lifecycle(
    lifecycle: Lifecycle,
    mut shutdown: ShutdownSignal,
    mut handed_off: ShutdownSignal,
    stop_listeners: watch::Sender<bool>,
) {
    let Lifecycle {
        health,
        settings,
        node,
    } = lifecycle;
    let mut announced: Option<bool> = None;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let handoff = loop {
        tokio::select! {
            _ = wait_for_shutdown(&mut shutdown) => break false,
            _ = wait_for_shutdown(&mut handed_off) => break true,
            _ = poll.tick() => {}
        }
        let readiness = health.readiness();
        let ready = readiness.is_ready();
        metrics().ready.set(i64::from(ready));
        if announced == Some(ready) {
            continue;
        }
        match &readiness {
            Readiness::Ready => {
                tracing::info!("ready");
                run_hook("on_ready", settings.on_ready.as_deref(), &node, "ready").await;
            }
            Readiness::NotReady(reasons) => {
                tracing::warn!(reasons = %reasons.join("; "), "not ready");
                // A node that never was ready has nothing to withdraw.
                if announced.is_some() {
                    run_hook("on_drain", settings.on_drain.as_deref(), &node, "not-ready").await;
                }
            }
        }
        announced = Some(ready);
    };

    health.start_draining();
    metrics().ready.set(0);
    if handoff {
        tracing::info!("listeners handed to the new process; draining requests in flight");
    } else {
        tracing::info!("draining: readiness is now false");
        if announced == Some(true) {
            run_hook("on_drain", settings.on_drain.as_deref(), &node, "draining").await;
        }
        if !settings.drain_delay.is_zero() {
            tracing::info!(
                millis = settings.drain_delay.as_millis() as u64,
                "still serving while traffic moves away"
            );
            tokio::time::sleep(settings.drain_delay).await;
        }
    }
    let _ = stop_listeners.send(true);
}

/// Run `command` with `sh -c`, telling it the node and the new state in `OUTPOST_NODE` and
/// `OUTPOST_STATE`. Its failure is logged; the node goes on either way.
async fn run_hook(which: &str, command: Option<&str>, node: &str, state: &str) {
    let Some(command) = command else {
        return;
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("OUTPOST_NODE", node)
        .env("OUTPOST_STATE", state)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(HOOK_TIMEOUT, child).await {
        Ok(Ok(output)) if output.status.success() => {
            tracing::info!(hook = which, state, "hook ran");
        }
        Ok(Ok(output)) => tracing::error!(
            hook = which,
            state,
            status = %output.status,
            stderr = %String::from_utf8_lossy(&output.stderr).trim(),
            "hook failed"
        ),
        Ok(Err(err)) => tracing::error!(hook = which, "cannot run the hook: {err}"),
        Err(_) => tracing::error!(
            hook = which,
            "the hook ran longer than {} s and was killed",
            HOOK_TIMEOUT.as_secs()
        ),
    }
}
