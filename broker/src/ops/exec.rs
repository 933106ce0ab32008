//! guest-exec and guest-exec-status.
//!
//! The broker starts the program itself (no shell): explicit argv, as the
//! account the policy names (its groups, its uid, a new session), with an
//! environment made of PATH, HOME, USER, LOGNAME and the variables the
//! policy lets the host set; standard input fed from input-data then closed
//! (else /dev/null); output captured up to the policy's limit (the rest is
//! read and dropped, and reported truncated). The event loop feeds and
//! drains every child without blocking; a child past its time limit is
//! killed with its process group. A child is reaped exactly once, and
//! forgotten once its exit has been reported.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ipc::{Bytes, CaptureOutput, ExecRequest, ExecStatus, OpError, Response};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::PollFlags;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use policy::ExecGrant;

use crate::accounts;
use crate::log::{debug, warning};

/// Bytes read from a child's output at once.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    In,
    Out,
    Err,
}

struct Capture {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
    truncated: bool,
    max: usize,
}

struct Input {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
    offset: usize,
}

struct Child {
    stdin: Option<Input>,
    out: Option<Capture>,
    err: Option<Capture>,
    status: Option<WaitStatus>,
    deadline: Option<Instant>,
}

#[derive(Default)]
pub struct Children {
    table: BTreeMap<i32, Child>,
}

fn nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn capture(fd: impl Into<OwnedFd>, max: usize) -> std::io::Result<Capture> {
    let fd = fd.into();
    nonblocking(&fd)?;
    Ok(Capture { fd: Some(fd), data: Vec::new(), truncated: false, max })
}

impl Capture {
    /// Reads what is there (a bounded amount, so that a child that writes
    /// without end cannot hold the event loop); closes at end of file or
    /// error.
    fn drain(&mut self) {
        let mut chunk = [0u8; READ_CHUNK];
        for _ in 0..16 {
            let Some(fd) = &self.fd else { return };
            match nix::unistd::read(fd.as_fd(), &mut chunk) {
                Ok(0) => self.fd = None,
                Ok(n) => {
                    let room = self.max.saturating_sub(self.data.len());
                    if n > room {
                        self.truncated = true;
                    }
                    self.data.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(_) => self.fd = None,
            }
        }
    }

    fn closed(&self) -> bool {
        self.fd.is_none()
    }
}

impl Input {
    fn feed(&mut self) {
        while let Some(fd) = &self.fd {
            if self.offset == self.data.len() {
                // All written: closing is the child's end of input.
                self.fd = None;
                self.data = Vec::new();
                return;
            }
            match nix::unistd::write(fd.as_fd(), &self.data[self.offset..]) {
                Ok(n) => self.offset += n,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                // EPIPE: the child does not read its input.
                Err(_) => {
                    self.fd = None;
                    self.data = Vec::new();
                }
            }
        }
    }
}

impl Children {
    /// Children started and not yet reaped.
    pub fn running(&self) -> usize {
        self.table.values().filter(|c| c.status.is_none()).count()
    }

    pub fn spawn(&mut self, req: &ExecRequest, grant: &ExecGrant) -> Result<Response, OpError> {
        // Children whose exit has not been collected count too, so that a
        // host that never asks cannot make the broker hold their output
        // without bound.
        if self.table.len() >= grant.max_children as usize {
            return Err(OpError::TooManyChildren { max: grant.max_children });
        }
        let no_account = || OpError::NoSuchAccount(grant.run_as.clone());
        let account =
            accounts::lookup(&grant.run_as).map_err(|_| no_account())?.ok_or_else(no_account)?;
        let groups = accounts::groups(&account);
        let spawn_err = |e: std::io::Error| OpError::ExecSpawn {
            path: req.path.clone(),
            errno: e.raw_os_error().unwrap_or(nix::libc::EIO),
        };

        let mut cmd = crate::spawn::clean_command(std::path::Path::new(&req.path));
        cmd.args(&req.args)
            .env("HOME", &account.home)
            .env("USER", &account.name)
            .env("LOGNAME", &account.name);
        for var in &req.env {
            // The policy only lets NAME=VALUE through.
            if let Some((name, value)) = var.split_once('=') {
                cmd.env(name, value);
            }
        }
        cmd.stdin(if req.input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut merged_reader = None;
        match req.capture {
            CaptureOutput::None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
            CaptureOutput::Stdout => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::null());
            }
            CaptureOutput::Stderr => {
                cmd.stdout(Stdio::null()).stderr(Stdio::piped());
            }
            CaptureOutput::Separated => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            CaptureOutput::Merged => {
                let (r, w) =
                    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| spawn_err(e.into()))?;
                let w2 = w.try_clone().map_err(spawn_err)?;
                cmd.stdout(Stdio::from(w)).stderr(Stdio::from(w2));
                merged_reader = Some(r);
            }
        }
        let (uid, gid) = (account.uid, account.gid);
        let change_ids = nix::unistd::Uid::effective().is_root();
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: it makes only the raw
        // setsid, setgroups, setgid, setuid and umask system calls, on values
        // computed before the fork (`groups` is not touched but for its
        // pointer and length), and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if change_ids
                    && (nix::libc::setgroups(groups.len(), groups.as_ptr()) < 0
                        || nix::libc::setgid(gid) < 0
                        || nix::libc::setuid(uid) < 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                nix::libc::umask(0o022);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id() as i32;
        let max = usize::try_from(grant.max_output_bytes).unwrap_or(usize::MAX);
        let prepare = || -> std::io::Result<Child> {
            let stdin = match (child.stdin.take(), &req.input) {
                (Some(fd), Some(data)) => {
                    let fd: OwnedFd = fd.into();
                    nonblocking(&fd)?;
                    Some(Input { fd: Some(fd), data: data.0.clone(), offset: 0 })
                }
                _ => None,
            };
            let out = match (merged_reader, child.stdout.take()) {
                (Some(r), _) => Some(capture(r, max)?),
                (None, Some(o)) => Some(capture(o, max)?),
                (None, None) => None,
            };
            let err = child.stderr.take().map(|e| capture(e, max)).transpose()?;
            let deadline = grant.timeout_seconds.map(|s| Instant::now() + Duration::from_secs(s));
            Ok(Child { stdin, out, err, status: None, deadline })
        };
        let mut entry = match prepare() {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_err(e));
            }
        };
        if let Some(input) = &mut entry.stdin {
            input.feed();
        }
        debug!("guest-exec started {} as {} (pid {pid})", req.path, account.name);
        self.table.insert(pid, entry);
        Ok(Response::Exec { pid: i64::from(pid) })
    }

    pub fn status(&mut self, pid: i64) -> Result<Response, OpError> {
        let unknown = || OpError::InvalidParameter { name: "pid".into() };
        let pid = i32::try_from(pid).map_err(|_| unknown())?;
        let child = self.table.get_mut(&pid).ok_or_else(unknown)?;
        // Answer from the freshest state, not the last loop iteration's.
        Self::reap_one(pid, child);
        for c in [&mut child.out, &mut child.err].into_iter().flatten() {
            c.drain();
        }
        let outputs_closed = [&child.out, &child.err].into_iter().flatten().all(Capture::closed);
        let Some(status) = child.status.filter(|_| outputs_closed) else {
            return Ok(Response::ExecStatus(ExecStatus { exited: false, ..ExecStatus::default() }));
        };
        let Some(child) = self.table.remove(&pid) else {
            return Err(unknown());
        };
        let mut s = ExecStatus { exited: true, ..ExecStatus::default() };
        match status {
            WaitStatus::Exited(_, code) => s.exitcode = Some(code),
            WaitStatus::Signaled(_, signal, _) => s.signal = Some(signal as i32),
            _ => {}
        }
        if let Some(out) = child.out.filter(|c| !c.data.is_empty()) {
            s.out_truncated = Some(out.truncated);
            s.out_data = Some(Bytes(out.data));
        }
        if let Some(err) = child.err.filter(|c| !c.data.is_empty()) {
            s.err_truncated = Some(err.truncated);
            s.err_data = Some(Bytes(err.data));
        }
        Ok(Response::ExecStatus(s))
    }

    fn reap_one(pid: i32, child: &mut Child) {
        if child.status.is_some() {
            return;
        }
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                child.status = Some(s);
                child.deadline = None;
                // Input the child never read goes nowhere.
                child.stdin = None;
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                warning!("waiting for guest-exec child {pid} failed: {e}");
                child.status = Some(WaitStatus::Exited(Pid::from_raw(pid), -1));
            }
        }
    }

    /// After SIGCHLD: collects the status of every child that has ended.
    pub fn reap(&mut self) {
        for (&pid, child) in &mut self.table {
            Self::reap_one(pid, child);
        }
    }

    /// The descriptors to watch, with what to watch them for.
    pub fn watches(&self) -> Vec<(i32, Stream, BorrowedFd<'_>, PollFlags)> {
        let mut v = Vec::new();
        for (&pid, c) in &self.table {
            if let Some(fd) = c.stdin.as_ref().and_then(|i| i.fd.as_ref()) {
                v.push((pid, Stream::In, fd.as_fd(), PollFlags::POLLOUT));
            }
            if let Some(fd) = c.out.as_ref().and_then(|o| o.fd.as_ref()) {
                v.push((pid, Stream::Out, fd.as_fd(), PollFlags::POLLIN));
            }
            if let Some(fd) = c.err.as_ref().and_then(|e| e.fd.as_ref()) {
                v.push((pid, Stream::Err, fd.as_fd(), PollFlags::POLLIN));
            }
        }
        v
    }

    /// A watched descriptor is ready.
    pub fn ready(&mut self, pid: i32, stream: Stream) {
        let Some(c) = self.table.get_mut(&pid) else { return };
        match stream {
            Stream::In => {
                if let Some(i) = &mut c.stdin {
                    i.feed();
                }
            }
            Stream::Out => {
                if let Some(o) = &mut c.out {
                    o.drain();
                }
            }
            Stream::Err => {
                if let Some(e) = &mut c.err {
                    e.drain();
                }
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.values().filter_map(|c| c.deadline).min()
    }

    /// Kills the children whose time is up, with their process groups.
    pub fn expire(&mut self, now: Instant) {
        for (&pid, c) in &mut self.table {
            if c.deadline.is_some_and(|d| d <= now) {
                debug!("guest-exec child {pid} ran out of time; killing it");
                c.deadline = None;
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// At stop: every child still running is killed and reaped.
    pub fn kill_all(&mut self) {
        for (&pid, c) in &mut self.table {
            if c.status.is_none() {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.running() > 0 && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
