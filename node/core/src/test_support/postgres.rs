//! A throwaway PostgreSQL server for tests: Debian's binaries, a fresh cluster made by `initdb`
//! in a temporary directory, listening on a free loopback port, stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests do, the cluster belongs to the
//! `postgres` user (Debian's packages create it) and its processes run as that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running test server. Its one role, `outpost`, is a superuser trusted on loopback.
pub struct TestPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    server: Option<Child>,
}

impl TestPostgres {
    /// Make a cluster and start it; panics (with PostgreSQL's own words) if that fails.
    pub fn start(label: &str) -> TestPostgres {
        let bin = bin_dir().expect(
            "PostgreSQL's server binaries are not installed (Debian: apt-get install postgresql)",
        );
        let dir = super::temp_dir(&format!("pg-{label}"));
        let owner = if unsafe { libc::geteuid() } == 0 {
            let owner = postgres_user().expect("running as root needs the `postgres` user");
            hand_over(&dir, owner);
            Some(owner)
        } else {
            None
        };
        let mut server = TestPostgres {
            dir,
            bin,
            port: free_port(),
            owner,
            server: None,
        };
        let data = server.data_dir();
        run(
            server.command("initdb").args(["-D"]).arg(&data).args([
                "-U",
                "outpost",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        );
        server.launch();
        server
    }

    /// A streaming standby of `primary`: a base backup of it (`pg_basebackup -R`, so the copy
    /// follows the primary's WAL from there), started on a port of its own, read-only until
    /// [`TestPostgres::promote`].
    pub fn standby_of(primary: &TestPostgres, label: &str) -> TestPostgres {
        let dir = super::temp_dir(&format!("pg-{label}"));
        if let Some(owner) = primary.owner {
            hand_over(&dir, owner);
        }
        let mut standby = TestPostgres {
            dir,
            bin: primary.bin.clone(),
            port: free_port(),
            owner: primary.owner,
            server: None,
        };
        run(
            standby
                .command("pg_basebackup")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "outpost",
                ])
                .arg("-D")
                .arg(standby.data_dir())
                .args(["-R", "-X", "stream", "--no-sync"]),
            "pg_basebackup",
        );
        standby.launch();
        standby
    }

    /// Make every commit wait until a standby has it too (`synchronous_standby_names = '*'`,
    /// with `synchronous_commit` on, its default): what the server acknowledges survives the
    /// loss of this one.
    pub fn require_synchronous_standby(&self) {
        self.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        self.sql("SELECT pg_reload_conf()");
    }

    /// Promote this standby to a primary (`pg_ctl promote`, which waits until it takes writes).
    pub fn promote(&self) {
        run(
            self.command("pg_ctl")
                .args(["promote", "-w", "-D"])
                .arg(self.data_dir()),
            "pg_ctl promote",
        );
    }

    /// Serve TLS as well, with the certificate chain `cert` and its key `key` (PEM files,
    /// copied into the server's directory for its user, the key readable by it alone).
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        for (from, name) in [(cert, "server.pem"), (key, "server-key.pem")] {
            let to = self.dir.join(name);
            std::fs::copy(from, &to).expect("copying the server's TLS files");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                .expect("making the key private");
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("handing over");
            }
        }
        let dir = self.dir.display();
        self.sql(&format!(
            "ALTER SYSTEM SET ssl_cert_file = '{dir}/server.pem'"
        ));
        self.sql(&format!(
            "ALTER SYSTEM SET ssl_key_file = '{dir}/server-key.pem'"
        ));
        self.sql("ALTER SYSTEM SET ssl = on");
        self.sql("SELECT pg_reload_conf()");
    }

    /// Run one SQL statement with `psql`; panics with its error.
    pub fn sql(&self, statement: &str) -> String {
        let ran = run(
            self.command("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "outpost",
                ])
                .args([
                    "-d",
                    "postgres",
                    "-X",
                    "-q",
                    "-t",
                    "-A",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                ])
                .arg(statement),
            "psql",
        );
        ran.trim().to_string()
    }

    /// `postgresql://` URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgresql://outpost@127.0.0.1:{}/postgres", self.port)
    }

    /// Make a new, empty database `name` on the server: its `postgresql://` URL.
    pub fn create_database(&self, name: &str) -> String {
        run(
            self.command("createdb").args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "outpost",
                name,
            ]),
            "createdb",
        );
        format!("postgresql://outpost@127.0.0.1:{}/{name}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server at once, as a crash would (no checkpoint); [`TestPostgres::launch`]
    /// starts it again on the same data and port.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            // Its backends too, as a crash of the machine would take them: left alone, each
            // notices the postmaster is gone only when it next waits, and may answer a query
            // on its connection first.
            let children = children_of(server.id());
            let _ = server.kill();
            for child in children {
                unsafe {
                    libc::kill(child as i32, libc::SIGKILL);
                }
            }
            let _ = server.wait();
        }
    }

    /// Start the server on its data directory and wait until it accepts connections.
    pub fn launch(&mut self) {
        assert!(self.server.is_none(), "the test server is already running");
        let log = std::fs::File::create(self.dir.join("server.log")).expect("server log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.display()),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(|s| s.try_wait()) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// One of the server's binaries, run as the cluster's owner.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.current_dir(&self.dir).env("LC_ALL", "C.UTF-8");
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Fast shutdown: active sessions are ended, the server exits cleanly.
            unsafe {
                libc::kill(server.id() as i32, libc::SIGINT);
            }
            let mut server = server;
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run one of the server's binaries (`what`, for the message) to its end: its standard output;
/// panics with its standard error if it fails.
fn run(command: &mut Command, what: &str) -> String {
    let ran = command
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        ran.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    String::from_utf8_lossy(&ran.stdout).into_owned()
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // "PID (COMMAND) STATE PPID ...": the command may hold spaces, so after its ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// The newest PostgreSQL server on the machine, as Debian lays them out.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The `postgres` user's uid and gid, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres"))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
            .flatten()
    })
}

/// Give `dir` to `owner`, under whom the server's processes run and write inside it.
fn hand_over(dir: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("handing the test directory over");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
