//! Telling systemd how a serving process stands, for a `Type=notify` unit: ready once it
//! serves (after a takeover, once it holds the listeners, so `systemctl start` returns only
//! then, and a successor that fails first is seen failing), stopping once it drains. With no
//! `NOTIFY_SOCKET` in the environment (not under systemd) it does nothing.

use sd_notify::NotifyState;

use outpost_net::listener::{ShutdownSignal, wait_for_shutdown};

/// The process serves; `status` is what `systemctl status` shows for it.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Say "stopping" once `shutdown` turns true (the drain has begun).
pub fn stopping_on(mut shutdown: ShutdownSignal) {
    tokio::spawn(async move {
        wait_for_shutdown(&mut shutdown).await;
        send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    });
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!("telling systemd how this process stands: {err}");
    }
}
