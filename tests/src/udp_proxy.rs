//! A UDP relay between one client and a target on loopback, which a test can cut and restore:
//! a network partition for QUIC links, made of real sockets.
//!
//! It runs on its own threads, so it keeps relaying while the test blocks (running the CLI,
//! waiting on a child process).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A UDP relay to one target that a test can cut and restore; its threads stop on drop.
pub struct UdpProxy {
    /// The relay's own address on 127.0.0.1, for the client to send to instead of the target.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

const POLL: Duration = Duration::from_millis(50);

impl UdpProxy {
    /// Relay datagrams from whoever sends to [`UdpProxy::addr`] to `target`, and back.
    pub fn start(target: SocketAddr) -> UdpProxy {
        let front = UdpSocket::bind("127.0.0.1:0").expect("binding the proxy");
        let back = UdpSocket::bind("127.0.0.1:0").expect("binding the proxy's upstream socket");
        back.connect(target).expect("connecting upstream");
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(POLL)).expect("read timeout");
        }
        let addr = front.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let front = Arc::new(front);
        let back = Arc::new(back);
        {
            let (front, back, cut, stop, client) = (
                front.clone(),
                back.clone(),
                cut.clone(),
                stop.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buffer) {
                        *client.lock().unwrap() = Some(from);
                        if !cut.load(Ordering::Relaxed) {
                            let _ = back.send(&buffer[..n]);
                        }
                    }
                }
            });
        }
        {
            let (cut, stop) = (cut.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buffer) {
                        let to = *client.lock().unwrap();
                        if let Some(to) = to
                            && !cut.load(Ordering::Relaxed)
                        {
                            let _ = front.send_to(&buffer[..n], to);
                        }
                    }
                }
            });
        }
        UdpProxy { addr, cut, stop }
    }

    /// Drop every datagram from now on, both ways.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    /// Relay datagrams again after [`UdpProxy::cut`]; those dropped in between stay lost.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A UDP port on 127.0.0.1 free right now (for configs that must name their address ahead).
pub fn free_udp_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
}
