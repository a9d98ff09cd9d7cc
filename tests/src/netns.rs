//! Network namespaces made by a test (root only): hosts on one machine with their own
//! interfaces, addresses and routes, joined by veth links. Removed again on drop.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};

/// Whether this process may create network namespaces (root, with `ip` available).
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run `ip ARGS...`; panic with its output if it fails.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A network namespace made by the test; `ip netns del` removes it (and its veth ends) on drop.
pub struct Netns {
    /// The namespace's name, as `ip netns` and `/var/run/netns/NAME` know it.
    pub name: String,
}

impl Netns {
    /// A new namespace with its loopback up.
    pub fn create(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        let netns = Netns {
            name: name.to_string(),
        };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// `ip ARGS...` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Output of `ip ARGS...` inside the namespace.
    pub fn ip_output(&self, args: &[&str]) -> String {
        let output = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("running ip");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Start `program ARGS...` inside the namespace, killed on drop of the returned guard.
    pub fn spawn(&self, program: &str, args: &[&str]) -> KillOnDrop {
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program} in {}: {e}", self.name));
        KillOnDrop(child)
    }

    /// A veth link from this namespace (`here`, `here_addr` as CIDR) to `there`.
    pub fn link(
        &self,
        here: &str,
        here_addr: &str,
        there: &Netns,
        there_if: &str,
        there_addr: &str,
    ) {
        self.ip(&[
            "link",
            "add",
            here,
            "type",
            "veth",
            "peer",
            "name",
            there_if,
            "netns",
            &there.name,
        ]);
        self.ip(&["addr", "add", here_addr, "dev", here]);
        self.ip(&["link", "set", here, "up"]);
        there.ip(&["addr", "add", there_addr, "dev", there_if]);
        there.ip(&["link", "set", there_if, "up"]);
    }

    /// Run `future` on a thread that lives in this namespace (its sockets are the namespace's).
    pub fn run<F, T>(&self, future: impl FnOnce() -> F + Send + 'static) -> T
    where
        F: Future<Output = T>,
        T: Send + 'static,
    {
        run_in(&self.name, future)
    }
}

/// Run `future` on a thread that lives in namespace `name`.
pub fn run_in<F, T>(name: &str, future: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T>,
    T: Send + 'static,
{
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace file");
        // SAFETY: setns on a namespace file we opened; it only changes this thread's
        // network namespace.
        let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future())
    })
    .join()
    .expect("the namespace thread")
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A child process started by [`Netns::spawn`], killed and reaped when dropped; the field gives
/// access to the child, such as its piped stderr.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
