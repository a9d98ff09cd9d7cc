//! Handing the listening sockets to a new process, so a node restarts or upgrades its binary
//! without refusing a connection, and taking them back if the new process fails.
//!
//! A running node listens on a Unix socket in its data directory. `outpost node --takeover`
//! connects there and asks for the listeners (`take`); the running node sends their file
//! descriptors (SCM_RIGHTS), stops accepting, finishes its requests in flight, closes its KV and
//! says `released`, keeping its own copies of the listeners. The new process then opens the
//! KV, starts, and says `serving` on the very same sockets; only then does the old process
//! exit. If the new process dies or fails first (the connection closes without `serving`), the
//! old one starts again on its copies: some process always holds the sockets, and connections
//! that arrive in between wait in the kernel's accept queue of a socket that never closed.
//!
//! An old process that exits instead of saying `released` (an earlier release) closes the
//! connection: the new process takes that as released too.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use outpost_net::listener::{ShutdownSignal, wait_for_shutdown};

/// The hand-off socket's file name in the data directory.
pub const SOCKET_FILE: &str = "handoff.sock";
const REQUEST: &[u8] = b"take\n";
/// The old process has drained and closed its KV: the new one may open it.
const RELEASED: &[u8] = b"released\n";
/// The new process serves: the old one may exit.
const SERVING: &[u8] = b"serving\n";
const MAX_LISTENERS: usize = 8;

/// Listeners received from the process this one replaces, by role ("https", "plain", ...).
#[derive(Default)]
pub struct Inherited {
    listeners: HashMap<String, std::net::TcpListener>,
    /// The hand-off connection, open while the old process waits to hear that this one serves.
    predecessor: Option<UnixStream>,
}

impl Inherited {
    fn from_fds(roles: Vec<String>, fds: Vec<OwnedFd>) -> anyhow::Result<Inherited> {
        let mut listeners = HashMap::new();
        for (role, fd) in roles.into_iter().zip(fds) {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            listeners.insert(role, listener);
        }
        Ok(Inherited {
            listeners,
            predecessor: None,
        })
    }

    /// Whether this process is taking over from another, which still holds its sockets.
    pub fn is_takeover(&self) -> bool {
        self.predecessor.is_some()
    }

    /// This process serves: let the one it replaces exit. (Listeners not taken are closed.)
    pub fn confirm_serving(self) {
        if let Some(mut stream) = self.predecessor {
            match stream.write_all(SERVING) {
                Ok(()) => tracing::info!("serving; the old process may exit"),
                Err(err) => tracing::warn!("could not tell the old process this one serves: {err}"),
            }
        }
    }

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
/// has drained and released its data. With no node running there, there is nothing to take:
/// start fresh. The old process waits until [`Inherited::confirm_serving`] (or this process's
/// end, when it serves again).
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
    let mut inherited = Inherited::from_fds(roles, fds)?;
    tracing::info!(
        listeners = inherited.listeners.len(),
        "took the listeners over; waiting for the old process to drain and release its data"
    );
    stream.set_read_timeout(Some(wait))?;
    match read_line(&stream) {
        Ok(line) if line == RELEASED || line.is_empty() => {}
        Ok(line) => bail!(
            "unexpected word from the old process: {:?}",
            String::from_utf8_lossy(&line)
        ),
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            bail!("the old process did not drain within {} s", wait.as_secs())
        }
        Err(err) => return Err(err).context("waiting for the old process to drain"),
    }
    stream.set_read_timeout(None)?;
    inherited.predecessor = Some(stream);
    Ok(inherited)
}

/// A line from the hand-off connection, newline included; empty when it closed first.
fn read_line(stream: &UnixStream) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    // Byte by byte: nothing may be read past the line (the stream is used again after).
    let mut byte = [0u8];
    while line.len() < 64 {
        match (&*stream).read(&mut byte) {
            Ok(0) => return Ok(Vec::new()),
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(line)
}

/// The old process's side once it has handed its listeners over: its copies of them, kept
/// until the new process says it serves.
pub struct HandedOff {
    stream: UnixStream,
    roles: Vec<String>,
    fds: Vec<OwnedFd>,
}

impl HandedOff {
    /// Say this process has let go of everything but the listeners (its requests drained, its
    /// KV closed), and wait for the new process. `None`: it serves, this one may exit.
    /// `Some`: it failed before serving; here are the listeners back, to serve on again.
    /// Blocks until the new process speaks or is gone.
    pub fn release(self) -> Option<Inherited> {
        let HandedOff { stream, roles, fds } = self;
        let heard = (&stream)
            .write_all(RELEASED)
            .and_then(|()| read_line(&stream));
        match heard {
            Ok(line) if line == SERVING => return None,
            Ok(_) => tracing::error!("the new process stopped before it served; serving again"),
            Err(err) => {
                tracing::error!("lost the new process before it served ({err}); serving again")
            }
        }
        match Inherited::from_fds(roles, fds) {
            Ok(inherited) => Some(inherited),
            Err(err) => {
                tracing::error!("cannot reuse the listeners: {err:#}");
                Some(Inherited::default())
            }
        }
    }
}

/// The running side: answer one takeover on `data_dir`'s hand-off socket with `listeners`,
/// then signal `handed_off`. Ends when `stop` fires (a normal shutdown: `None`) or after a
/// hand-off (`Some`: see [`HandedOff::release`]).
pub fn serve_handoff(
    data_dir: PathBuf,
    listeners: Vec<(String, &TcpListener)>,
    handed_off: watch::Sender<bool>,
    mut stop: ShutdownSignal,
) -> anyhow::Result<tokio::task::JoinHandle<Option<HandedOff>>> {
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
                _ = wait_for_shutdown(&mut stop) => return None,
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
            let (sent_roles, raw) = (
                roles.clone(),
                fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
            );
            let sent = tokio::task::spawn_blocking(move || answer(stream, &sent_roles, &raw)).await;
            match sent {
                Ok(Ok(stream)) => {
                    let _ = handed_off.send(true);
                    return Some(HandedOff { stream, roles, fds });
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

    fn handed_off(stream: UnixStream) -> (HandedOff, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fds = vec![listener.as_fd().try_clone_to_owned().unwrap()];
        let handed = HandedOff {
            stream,
            roles: vec!["https".into()],
            fds,
        };
        (handed, addr)
    }

    #[test]
    fn the_old_process_goes_once_the_new_one_serves() {
        let (old, new) = UnixStream::pair().unwrap();
        let (handed, _) = handed_off(old);
        let new = std::thread::spawn(move || {
            assert_eq!(read_line(&new).unwrap(), RELEASED);
            let inherited = Inherited {
                listeners: HashMap::new(),
                predecessor: Some(new),
            };
            inherited.confirm_serving();
        });
        assert!(handed.release().is_none());
        new.join().unwrap();
    }

    #[test]
    fn the_old_process_gets_its_listeners_back_when_the_new_one_dies_first() {
        let (old, new) = UnixStream::pair().unwrap();
        let (handed, addr) = handed_off(old);
        let new = std::thread::spawn(move || {
            assert_eq!(read_line(&new).unwrap(), RELEASED);
            drop(new);
        });
        let mut back = handed.release().expect("the listeners come back");
        new.join().unwrap();
        let listener = back.take("https", addr).expect("the same socket");
        assert_eq!(listener.local_addr().unwrap(), addr);
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
