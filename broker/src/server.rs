//! The broker's event loop: one thread, one `poll` over the signals, the
//! frontend's IPC socket and log pipe, and (in listen modes) the listening
//! socket.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipc::frame::{FillError, FrameError};
use ipc::{
    ChannelKind, Hello, LandlockState, OpError, PROTOCOL_VERSION, Request, Response, ToBroker,
    ToFrontend,
};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use policy::audit::{Event, Outcome};

use crate::audit::Audit;
use crate::channel::{self, Source};
use crate::log::{debug, error, info, warning};
use crate::ops::{self, Ops};
use crate::supervisor::{self, FrontendProcess};

/// Replies queued for a frontend that does not read them; beyond this no new
/// request is taken from it (a flood cannot make the broker hold more).
const MAX_QUEUED_REPLY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("signal set-up failed")]
    Signals(#[source] Errno),
    #[error("poll failed")]
    Poll(#[source] Errno),
    #[error("the frontend cannot confine itself as configured (see the lines before)")]
    CannotConfine,
}

/// Why a frontend is being let go.
#[derive(Debug)]
enum Fault {
    Io(io::Error),
    Frame(FrameError),
    Protocol(&'static str),
    Closed,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Io(e) => write!(f, "IPC failed: {e}"),
            Fault::Frame(e) => write!(f, "sent an invalid frame: {e}"),
            Fault::Protocol(what) => write!(f, "broke the IPC protocol: {what}"),
            Fault::Closed => f.write_str("closed the IPC socket"),
        }
    }
}

impl From<FillError> for Fault {
    fn from(e: FillError) -> Self {
        match e {
            FillError::Frame(f) => Fault::Frame(f),
            FillError::Io(e) => Fault::Io(e),
        }
    }
}

impl From<FrameError> for Fault {
    fn from(e: FrameError) -> Self {
        Fault::Frame(e)
    }
}

pub struct Broker {
    frontend_path: PathBuf,
    confinement: supervisor::Confinement,
    verbose: bool,
    ops: Ops,
    audit: Audit,
    source: Source,
    /// The connected host, in listen modes, and its generation number.
    client: Option<(OwnedFd, u32)>,
    generation: u32,
    fe: Option<FrontendProcess>,
    restart_at: Instant,
    restart_delay: Duration,
    signals: SignalFd,
    /// Set when the frontend reported that it cannot confine itself.
    fatal: bool,
}

/// Blocks the signals the broker handles through its signalfd; must run
/// before any child is spawned (`spawn` gives children an empty mask).
pub fn signal_fd() -> Result<SignalFd, ServerError> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        mask.add(s);
    }
    mask.thread_block().map_err(ServerError::Signals)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(ServerError::Signals)
}

impl Broker {
    pub fn new(
        frontend_path: PathBuf,
        confinement: supervisor::Confinement,
        verbose: bool,
        ops: Ops,
        audit: Audit,
        source: Source,
        signals: SignalFd,
    ) -> Self {
        Broker {
            frontend_path,
            confinement,
            verbose,
            ops,
            audit,
            source,
            client: None,
            generation: 0,
            fe: None,
            restart_at: Instant::now(),
            restart_delay: Duration::ZERO,
            signals,
            fatal: false,
        }
    }

    /// Serves until SIGTERM or SIGINT.
    pub fn run(&mut self) -> Result<(), ServerError> {
        loop {
            let now = Instant::now();
            if self.fe.is_none() && now >= self.restart_at {
                self.start_frontend();
            }
            // Records of the last iteration go out together, with one fsync,
            // before the replies they are about.
            self.audit.flush();
            self.flush_frontend();
            // Requests that arrived while a read's data was going out.
            if let Err(fault) = self.handle_frames() {
                self.frontend_failed(fault);
            }

            let mut deadlines = vec![self.ops.next_deadline()];
            if self.fe.is_none() {
                deadlines.push(Some(self.restart_at));
            } else if let Some(fe) = self.fe.as_ref().filter(|fe| !fe.ready) {
                deadlines.push(Some(fe.started + supervisor::READY_TIMEOUT));
            }
            let timeout =
                deadlines.into_iter().flatten().min().map(|d| d.saturating_duration_since(now));
            let timeout = match timeout {
                None => PollTimeout::NONE,
                Some(d) => {
                    PollTimeout::try_from(d.as_millis().saturating_add(1).min(60_000) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };

            let listening = matches!(self.source, Source::Listener { .. })
                && self.client.is_none()
                && self.fe.as_ref().is_some_and(|fe| fe.ready);
            let (sig_rev, ipc_rev, log_rev, listen_rev, child_ready) = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                let mut ipc_i = None;
                let mut log_i = None;
                let mut listen_i = None;
                if let Some(fe) = &self.fe {
                    // While a read's data is still going out, no new request
                    // is taken: the broker holds one read's data at most.
                    let mut ev = PollFlags::empty();
                    if taking_requests(fe) {
                        ev |= PollFlags::POLLIN;
                    }
                    if !fe.writer.is_empty() {
                        ev |= PollFlags::POLLOUT;
                    }
                    ipc_i = Some(fds.len());
                    fds.push(PollFd::new(fe.ipc.as_fd(), ev));
                    if let Some(log) = &fe.log {
                        log_i = Some(fds.len());
                        fds.push(PollFd::new(log.as_fd(), PollFlags::POLLIN));
                    }
                }
                if let (true, Source::Listener { fd, .. }) = (listening, &self.source) {
                    listen_i = Some(fds.len());
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
                // guest-exec children's input and output.
                let watches = self.ops.children.watches();
                let first_child = fds.len();
                fds.extend(watches.iter().map(|(_, _, fd, ev)| PollFd::new(*fd, *ev)));
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(ServerError::Poll(e)),
                }
                let rev = |i: Option<usize>| {
                    i.and_then(|i| fds[i].revents()).unwrap_or(PollFlags::empty())
                };
                let child_ready: Vec<(i32, ops::exec::Stream)> = watches
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| !rev(Some(first_child + k)).is_empty())
                    .map(|(_, (pid, stream, _, _))| (*pid, *stream))
                    .collect();
                (rev(Some(0)), rev(ipc_i), rev(log_i), rev(listen_i), child_ready)
            };
            for (pid, stream) in child_ready {
                self.ops.children.ready(pid, stream);
            }
            if self.ops.expire(Instant::now()) {
                let limit = self.ops.max_frozen().map_or(0, |d| d.as_secs());
                self.thaw_now(&format!("no guest-fsfreeze-thaw within {limit} s"));
            }

            if !sig_rev.is_empty() {
                if let Some(signal) = self.handle_signals() {
                    self.stop(&format!("signal {signal}"));
                    return Ok(());
                }
            }
            if !log_rev.is_empty() {
                if let Some(fe) = &mut self.fe {
                    fe.drain_log();
                }
            }
            if !ipc_rev.is_empty() {
                if let Err(fault) = self.read_frontend() {
                    self.frontend_failed(fault);
                }
            }
            if !listen_rev.is_empty() {
                self.accept_client();
            }
            if let Some(fe) = &self.fe {
                if !fe.ready && fe.started.elapsed() >= supervisor::READY_TIMEOUT {
                    self.frontend_failed(Fault::Protocol("not ready in time"));
                }
            }
            if self.fatal {
                self.stop("the frontend cannot confine itself");
                return Err(ServerError::CannotConfine);
            }
        }
    }

    /// Returns the signal that asks the broker to stop, if one came.
    fn handle_signals(&mut self) -> Option<&'static str> {
        let mut stop = None;
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(s @ (Signal::SIGTERM | Signal::SIGINT)) => {
                    info!("received {}, quitting", s.as_str());
                    stop = Some(s.as_str());
                }
                Ok(Signal::SIGCHLD) => {
                    self.reap();
                    self.ops.children.reap();
                }
                // After log rotation: reopen the `-l` file and the audit
                // file (when not frozen; else at the thaw).
                Ok(Signal::SIGHUP) => {
                    info!("received SIGHUP, reopening the log and audit files");
                    crate::log::reopen();
                    self.audit.reopen();
                }
                _ => {}
            }
        }
        stop
    }

    fn reap(&mut self) {
        let exited = match &mut self.fe {
            Some(fe) => matches!(fe.child.try_wait(), Ok(Some(_))),
            None => false,
        };
        if exited {
            self.frontend_failed(Fault::Closed);
        }
    }

    fn start_frontend(&mut self) {
        match supervisor::spawn(&self.frontend_path, &self.confinement) {
            Ok(fe) => {
                debug!("started frontend {} (pid {})", self.frontend_path.display(), fe.pid());
                self.fe = Some(fe);
            }
            Err(e) => {
                error!("cannot start frontend {}: {e}", self.frontend_path.display());
                self.restart_delay = supervisor::next_delay(self.restart_delay, Duration::ZERO);
                self.restart_at = Instant::now() + self.restart_delay;
            }
        }
    }

    /// Lets the frontend go and schedules a new one.
    fn frontend_failed(&mut self, fault: Fault) {
        let Some(mut fe) = self.fe.take() else {
            return;
        };
        let pid = fe.pid();
        let lived = fe.started.elapsed();
        let status = match fe.child.try_wait() {
            Ok(Some(status)) => {
                fe.drain_log();
                Some(status)
            }
            _ => fe.kill(),
        };
        let how = supervisor::describe_exit(status);
        self.audit.record(Event::FrontendExit { pid, how: how.clone() });
        if status.and_then(|s| s.code()) == Some(i32::from(ipc::EXIT_CANNOT_CONFINE)) {
            error!("frontend (pid {pid}) {how}: it cannot confine itself; stopping");
            self.fatal = true;
            return;
        }
        self.restart_delay = supervisor::next_delay(self.restart_delay, lived);
        self.restart_at = Instant::now() + self.restart_delay;
        match fault {
            Fault::Closed => warning!("frontend (pid {pid}) {how}"),
            other => warning!("frontend (pid {pid}) {other}; it {how}"),
        }
        info!("restarting the frontend in {} ms", self.restart_delay.as_millis());
    }

    fn flush_frontend(&mut self) {
        let Some(fe) = &mut self.fe else {
            return;
        };
        if fe.writer.is_empty() {
            return;
        }
        if let Err(e) = fe.writer.flush(fe.ipc.as_fd()) {
            self.frontend_failed(Fault::Io(e));
            return;
        }
        if let Some(spent) = fe.writer.take_spent() {
            self.ops.recycle(spent);
        }
    }

    fn read_frontend(&mut self) -> Result<(), Fault> {
        let Some(fe) = &mut self.fe else {
            return Ok(());
        };
        let ipc = fe.ipc.as_fd();
        // Plain reads: descriptors a compromised frontend might attach are
        // discarded by the kernel.
        let n = match fe
            .reader
            .fill_with(|buf| nix::unistd::read(ipc, buf).map_err(io::Error::from))
        {
            Ok(n) => n,
            Err(FillError::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(Fault::Closed);
        }
        self.handle_frames()
    }

    /// Handles the whole frames received, stopping while a read's data is
    /// queued for the frontend.
    fn handle_frames(&mut self) -> Result<(), Fault> {
        loop {
            let Some(fe) = &mut self.fe else {
                return Ok(());
            };
            if !taking_requests(fe) {
                return Ok(());
            }
            let Some(msg) = fe.reader.next_message::<ToBroker>()? else {
                return Ok(());
            };
            self.handle_message(msg)?;
        }
    }

    fn handle_message(&mut self, msg: ToBroker) -> Result<(), Fault> {
        let Some(fe) = &mut self.fe else {
            return Ok(());
        };
        match msg {
            ToBroker::Ready { protocol_version, sandbox } => {
                if fe.ready {
                    return Err(Fault::Protocol("ready twice"));
                }
                if protocol_version != PROTOCOL_VERSION {
                    return Err(Fault::Protocol("wrong protocol version"));
                }
                fe.ready = true;
                self.audit.record(Event::Frontend {
                    pid: fe.pid(),
                    uid: sandbox.uid,
                    gid: sandbox.gid,
                    capabilities_cleared: sandbox.capabilities_cleared,
                    no_new_privs: sandbox.no_new_privs,
                    landlock: match sandbox.landlock {
                        LandlockState::Full => format!("ABI {} full", sandbox.landlock_abi),
                        LandlockState::Partial => format!("ABI {} partial", sandbox.landlock_abi),
                        LandlockState::Unavailable => "unavailable".into(),
                    },
                    seccomp: sandbox.seccomp,
                });
                crate::sandbox::check_report(
                    &sandbox,
                    fe.pid(),
                    self.confinement.identity.as_ref(),
                    self.confinement.require_landlock,
                )
                .map_err(Fault::Protocol)?;
                fe.writer.push(&ToFrontend::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    verbose: self.verbose,
                }))?;
                fe.writer.push(&ToFrontend::CommandStates(self.ops.states()))?;
                self.send_channel()?;
            }
            ToBroker::Request { seq, request } => {
                if !fe.ready {
                    return Err(Fault::Protocol("request before ready"));
                }
                let secret = matches!(request, Request::SetUserPassword { .. });
                let was_frozen = self.ops.frozen();
                let result = self.handle_request(&request);
                drop(request);
                if secret {
                    if let Some(fe) = &mut self.fe {
                        fe.reader.wipe_consumed();
                    }
                }
                if self.ops.frozen() != was_frozen {
                    self.push_states();
                }
                let bulk = self.ops.take_bulk();
                if let Some(fe) = &mut self.fe {
                    let streams = matches!(result, Ok(Response::FileRead { .. }));
                    fe.writer.push(&ToFrontend::Reply { seq, result })?;
                    if let (true, Some(data)) = (streams, bulk) {
                        fe.writer.push_data(data);
                    }
                }
            }
            ToBroker::Disabled { seq, command } => {
                if !fe.ready {
                    return Err(Fault::Protocol("request before ready"));
                }
                let started = Instant::now();
                let handled = self.ops.handle_disabled(command);
                self.record_request(command, &handled, started, policy::audit::Args::new());
                if let Some(fe) = &mut self.fe {
                    fe.writer.push(&ToFrontend::Reply { seq, result: handled.result })?;
                }
            }
            ToBroker::ChannelClosed { generation } => {
                if matches!(&self.client, Some((_, g)) if *g == generation) {
                    debug!("host connection {generation} closed");
                    self.client = None;
                }
                if self.ops.thaw_on_disconnect() {
                    self.thaw_now("the host disconnected");
                }
            }
        }
        Ok(())
    }

    /// Runs one request and writes its audit record.
    fn handle_request(&mut self, request: &Request) -> Result<Response, OpError> {
        let started = Instant::now();
        let command = request.command();
        if self.audit.is_full() && command != ipc::Command::FsfreezeThaw {
            self.audit.refused();
            return Err(OpError::AuditFull);
        }
        let handled = self.ops.handle(request);
        self.record_request(command, &handled, started, policy::audit::redact(request));
        handled.result
    }

    fn record_request(
        &mut self,
        command: ipc::Command,
        handled: &crate::ops::Handled,
        started: Instant,
        args: policy::audit::Args,
    ) {
        let (outcome, error_class) = match &handled.result {
            Ok(_) => (Outcome::Ok, None),
            Err(e) => (Outcome::Error, Some(e.class().name().to_owned())),
        };
        // Nothing is written to disk while filesystems are frozen: the
        // record of the freeze itself is held too.
        self.audit.hold(self.ops.frozen());
        self.audit.record(Event::Request {
            command: command.name().to_owned(),
            decision: handled.verdict,
            rule: handled.rule.clone(),
            outcome,
            error_class,
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            args,
        });
    }

    /// Thaws what is frozen without a request (the watchdog, the host
    /// leaving, the broker stopping) and records why.
    fn thaw_now(&mut self, reason: &str) {
        if !self.ops.frozen() {
            return;
        }
        let mountpoints = self.ops.freezer.frozen().to_vec();
        let (thawed, hook) = self.ops.freezer.thaw_all();
        warning!("thawed {thawed} filesystems: {reason}");
        let error = hook.err().map(|e| e.to_string());
        if let Some(e) = &error {
            warning!("after the thaw: {e}");
        }
        self.audit.hold(false);
        self.audit.record(Event::Thaw { reason: reason.to_owned(), mountpoints, thawed, error });
        self.push_states();
    }

    /// Tells the frontend which commands run now (after a freeze or a thaw).
    fn push_states(&mut self) {
        let states = self.ops.states();
        if let Some(fe) = self.fe.as_mut().filter(|fe| fe.ready) {
            if let Err(e) = fe.writer.push(&ToFrontend::CommandStates(states)) {
                let fault = Fault::Frame(e);
                self.frontend_failed(fault);
            }
        }
    }

    /// Gives the ready frontend the channel to serve, if there is one.
    fn send_channel(&mut self) -> Result<(), Fault> {
        let Some(fe) = &mut self.fe else {
            return Ok(());
        };
        let (fd, kind) = match (&self.source, &self.client) {
            (Source::Device { fd, kind }, _) => (fd, *kind),
            (Source::Listener { .. }, Some((fd, _))) => (fd, ChannelKind::Stream),
            (Source::Listener { .. }, None) => return Ok(()),
        };
        let host_notify = kind == ChannelKind::VirtioSerial && notify_on_host_open(fd, fe.pid());
        let dup = fd.try_clone().map_err(Fault::Io)?;
        fe.writer.push_with_fd(
            &ToFrontend::Channel { kind, generation: self.generation, host_notify },
            Some(dup),
        )?;
        Ok(())
    }

    fn accept_client(&mut self) {
        let Source::Listener { fd, .. } = &self.source else {
            return;
        };
        match channel::accept(fd) {
            Ok(conn) => {
                self.generation = self.generation.wrapping_add(1);
                debug!("host connection {} accepted", self.generation);
                self.client = Some((conn, self.generation));
                if let Err(fault) = self.send_channel() {
                    self.frontend_failed(fault);
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNABORTED) => {}
            Err(e) => warning!("accepting a host connection failed: {e}"),
        }
    }

    fn stop(&mut self, reason: &str) {
        self.thaw_now(&format!("the agent is stopping ({reason})"));
        if let Some(mut fe) = self.fe.take() {
            fe.kill();
        }
        self.ops.children.kill_all();
        self.audit.record(Event::Stop { reason: reason.to_owned() });
        self.audit.flush();
        if let Source::Listener { unix_path: Some(p), .. } = &self.source {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Whether the broker takes another request from `fe`: not while a read's
/// data is going out, nor while it holds many replies the frontend has not
/// read.
fn taking_requests(fe: &FrontendProcess) -> bool {
    !fe.writer.bulk_pending() && fe.writer.queued_bytes() < MAX_QUEUED_REPLY_BYTES
}

/// Asks the kernel to send SIGIO to the frontend when the host opens the
/// virtio-serial port, so it can wait for that without polling.
fn notify_on_host_open(fd: &OwnedFd, pid: u32) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: F_SETOWN takes an integer argument and no memory; `fd` is a
    // valid descriptor this function borrows for the duration of the call.
    let owner = unsafe { nix::libc::fcntl(fd.as_raw_fd(), nix::libc::F_SETOWN, pid as i32) };
    if owner < 0 {
        warning!("cannot ask for host-open notification: {}", io::Error::last_os_error());
        return false;
    }
    let flags = match fcntl(fd.as_fd(), FcntlArg::F_GETFL) {
        Ok(f) => OFlag::from_bits_truncate(f),
        Err(_) => return false,
    };
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_ASYNC)).is_ok()
}
