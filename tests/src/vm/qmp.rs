//! A minimal QMP client for QEMU's monitor socket: later tests hot-plug
//! memory (`device_add pc-dimm`) and vCPUs through it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Qmp {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Asynchronous events received so far (one JSON object per entry).
    pub events: Vec<String>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation.
    pub fn connect(path: &Path, limit: Duration) -> io::Result<Qmp> {
        let stream = UnixStream::connect(path)?;
        let mut qmp = Qmp { stream, buf: Vec::new(), events: Vec::new() };
        let greeting = qmp.line(Instant::now() + limit)?;
        if !greeting.starts_with("{\"QMP\"") {
            return Err(io::Error::other(format!("not a QMP greeting: {greeting}")));
        }
        let reply = qmp.execute(r#"{"execute":"qmp_capabilities"}"#, limit)?;
        if !reply.starts_with("{\"return\"") {
            return Err(io::Error::other(format!("qmp_capabilities: {reply}")));
        }
        Ok(qmp)
    }

    fn line(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the events that arrive within `limit` (or until QEMU closes the
    /// socket) into `events`.
    pub fn read_events(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self.line(deadline) {
            self.events.push(line);
        }
    }

    /// Sends one command (a JSON object) and returns QEMU's reply line
    /// (`{"return": ...}` or `{"error": ...}`); events that arrive meanwhile
    /// are kept in `events`.
    pub fn execute(&mut self, command: &str, limit: Duration) -> io::Result<String> {
        self.stream.write_all(command.as_bytes())?;
        self.stream.write_all(b"\n")?;
        let deadline = Instant::now() + limit;
        loop {
            let line = self.line(deadline)?;
            if line.starts_with("{\"return\"") || line.starts_with("{\"error\"") {
                return Ok(line);
            }
            self.events.push(line);
        }
    }
}
