//! The frontend's event loop: one thread, one `poll`, no blocking call.
//!
//! Requests are passed to the broker as soon as they are parsed (several may
//! be in flight); replies go back to the host strictly in request order,
//! whether the broker answered them or the frontend rejected them itself.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ipc::frame::{FillError, Frame, FrameError, FrameReader, FrameWriter};
use ipc::{
    ChannelKind, Command, CommandStates, PROTOCOL_VERSION, Response, SandboxReport, ToBroker,
    ToFrontend,
};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::json::{Event, Json, Splitter};
use crate::log::{debug, warning};
use crate::qmp::{self, RequestError};
use crate::reply;

/// Bytes read from the channel at once.
const READ_CHUNK: usize = 64 * 1024;
/// Requests accepted from the host and not yet answered; beyond this the
/// channel is not read until replies have gone out.
const MAX_PENDING: usize = 64;
/// Reply bytes waiting for the host to read them; beyond this neither the
/// channel nor the broker is read (the broker holds the rest of a
/// `guest-file-read` until the host catches up).
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Without a host-open notification from the kernel, how often to look
/// whether a closed virtio-serial port has been reopened (milliseconds).
const REOPEN_RECHECK_MS: u16 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the broker closed the IPC socket")]
    BrokerGone,
    #[error("IPC socket failed")]
    Ipc(#[source] io::Error),
    #[error("IPC frame from the broker is invalid")]
    Frame(#[from] FrameError),
    #[error("the broker broke the IPC protocol: {0}")]
    Protocol(&'static str),
    #[error("IPC protocol version {0} is not {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("signal set-up failed")]
    Signals(#[source] Errno),
    #[error("poll failed")]
    Poll(#[source] Errno),
}

impl Error {
    /// The broker closing the socket is how the frontend is told to stop.
    pub fn is_broker_gone(&self) -> bool {
        matches!(self, Error::BrokerGone)
    }
}

impl From<FillError> for Error {
    fn from(e: FillError) -> Self {
        match e {
            FillError::Frame(f) => Error::Frame(f),
            FillError::Io(e) => Error::Ipc(e),
        }
    }
}

/// One request's place in the reply order.
#[derive(Debug)]
enum Slot {
    /// The reply bytes, ready to go out.
    Ready(Vec<u8>),
    /// Waiting for the broker.
    Waiting { seq: u32, id: Option<Json>, command: Command },
    /// Waiting for the broker, but the host that asked is gone.
    Discard { seq: u32 },
    /// A `guest-file-read` reply going out as its data arrives; always at
    /// the front. `tail` ends the reply; `carry` holds the bytes of a
    /// base64 group split between two data frames.
    Streaming { remaining: u64, tail: Vec<u8>, carry: Vec<u8> },
    /// The rest of a read whose host is gone: dropped as it arrives.
    Dropping { remaining: u64 },
}

/// Reply bytes for the host, in order.
#[derive(Default)]
struct Output {
    queue: VecDeque<(Vec<u8>, usize)>,
    bytes: usize,
}

impl Output {
    /// Appends through `f`, into the last buffer while it is small.
    fn append(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        if !matches!(self.queue.back(), Some((last, _)) if last.len() < READ_CHUNK) {
            self.queue.push_back((Vec::new(), 0));
        }
        let Some((last, _)) = self.queue.back_mut() else {
            return;
        };
        let before = last.len();
        f(last);
        self.bytes += last.len() - before;
    }

    fn push(&mut self, bytes: Vec<u8>) {
        let n = bytes.len();
        if n == 0 {
            return;
        }
        match self.queue.back_mut() {
            Some((last, _)) if last.len() + n <= READ_CHUNK => last.extend_from_slice(&bytes),
            _ => self.queue.push_back((bytes, 0)),
        }
        self.bytes += n;
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

struct Channel {
    fd: OwnedFd,
    kind: ChannelKind,
    generation: u32,
    host_notify: bool,
    /// False while a virtio-serial port's host side is closed.
    host_connected: bool,
}

struct Frontend<'a> {
    ipc: BorrowedFd<'a>,
    reader: FrameReader,
    writer: FrameWriter,
    received_fds: VecDeque<OwnedFd>,
    hello: bool,
    states: CommandStates,
    channel: Option<Channel>,
    sigio: SignalFd,
    splitter: Splitter,
    events: Vec<Event>,
    pending: VecDeque<Slot>,
    out: Output,
    next_seq: u32,
    /// A garbage error has been answered; further ones are dropped (and
    /// counted, for one log line) until a request names a command.
    suppress_garbage: bool,
    garbage_dropped: u64,
    buf: Vec<u8>,
    /// Until when to look for more work without sleeping (see
    /// [`poll_after_activity`]).
    active_until: Option<std::time::Instant>,
}

/// Blocks SIGIO and returns a descriptor to read it from. A virtio-serial
/// channel signals SIGIO when the host opens it; the default action would
/// end the process. Called before confinement (signalfd is not allowed after).
pub fn sigio_fd() -> Result<SignalFd, Error> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGIO);
    mask.thread_block().map_err(Error::Signals)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(Error::Signals)
}

/// Serves until the broker goes away. Must be called confined.
pub fn run(sigio: SignalFd, sandbox: SandboxReport) -> Result<(), Error> {
    let stdin = io::stdin();
    let mut fe = Frontend {
        ipc: stdin.as_fd(),
        reader: FrameReader::new(),
        writer: FrameWriter::new(),
        received_fds: VecDeque::new(),
        hello: false,
        states: CommandStates::default(),
        channel: None,
        sigio,
        splitter: Splitter::new(),
        events: Vec::new(),
        pending: VecDeque::new(),
        out: Output::default(),
        next_seq: 0,
        suppress_garbage: false,
        garbage_dropped: 0,
        buf: Vec::new(),
        active_until: None,
    };
    fe.writer.push(&ToBroker::Ready { protocol_version: PROTOCOL_VERSION, sandbox })?;
    fe.event_loop()
}

impl Frontend<'_> {
    fn event_loop(&mut self) -> Result<(), Error> {
        loop {
            self.flush_replies();
            self.flush_ipc()?;

            let mut ipc_events = PollFlags::empty();
            if self.out.bytes < OUT_HIGH_WATER {
                ipc_events |= PollFlags::POLLIN;
            }
            if !self.writer.is_empty() {
                ipc_events |= PollFlags::POLLOUT;
            }
            let mut chan_events = PollFlags::empty();
            let mut wait_sigio = false;
            let mut timeout = PollTimeout::NONE;
            if let Some(ch) = &self.channel {
                if ch.host_connected {
                    if self.accepting_input() {
                        chan_events |= PollFlags::POLLIN;
                    }
                    if self.out.bytes > 0 {
                        chan_events |= PollFlags::POLLOUT;
                    }
                } else if ch.host_notify {
                    wait_sigio = true;
                } else {
                    timeout = PollTimeout::from(REOPEN_RECHECK_MS);
                }
            }

            let (ipc_rev, chan_rev, sigio_rev) = {
                let mut fds = vec![PollFd::new(self.ipc, ipc_events)];
                if !chan_events.is_empty() {
                    if let Some(ch) = &self.channel {
                        fds.push(PollFd::new(ch.fd.as_fd(), chan_events));
                    }
                }
                if wait_sigio {
                    fds.push(PollFd::new(self.sigio.as_fd(), PollFlags::POLLIN));
                }
                let awaiting_broker = self.pending.iter().any(|s| !matches!(s, Slot::Ready(_)));
                if !awaiting_broker {
                    self.active_until = None;
                }
                match poll_after_activity(&mut fds, timeout, &mut self.active_until) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(Error::Poll(e)),
                }
                let rev =
                    |i: usize| fds.get(i).and_then(PollFd::revents).unwrap_or(PollFlags::empty());
                let chan_rev = if chan_events.is_empty() { PollFlags::empty() } else { rev(1) };
                let sigio_rev = if wait_sigio { rev(fds.len() - 1) } else { PollFlags::empty() };
                (rev(0), chan_rev, sigio_rev)
            };

            if !ipc_rev.is_empty() {
                self.read_ipc()?;
            }
            if chan_rev.intersects(PollFlags::POLLOUT) {
                self.write_channel();
            }
            if chan_rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.read_channel()?;
            }
            let reopen_check = matches!(&self.channel, Some(ch) if !ch.host_connected)
                && (!sigio_rev.is_empty() || !wait_sigio);
            if reopen_check {
                while let Ok(Some(_)) = self.sigio.read_signal() {}
                self.read_channel()?;
            }
        }
    }

    fn accepting_input(&self) -> bool {
        self.pending.len() < MAX_PENDING
            && self.out.bytes < OUT_HIGH_WATER
            && self.writer.queued_bytes() < OUT_HIGH_WATER
    }

    fn flush_ipc(&mut self) -> Result<(), Error> {
        if !self.writer.is_empty() {
            self.writer.flush(self.ipc).map_err(Error::Ipc)?;
        }
        Ok(())
    }

    fn read_ipc(&mut self) -> Result<(), Error> {
        let ipc = self.ipc;
        let fds = &mut self.received_fds;
        let mut received = Vec::new();
        let n = match self
            .reader
            .fill_with(|buf| ipc::fdpass::recv_with_fds(ipc, buf, &mut received))
        {
            Ok(n) => n,
            Err(FillError::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        fds.extend(received);
        if n == 0 {
            return Err(Error::BrokerGone);
        }
        loop {
            match self.reader.next_frame::<ToFrontend>()? {
                None => return Ok(()),
                Some(Frame::Message(msg)) => self.handle_message(msg)?,
                Some(Frame::Data(chunk)) => {
                    if stream_data(&mut self.pending, &mut self.out, chunk)? {
                        self.reader.keep_buffer(false);
                    }
                }
            }
        }
    }

    fn handle_message(&mut self, msg: ToFrontend) -> Result<(), Error> {
        match msg {
            ToFrontend::Hello(hello) => {
                if hello.protocol_version != PROTOCOL_VERSION {
                    return Err(Error::Version(hello.protocol_version));
                }
                crate::log::set_verbose(hello.verbose);
                self.hello = true;
                debug!("connected to the broker");
                return Ok(());
            }
            _ if !self.hello => return Err(Error::Protocol("first message is not Hello")),
            ToFrontend::CommandStates(states) => self.states = states,
            ToFrontend::Channel { kind, generation, host_notify } => {
                let fd = self
                    .received_fds
                    .pop_front()
                    .ok_or(Error::Protocol("channel message without a descriptor"))?;
                debug!("serving channel {generation} ({kind:?})");
                self.end_session();
                self.channel =
                    Some(Channel { fd, kind, generation, host_notify, host_connected: true });
            }
            ToFrontend::Reply { seq, result } => {
                let slot = self
                    .pending
                    .iter_mut()
                    .find(|s| !matches!(s, Slot::Ready(_)))
                    .ok_or(Error::Protocol("reply to no request"))?;
                let waiting_seq = match slot {
                    Slot::Waiting { seq, .. } | Slot::Discard { seq } => Some(*seq),
                    _ => None,
                };
                if waiting_seq != Some(seq) {
                    return Err(Error::Protocol("reply out of order"));
                }
                if let Ok(Response::FileRead { count, eof }) = &result {
                    if *count > 0 {
                        return self.start_stream(*count, *eof);
                    }
                }
                let mut bytes = Vec::new();
                if let Slot::Waiting { id, command, .. } = slot {
                    match &result {
                        Ok(response) => reply::success(
                            &mut bytes,
                            id.as_ref(),
                            response,
                            *command == Command::SyncDelimited,
                        ),
                        Err(e) => reply::error(
                            &mut bytes,
                            id.as_ref(),
                            e.class(),
                            e.to_string().as_bytes(),
                        ),
                    }
                }
                *slot = Slot::Ready(bytes);
            }
        }
        Ok(())
    }

    /// The reply to the first request waiting for the broker is a read whose
    /// data follows: replies before it go to the output, then the start of
    /// its own, and it waits at the front for its data frames.
    fn start_stream(&mut self, remaining: u64, eof: bool) -> Result<(), Error> {
        self.queue_ready();
        let slot = match self.pending.pop_front() {
            Some(Slot::Waiting { id, .. }) => {
                let (head, tail) = reply::file_read(id.as_ref(), remaining, eof);
                self.out.push(head);
                Slot::Streaming { remaining, tail, carry: Vec::new() }
            }
            Some(Slot::Discard { .. }) => Slot::Dropping { remaining },
            _ => return Err(Error::Protocol("reply to no request")),
        };
        self.pending.push_front(slot);
        self.reader.keep_buffer(true);
        Ok(())
    }

    /// Forgets the current host session: partial input, queued replies; the
    /// answers to requests still with the broker will be dropped.
    fn end_session(&mut self) {
        self.splitter.reset();
        self.end_garbage_run();
        self.pending.retain_mut(|slot| match slot {
            Slot::Ready(_) => false,
            Slot::Waiting { seq, .. } => {
                *slot = Slot::Discard { seq: *seq };
                true
            }
            Slot::Streaming { remaining, .. } => {
                *slot = Slot::Dropping { remaining: *remaining };
                true
            }
            Slot::Discard { .. } | Slot::Dropping { .. } => true,
        });
        self.out.clear();
    }

    fn read_channel(&mut self) -> Result<(), Error> {
        let Some(ch) = &mut self.channel else {
            return Ok(());
        };
        if self.buf.len() < READ_CHUNK {
            self.buf.resize(READ_CHUNK, 0);
        }
        match nix::unistd::read(ch.fd.as_fd(), &mut self.buf) {
            Ok(0) => self.channel_closed(),
            Ok(n) => {
                if !ch.host_connected {
                    debug!("host opened the channel");
                    ch.host_connected = true;
                }
                self.input(n);
                Ok(())
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {
                ch.host_connected = true;
                Ok(())
            }
            Err(e) => {
                warning!("reading the channel failed: {e}");
                self.channel_closed()
            }
        }
    }

    fn channel_closed(&mut self) -> Result<(), Error> {
        let Some(ch) = &mut self.channel else {
            return Ok(());
        };
        match ch.kind {
            ChannelKind::VirtioSerial => {
                // A read of 0 says the kernel thinks the host side is closed.
                // It can say so just after the host's first bytes have
                // arrived (data can overtake the port-open message), so
                // nothing is thrown away: partial input and replies wait,
                // as with qemu-ga, and the host resynchronises as it must
                // after reopening anyway.
                if ch.host_connected {
                    debug!("host closed the channel; waiting for it to reopen");
                    ch.host_connected = false;
                    // The broker may thaw filesystems when the host leaves.
                    let generation = ch.generation;
                    self.writer.push(&ToBroker::ChannelClosed { generation })?;
                }
            }
            ChannelKind::Stream | ChannelKind::Serial => {
                let generation = ch.generation;
                debug!("channel {generation} closed");
                self.channel = None;
                self.end_session();
                self.writer.push(&ToBroker::ChannelClosed { generation })?;
            }
        }
        Ok(())
    }

    fn input(&mut self, n: usize) {
        let mut events = std::mem::take(&mut self.events);
        self.splitter.feed(&self.buf[..n], &mut |e| events.push(e));
        let mut secret = false;
        for event in events.drain(..) {
            match event {
                Event::Value(v) => {
                    secret |= matches!(&v, Json::Object(m) if qmp::carries_secret(m));
                    match qmp::interpret(v, &self.states) {
                        Ok(call) => self.call(call),
                        Err(r) => self.reject(r.id, r.error),
                    }
                }
                Event::Error(e) => self.reject(None, RequestError::Parse(e)),
            }
        }
        self.events = events;
        if secret {
            // The bytes of a password request: the read buffer, the
            // splitter's copy, and the frame it went out in (see `call`).
            zeroize::Zeroize::zeroize(&mut self.buf);
            self.splitter.wipe();
        }
    }

    /// A request named a command (or the session ended): garbage is
    /// answered again. What was dropped is logged once, not per error: a
    /// gibibyte of stray bytes must not become gigabytes of log.
    fn end_garbage_run(&mut self) {
        if self.garbage_dropped > 0 {
            debug!("{} more errors about the same garbage were not answered", self.garbage_dropped);
        }
        self.suppress_garbage = false;
        self.garbage_dropped = 0;
    }

    fn call(&mut self, call: qmp::Call) {
        self.end_garbage_run();
        let seq = self.next_seq;
        let (command, msg) = match call.kind {
            qmp::CallKind::Request(request) => {
                (request.command(), ToBroker::Request { seq, request })
            }
            qmp::CallKind::Disabled(command) => (command, ToBroker::Disabled { seq, command }),
        };
        let pushed = if matches!(
            &msg,
            ToBroker::Request { request: ipc::Request::SetUserPassword { .. }, .. }
        ) {
            self.writer.push_secret(&msg)
        } else {
            self.writer.push(&msg)
        };
        match pushed {
            Ok(()) => {
                self.next_seq = seq.wrapping_add(1);
                self.pending.push_back(Slot::Waiting { seq, id: call.id, command });
            }
            Err(e) => {
                warning!("request could not be passed on: {e}");
                let mut bytes = Vec::new();
                reply::error(
                    &mut bytes,
                    call.id.as_ref(),
                    ipc::ErrorClass::GenericError,
                    b"the request is too large",
                );
                self.pending.push_back(Slot::Ready(bytes));
            }
        }
    }

    fn reject(&mut self, id: Option<Json>, error: RequestError) {
        if error.is_garbage() {
            if self.suppress_garbage {
                self.garbage_dropped += 1;
                return;
            }
            self.suppress_garbage = true;
        } else {
            self.end_garbage_run();
        }
        let (class, desc) = error.describe();
        let mut bytes = Vec::new();
        reply::error(&mut bytes, id.as_ref(), class, &desc);
        self.pending.push_back(Slot::Ready(bytes));
    }

    /// Moves finished replies at the front, in order, to the output.
    fn queue_ready(&mut self) {
        while let Some(Slot::Ready(_)) = self.pending.front() {
            if let Some(Slot::Ready(bytes)) = self.pending.pop_front() {
                self.out.push(bytes);
            }
        }
    }

    /// Moves finished replies to the output and writes.
    fn flush_replies(&mut self) {
        self.queue_ready();
        if self.out.bytes > 0 {
            self.write_channel();
        }
    }

    fn write_channel(&mut self) {
        let Some(ch) = &self.channel else {
            return;
        };
        if !ch.host_connected {
            return;
        }
        while let Some((data, offset)) = self.out.queue.front_mut() {
            match nix::unistd::write(ch.fd.as_fd(), &data[*offset..]) {
                Ok(n) => {
                    *offset += n;
                    self.out.bytes -= n;
                    if *offset == data.len() {
                        self.out.queue.pop_front();
                    }
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // The host went away; reading will see the end of file.
                    debug!("writing to the channel failed: {e}");
                    self.out.clear();
                    return;
                }
            }
        }
    }
}

/// Passes one data frame of the read streaming at the front on to the
/// output, base64-encoded, or drops it if its host is gone. Returns true
/// when the read's data is complete.
fn stream_data(
    pending: &mut VecDeque<Slot>,
    out: &mut Output,
    chunk: &[u8],
) -> Result<bool, Error> {
    let too_much = Error::Protocol("more data than the read announced");
    let done = match pending.front_mut() {
        Some(Slot::Streaming { remaining, tail, carry }) => {
            *remaining = remaining.checked_sub(chunk.len() as u64).ok_or(too_much)?;
            let mut chunk = chunk;
            out.append(|o| {
                // A base64 group split across frames is completed first.
                if !carry.is_empty() {
                    let take = (3 - carry.len()).min(chunk.len());
                    carry.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if carry.len() == 3 {
                        reply::base64_chunk(o, carry);
                        carry.clear();
                    }
                }
                let whole = chunk.len() - chunk.len() % 3;
                reply::base64_chunk(o, &chunk[..whole]);
                carry.extend_from_slice(&chunk[whole..]);
            });
            if *remaining == 0 {
                let (carry, tail) = (std::mem::take(carry), std::mem::take(tail));
                out.append(|o| reply::base64_chunk(o, &carry));
                out.push(tail);
                true
            } else {
                false
            }
        }
        Some(Slot::Dropping { remaining }) => {
            *remaining = remaining.checked_sub(chunk.len() as u64).ok_or(too_much)?;
            *remaining == 0
        }
        _ => return Err(Error::Protocol("data without a read")),
    };
    if done {
        pending.pop_front();
    }
    Ok(done)
}

/// How long to keep looking for work without sleeping after the last: a
/// host waiting for a reply, or sending its next request, finds the process
/// awake instead of paying a wake-up on each of the two hops of a round trip.
/// Idle, nothing runs (the window opens only after work).
const SPIN: std::time::Duration = std::time::Duration::from_micros(30);

/// `poll`, but within [`SPIN`] of the last work it first checks without
/// sleeping (a zero-timeout poll, which the seccomp allowlist has) until
/// something is ready or the window closes.
fn poll_after_activity(
    fds: &mut [PollFd],
    timeout: PollTimeout,
    active_until: &mut Option<std::time::Instant>,
) -> nix::Result<i32> {
    if let Some(until) = *active_until {
        while std::time::Instant::now() < until {
            let n = poll(fds, PollTimeout::ZERO)?;
            if n > 0 {
                *active_until = Some(std::time::Instant::now() + SPIN);
                return Ok(n);
            }
            let _ = nix::sched::sched_yield();
        }
    }
    let n = poll(fds, timeout)?;
    *active_until = (n > 0).then(|| std::time::Instant::now() + SPIN);
    Ok(n)
}
