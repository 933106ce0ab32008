//! Starting the frontend and noticing when it ends.
//!
//! The frontend gets exactly three descriptors: standard input is its end of
//! the IPC socketpair, standard output is /dev/null, standard error is a pipe
//! whose lines the broker logs. Everything else the broker holds is
//! close-on-exec. Its environment is empty; its arguments say which account
//! to drop to.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipc::frame::{FrameReader, FrameWriter};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

/// Longest log line taken from the frontend; the rest of a longer line is
/// dropped.
const MAX_LOG_LINE: usize = 4096;

/// Restart delays: doubling from the first to the last, back to the first
/// once a frontend has lived `STABLE`.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(5);
pub const STABLE: Duration = Duration::from_secs(30);
/// How long a new frontend may take to report that it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct FrontendProcess {
    pub child: Child,
    pub ipc: OwnedFd,
    pub log: Option<OwnedFd>,
    log_buf: Vec<u8>,
    pub reader: FrameReader,
    pub writer: FrameWriter,
    pub ready: bool,
    pub started: Instant,
}

/// The frontend's file name.
pub const FRONTEND_NAME: &str = "qga-warden-frontend";

/// The directory the frontend is installed in, fixed when the broker is
/// built for a package (`QGA_WARDEN_LIBEXECDIR=/usr/libexec/qga-warden`,
/// set by `packaging/build.sh`); unset in a plain `cargo build`.
pub const LIBEXECDIR: Option<&str> = option_env!("QGA_WARDEN_LIBEXECDIR");

/// Where the frontend binary is: `--frontend`, else the default
/// ([`default_frontend`]).
pub fn locate(explicit: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    Ok(default_frontend(&std::env::current_exe()?, LIBEXECDIR))
}

/// The frontend of an installed broker is in the package's libexec
/// directory; a development build's is next to the broker (cargo puts both
/// binaries in `target/<profile>/`).
pub fn default_frontend(broker: &Path, libexecdir: Option<&str>) -> PathBuf {
    match libexecdir.filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(dir).join(FRONTEND_NAME),
        None => broker.with_file_name(FRONTEND_NAME),
    }
}

/// How `--help` describes the default.
pub fn default_frontend_text() -> String {
    match LIBEXECDIR.filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(dir).join(FRONTEND_NAME).display().to_string(),
        None => "next to this program".to_owned(),
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// How the frontend is to confine itself.
#[derive(Debug, Clone)]
pub struct Confinement {
    pub identity: Option<crate::sandbox::Identity>,
    pub require_landlock: bool,
}

pub fn spawn(path: &Path, confinement: &Confinement) -> io::Result<FrontendProcess> {
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
    set_nonblocking(&ours)?;
    let (log_r, log_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    set_nonblocking(&log_r)?;
    let mut cmd = crate::spawn::clean_command(path);
    // The frontend needs no environment at all, not even PATH.
    cmd.env_clear();
    if let Some(id) = &confinement.identity {
        cmd.arg("--uid").arg(id.uid.to_string()).arg("--gid").arg(id.gid.to_string());
    }
    if confinement.require_landlock {
        cmd.args(["--landlock", "required"]);
    }
    let child =
        cmd.stdin(Stdio::from(theirs)).stdout(Stdio::null()).stderr(Stdio::from(log_w)).spawn()?;
    Ok(FrontendProcess {
        child,
        ipc: ours,
        log: Some(log_r),
        log_buf: Vec::new(),
        reader: FrameReader::new(),
        writer: FrameWriter::new(),
        ready: false,
        started: Instant::now(),
    })
}

impl FrontendProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads what the frontend wrote to standard error and logs each whole
    /// line. Returns false at end of file.
    pub fn drain_log(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            let read = match &self.log {
                Some(fd) => nix::unistd::read(fd.as_fd(), &mut chunk),
                None => return false,
            };
            match read {
                Ok(0) => {
                    self.flush_log_line(true);
                    self.log = None;
                    return false;
                }
                Ok(n) => {
                    for &b in &chunk[..n] {
                        if b == b'\n' {
                            self.flush_log_line(false);
                        } else if self.log_buf.len() < MAX_LOG_LINE {
                            self.log_buf.push(b);
                        }
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
    }

    fn flush_log_line(&mut self, partial: bool) {
        if self.log_buf.is_empty() && partial {
            return;
        }
        let line = String::from_utf8_lossy(&self.log_buf).into_owned();
        self.log_buf.clear();
        let (level, msg) = match line.split_once(": ") {
            Some((l, m)) => match crate::log::Level::from_name(l) {
                Some(level) => (level, m),
                None => (crate::log::Level::Warning, line.as_str()),
            },
            None => (crate::log::Level::Warning, line.as_str()),
        };
        crate::log::write(level, format_args!("frontend[{}]: {msg}", self.child.id()));
    }

    /// Kills the frontend (if still running) and collects its status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.drain_log();
        status
    }
}

/// Describes how a process ended, for the log.
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "ended (status unknown)".to_owned(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => {
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|_| sig.to_string());
                format!(
                    "was killed by {name}{}",
                    if s.core_dumped() { " (core dumped)" } else { "" }
                )
            }
            (None, None) => "ended".to_owned(),
        },
    }
}

/// The delay before the next restart.
pub fn next_delay(previous: Duration, lived: Duration) -> Duration {
    if lived >= STABLE {
        FIRST_RESTART_DELAY
    } else {
        (previous * 2).clamp(FIRST_RESTART_DELAY, MAX_RESTART_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_resets() {
        let mut d = Duration::ZERO;
        for _ in 0..20 {
            d = next_delay(d, Duration::from_millis(1));
        }
        assert_eq!(d, MAX_RESTART_DELAY);
        assert_eq!(next_delay(d, STABLE), FIRST_RESTART_DELAY);
        assert_eq!(next_delay(Duration::ZERO, Duration::ZERO), FIRST_RESTART_DELAY);
    }

    #[test]
    fn the_frontend_is_found_where_it_is_installed() {
        let broker = Path::new("/work/target/release/qga-warden");
        // cargo build: next to the broker.
        assert_eq!(
            default_frontend(broker, None),
            Path::new("/work/target/release/qga-warden-frontend")
        );
        assert_eq!(
            default_frontend(broker, Some("")),
            Path::new("/work/target/release/qga-warden-frontend")
        );
        // Built for a package: the libexec directory, wherever the broker is.
        let installed = Path::new("/usr/sbin/qga-warden");
        assert_eq!(
            default_frontend(installed, Some("/usr/libexec/qga-warden")),
            Path::new("/usr/libexec/qga-warden/qga-warden-frontend")
        );
        // This build: the tests run a plain cargo build unless the package
        // build set the directory.
        let expected = match LIBEXECDIR {
            Some(d) if !d.is_empty() => Path::new(d).join(FRONTEND_NAME),
            _ => std::env::current_exe().expect("exe").with_file_name(FRONTEND_NAME),
        };
        assert_eq!(locate(None).expect("locate"), expected);
        assert_eq!(locate(Some(Path::new("/x/fe"))).expect("locate"), Path::new("/x/fe"));
    }
}
