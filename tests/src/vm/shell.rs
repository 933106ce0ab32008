//! The host end of the guest's test shell (`tests/vm/qga-test-shell`): a
//! second virtio-serial port, `org.qga-warden.test.0`, that runs one shell
//! command per line and answers with its output and exit status. It lets a
//! test look at and prepare the guest without going through the agent.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub const PORT_NAME: &str = "org.qga-warden.test.0";
const READY: &[u8] = b"@@qts-ready@@\n";

pub struct TestShell {
    stream: UnixStream,
    buf: Vec<u8>,
    next_id: u64,
    /// Distinguishes this connection's end markers from any other output.
    nonce: String,
}

#[derive(Debug)]
pub enum ShellError {
    /// No answer within the limit (the guest is not up, or the command hangs).
    Timeout,
    /// The connection ended or failed.
    Closed(String),
}

impl TestShell {
    /// Connects to the chardev socket (QEMU is listening already; the guest
    /// side may not be up yet).
    pub fn connect(path: &Path) -> io::Result<TestShell> {
        let stream = UnixStream::connect(path)?;
        let nonce = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                ^ u128::from(std::process::id())
        );
        Ok(TestShell { stream, buf: Vec::new(), next_id: 1, nonce })
    }

    /// Reads more bytes, at most until `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), ShellError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ShellError::Timeout);
        }
        self.stream.set_read_timeout(Some(left)).map_err(|e| ShellError::Closed(e.to_string()))?;
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ShellError::Closed("the test shell's socket closed".into())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(ShellError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(ShellError::Closed(e.to_string())),
        }
    }

    /// Waits until the guest's shell announces itself (it does each time it
    /// opens its port), discarding anything before that.
    pub fn wait_ready(
        &mut self,
        limit: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<(), ShellError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pos) = find(&self.buf, READY) {
                self.buf.drain(..pos + READY.len());
                return Ok(());
            }
            if !alive() {
                return Err(ShellError::Closed("QEMU exited".into()));
            }
            // Short reads, so that a QEMU that died is noticed quickly.
            let step = (Instant::now() + Duration::from_millis(500)).min(deadline);
            match self.fill(step) {
                Ok(()) => {}
                Err(ShellError::Timeout) if Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `cmd` (one line of `sh -c`) in the guest; returns its exit status
    /// and its output (stdout and stderr together).
    pub fn run(&mut self, cmd: &str, limit: Duration) -> Result<(i32, String), ShellError> {
        assert!(
            !cmd.contains('\n') && !cmd.contains('\r'),
            "test shell commands are one line: {cmd:?}"
        );
        let id = format!("{}-{}", self.nonce, self.next_id);
        self.next_id += 1;
        self.stream
            .write_all(format!("{id} {cmd}\n").as_bytes())
            .map_err(|e| ShellError::Closed(e.to_string()))?;
        let marker = format!("\n@@qts:{id}:");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pos) = find(&self.buf, marker.as_bytes()) {
                let after = pos + marker.len();
                if let Some(end) = find(&self.buf[after..], b"@@\n") {
                    let status = std::str::from_utf8(&self.buf[after..after + end])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(-1);
                    // The late end of a command that timed out earlier is not
                    // part of this command's output.
                    let stale = format!("@@qts:{}-", self.nonce);
                    let start = rfind(&self.buf[..pos], stale.as_bytes())
                        .and_then(|s| find(&self.buf[s..pos], b"@@\n").map(|e| s + e + 3))
                        .unwrap_or(0);
                    let output = String::from_utf8_lossy(&self.buf[start..pos]).into_owned();
                    self.buf.drain(..after + end + 3);
                    return Ok((status, output));
                }
            }
            self.fill(deadline)?;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}
