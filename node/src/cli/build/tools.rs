//! The tools cache (`$OUTPOST_TOOLS`, default `~/.cache/outpost/tools`): where pinned guest
//! toolchains are installed once and shared by every build, and the helpers that install and
//! run them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub(super) fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OUTPOST_TOOLS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("outpost/tools")
}

/// An exclusive lock on `dir/.lock`, held while something is installed into `dir`, so two
/// builds at once (tests, two terminals) do not install over each other.
pub(super) struct InstallLock {
    _file: File,
}

impl InstallLock {
    pub(super) fn acquire(dir: &Path) -> anyhow::Result<InstallLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "locking {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(InstallLock { _file: file })
    }
}

/// Installs into `dir` with `install` unless a previous install finished there (it leaves
/// `dir/.installed`). The marker is written last, so an interrupted install is redone.
pub(super) fn install_once(
    dir: &Path,
    what: &str,
    install: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let marker = dir.join(".installed");
    if marker.exists() {
        return Ok(());
    }
    let _lock = InstallLock::acquire(dir)?;
    if marker.exists() {
        return Ok(());
    }
    eprintln!(
        "outpost build: installing {what} into {} (once)",
        dir.display()
    );
    install(dir).with_context(|| format!("installing {what} into {}", dir.display()))?;
    std::fs::write(&marker, what).with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

/// Run `command`, its output on stderr; an error names `what` and how it ended.
pub(super) fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    // What the tools print is progress for a person: stderr, so stdout stays the command's
    // answer (`outpost build --json`).
    let status = command
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("starting {what} ({:?})", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Fail with how to get `program` unless it runs.
pub(super) fn require(program: &str, version_flag: &str, hint: &str) -> anyhow::Result<()> {
    match Command::new(program).arg(version_flag).output() {
        Ok(output) if output.status.success() => Ok(()),
        _ => bail!("`{program}` is needed to build this app and was not found: {hint}"),
    }
}

/// Whether a build stamped with `fingerprint` already made `output`; `record` stamps it.
pub(super) struct Stamp {
    path: PathBuf,
    fingerprint: String,
}

impl Stamp {
    pub(super) fn new(work: &Path, output: &Path, fingerprint: String) -> Stamp {
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Stamp {
            path: work.join(format!("{name}.stamp")),
            fingerprint,
        }
    }

    pub(super) fn is_current(&self, output: &Path) -> bool {
        output.exists() && std::fs::read_to_string(&self.path).is_ok_and(|s| s == self.fingerprint)
    }

    pub(super) fn record(&self) -> anyhow::Result<()> {
        std::fs::write(&self.path, &self.fingerprint)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
