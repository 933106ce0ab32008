//! Becoming a daemon and holding the pid file, as qemu-ga does.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{ForkResult, chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot fork")]
    Fork(#[source] nix::Error),
    #[error("cannot detach from the terminal")]
    Detach(#[source] nix::Error),
    #[error("cannot open pid file {}", .0.display())]
    PidOpen(PathBuf, #[source] io::Error),
    #[error("pid file {} is locked: another instance is running", .0.display())]
    PidLocked(PathBuf),
    #[error("cannot write pid file {}", .0.display())]
    PidWrite(PathBuf, #[source] io::Error),
}

/// A locked pid file, removed when dropped.
pub struct PidFile {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, DaemonError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| DaemonError::PidOpen(path.to_owned(), e))?;
        let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| DaemonError::PidLocked(path.to_owned()))?;
        let write = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            writeln!(f, "{}", std::process::id())?;
            f.sync_all()
        };
        write(&mut lock).map_err(|e| DaemonError::PidWrite(path.to_owned(), e))?;
        Ok(PidFile { path: path.to_owned(), _lock: lock })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Forks into the background: the parent exits, the child leaves the
/// session, works from `/`, with a private umask and standard streams on
/// /dev/null. Must run before any thread or child exists.
pub fn daemonize() -> Result<(), DaemonError> {
    #[allow(unsafe_code)]
    // SAFETY: called from main before the broker starts any thread, opens its
    // channel or spawns a child, so the child of fork is a copy of a
    // single-threaded process and may do anything.
    match unsafe { fork() }.map_err(DaemonError::Fork)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().map_err(DaemonError::Detach)?;
    umask(Mode::from_bits_truncate(0o077));
    chdir("/").map_err(DaemonError::Detach)?;
    let null =
        File::options().read(true).write(true).open("/dev/null").map_err(|e| {
            DaemonError::Detach(nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))
        })?;
    dup2_stdin(&null).map_err(DaemonError::Detach)?;
    dup2_stdout(&null).map_err(DaemonError::Detach)?;
    dup2_stderr(&null).map_err(DaemonError::Detach)?;
    Ok(())
}
