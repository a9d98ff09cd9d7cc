//! Handing the listening sockets to a new process, so a node restarts or upgrades its binary
//! without refusing a connection.
//!
//! A running node listens on a Unix socket in its data directory. `outpost node --takeover`
//! connects there and asks for the listeners; the running node sends their file descriptors
//! (SCM_RIGHTS), stops accepting, finishes its requests in flight, and exits. The new process
//! waits for that (the Unix connection closes when the old process is gone: the KV files are
//! then free), and serves on the very same sockets. Connections that arrive in between wait
//! in the kernel's accept queue of a socket that never closed; none is refused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use super::listener::{ShutdownSignal, wait_for_shutdown};

/// The hand-off socket's file name in the data directory.
pub const SOCKET_FILE: &str = "handoff.sock";
const REQUEST: &[u8] = b"take\n";
const MAX_LISTENERS: usize = 8;

/// Listeners received from the process this one replaces, by role ("https", "plain", ...).
#[derive(Default)]
pub struct Inherited {
    listeners: HashMap<String, std::net::TcpListener>,
}

impl Inherited {
    /// The inherited listener for `role`, if it listens where `wanted` says (port 0 takes any).
    pub fn take(&mut self, role: &str, wanted: SocketAddr) -> Option<std::net::TcpListener> {
        let listener = self.listeners.remove(role)?;
        let bound = listener.local_addr().ok()?;
        let same =
            bound.ip() == wanted.ip() && (wanted.port() == 0 || wanted.port() == bound.port());
        if same {
            Some(listener)
        } else {
            tracing::warn!(role, %bound, %wanted, "the configured address changed; not reusing the old listener");
            None
        }
    }
}

/// Whether a node already serves from `data_dir`: something answers on its hand-off socket.
pub fn running_node(data_dir: &Path) -> bool {
    UnixStream::connect(data_dir.join(SOCKET_FILE)).is_ok()
}

/// Take the listeners of the node running from `data_dir`, and wait (up to `wait`) until it
/// has drained and exited. With no node running there, there is nothing to take: start fresh.
pub fn take_over(data_dir: &Path, wait: Duration) -> anyhow::Result<Inherited> {
    let path = data_dir.join(SOCKET_FILE);
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::info!("no running node to take over ({err}); starting fresh");
            return Ok(Inherited::default());
        }
    };
    stream.write_all(REQUEST)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (roles, fds) = receive_fds(&stream).context("receiving the listeners")?;
    let roles: Vec<String> = serde_json::from_slice(&roles).context("the listeners' roles")?;
    if roles.len() != fds.len() {
        bail!("got {} listeners for {} roles", fds.len(), roles.len());
    }
    let mut listeners = HashMap::new();
    for (role, fd) in roles.into_iter().zip(fds) {
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        listeners.insert(role, listener);
    }
    tracing::info!(
        listeners = listeners.len(),
        "took the listeners over; waiting for the old process to drain and exit"
    );
    // The old process holds this connection until it exits.
    stream.set_read_timeout(Some(wait))?;
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
            bail!("the old process did not exit within {} s", wait.as_secs())
        }
        Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {
            bail!("the old process did not exit within {} s", wait.as_secs())
        }
        Err(_) => {}
    }
    Ok(Inherited { listeners })
}

/// The running side: answer one takeover on `data_dir`'s hand-off socket with `listeners`,
/// then signal `handed_off`. Ends when `stop` fires (a normal shutdown) or after a hand-off.
pub fn serve_handoff(
    data_dir: PathBuf,
    listeners: Vec<(String, &TcpListener)>,
    handed_off: watch::Sender<bool>,
    mut stop: ShutdownSignal,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let path = data_dir.join(SOCKET_FILE);
    // A file left by a process that is gone (running_node was checked before starting).
    let _ = std::fs::remove_file(&path);
    let unix = UnixListener::bind(&path)
        .with_context(|| format!("binding the hand-off socket {}", path.display()))?;
    // Our own copies: valid for as long as this task may send them, whatever the serving
    // tasks do with theirs.
    let mut roles = Vec::new();
    let mut fds = Vec::new();
    for (role, listener) in listeners {
        roles.push(role);
        fds.push(listener.as_fd().try_clone_to_owned()?);
    }
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = wait_for_shutdown(&mut stop) => break,
                accepted = unix.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            // Only a process of this node's own user may take its sockets (the socket file is
            // already private to it; this holds even if the directory's modes were loosened).
            match stream.peer_cred() {
                Ok(peer) if peer.uid() == current_uid() => {}
                Ok(peer) => {
                    tracing::warn!(uid = peer.uid(), pid = ?peer.pid(), "refused a takeover request from another user");
                    continue;
                }
                Err(err) => {
                    tracing::warn!("refused a takeover request without credentials: {err}");
                    continue;
                }
            }
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            let (roles, fds) = (
                roles.clone(),
                fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
            );
            let sent = tokio::task::spawn_blocking(move || answer(stream, &roles, &fds)).await;
            match sent {
                Ok(Ok(stream)) => {
                    // Held until this process exits: its closing tells the new one we are gone.
                    static HELD: OnceLock<Mutex<Option<UnixStream>>> = OnceLock::new();
                    *HELD
                        .get_or_init(|| Mutex::new(None))
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(stream);
                    let _ = handed_off.send(true);
                    break;
                }
                Ok(Err(err)) => tracing::warn!("a takeover request failed: {err:#}"),
                Err(err) => tracing::warn!("a takeover request failed: {err}"),
            }
        }
    }))
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Read the request and send the listeners.
fn answer(stream: UnixStream, roles: &[String], fds: &[RawFd]) -> anyhow::Result<UnixStream> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = Vec::new();
    BufReader::new(&stream)
        .take(64)
        .read_until(b'\n', &mut line)?;
    if line != REQUEST {
        bail!("not a takeover request");
    }
    send_fds(&stream, &serde_json::to_vec(roles)?, fds)?;
    tracing::info!("a new process took the listeners over");
    Ok(stream)
}

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((fds * size_of::<RawFd>()) as u32) as usize }
}

/// Send `data` with `fds` attached (SCM_RIGHTS).
fn send_fds(stream: &UnixStream, data: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = vec![0u8; cmsg_space(fds.len())];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and the
    // control buffer is sized by CMSG_SPACE for exactly these descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg) as *mut RawFd, fds.len());
        if libc::sendmsg(stream.as_raw_fd(), &msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receive one message and the descriptors attached to it.
fn receive_fds(stream: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut data = vec![0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = vec![0u8; cmsg_space(MAX_LISTENERS)];
    let mut fds = Vec::new();
    // SAFETY: as in send_fds; descriptors are taken over exactly once, from SCM_RIGHTS
    // messages the kernel filled in.
    let received = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        let received = libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if received < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let first = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..bytes / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(first.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        received as usize
    };
    if received == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the running node closed the hand-off connection",
        ));
    }
    data.truncate(received);
    Ok((data, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_cross_a_unix_socket_and_still_accept() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        send_fds(&a, b"[\"https\"]", &[listener.as_raw_fd()]).unwrap();
        let (data, fds) = receive_fds(&b).unwrap();
        assert_eq!(data, b"[\"https\"]");
        assert_eq!(fds.len(), 1);
        drop(listener);
        // The received copy is the same socket: it is still listening at the same address.
        let received = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(received.local_addr().unwrap(), addr);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        received.accept().unwrap();
    }

    #[test]
    fn inherited_listeners_match_by_role_and_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut inherited = Inherited::default();
        inherited.listeners.insert("https".into(), listener);
        assert!(inherited.take("plain", addr).is_none());
        assert!(
            inherited
                .take("https", "127.0.0.1:0".parse().unwrap())
                .is_some()
        );
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        inherited.listeners.insert("https".into(), other);
        assert!(inherited.take("https", addr).is_none());
    }
}
