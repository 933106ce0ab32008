//! Helpers for the integration tests: build and start the real binaries, talk
//! to them as a host does, and always clean up (every wait is bounded; a
//! started agent is killed when its handle is dropped, pass or fail).

#![forbid(unsafe_code)]

pub mod fuzz;
pub mod scratch;
pub mod vm;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Default bound on any wait in a test.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// Builds the agent's binaries (once per test process, with the profile the
/// tests were built with) and returns the directory that holds them.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile_dir = test_profile_dir();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        build_agent(release);
        profile_dir
    })
}

/// Builds the agent's release binaries (once per test process), as they are
/// installed in a guest, and returns the directory that holds them.
pub fn release_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        build_agent(true);
        test_profile_dir().parent().expect("target/<profile> has a parent").join("release")
    })
}

/// target/<profile>, where this test binary was built (target/<profile>/deps).
fn test_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

fn build_agent(release: bool) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The agent, and the tests' own helpers (sandbox-probe).
    cmd.current_dir(workspace()).args(["build", "--quiet", "--bins"]).args([
        "-p",
        "qga-warden",
        "-p",
        "qga-warden-frontend",
        "-p",
        "qga-warden-tests",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building the agent failed");
}

pub fn broker_bin() -> PathBuf {
    bin_dir().join("qga-warden")
}

pub fn frontend_bin() -> PathBuf {
    bin_dir().join("qga-warden-frontend")
}

/// The sandbox test helper (`tests/src/bin/sandbox-probe.rs`).
pub fn probe_bin() -> PathBuf {
    bin_dir().join("sandbox-probe")
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "qga-warden-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running qga-warden in unix-listen mode.
pub struct Agent {
    child: Option<Child>,
    /// Set by tests that kill the frontend on purpose.
    pub allow_frontend_deaths: bool,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `qga-warden -m unix-listen -p DIR/qga.sock -v EXTRA...` and
    /// waits for the socket to appear.
    /// The agent runs with the built-in default policy, written to a file
    /// so that whatever /etc/qga-warden/policy.toml holds does not matter.
    pub fn start(extra: &[&str]) -> Agent {
        Self::with_policy(policy::DEFAULT_POLICY, extra)
    }

    /// Starts the agent with `policy` (the text of a policy file).
    pub fn with_policy(policy: &str, extra: &[&str]) -> Agent {
        Self::start_with(policy, extra, |_| {})
    }

    /// As [`Agent::with_policy`], started through `wrapper` (a program and
    /// its arguments that ends by exec'ing the rest of its command line,
    /// such as `unshare ...`), so that the broker keeps the wrapper's pid.
    pub fn start_wrapped(policy: &str, extra: &[&str], wrapper: &[&str]) -> Agent {
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        Self::start_command(&broker_bin(), policy, extra, Some(&wrapper), |_| {})
    }

    /// As [`Agent::with_policy`], in a mount namespace of its own where
    /// `etc` (a copy of /etc the test made) is bind-mounted over /etc: the
    /// accounts and files the agent changes there are the test's alone.
    pub fn start_over_etc(policy: &str, etc: &Path) -> Agent {
        let etc = etc.to_str().expect("a UTF-8 path");
        Self::start_wrapped(
            policy,
            &[],
            &[
                "/usr/bin/unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                "mount --bind \"$0\" /etc && exec \"$@\"",
                etc,
            ],
        )
    }

    /// As [`Agent::with_policy`], with the release build (for tests that
    /// push gigabytes through it).
    pub fn start_release(policy: &str, extra: &[&str]) -> Agent {
        let broker = release_bin_dir().join("qga-warden");
        Self::start_command(&broker, policy, extra, None, |_| {})
    }

    /// As [`Agent::with_policy`], letting the caller adjust the command first.
    pub fn start_with(policy: &str, extra: &[&str], adjust: impl FnOnce(&mut Command)) -> Agent {
        Self::start_command(&broker_bin(), policy, extra, None, adjust)
    }

    fn start_command(
        broker: &Path,
        policy: &str,
        extra: &[&str],
        wrapper: Option<&[String]>,
        adjust: impl FnOnce(&mut Command),
    ) -> Agent {
        // An audit file in this machine's /var/log would outlive the test
        // (and make the packaging check's purge look like it removed more
        // than it installed): tests keep their files in their own dirs.
        // (Policies that do not parse are tests of the error.)
        if let Ok(p) = policy::parse(policy, "test") {
            let file = p.audit.file.unwrap_or_default();
            assert!(!file.starts_with("/var/log"), "a test's audit file in /var/log: {file:?}");
        }
        let dir = TempDir::new("agent");
        let socket = dir.path().join("qga.sock");
        let log = dir.path().join("agent.log");
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, policy).expect("write policy");
        let logfile = std::fs::File::create(&log).expect("create log");
        let mut cmd = match wrapper {
            Some([program, args @ ..]) => {
                let mut c = Command::new(program);
                c.args(args).arg(broker);
                c
            }
            _ => Command::new(broker),
        };
        cmd.args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-v")
            .arg("--policy")
            .arg(&policy_file)
            .args(extra)
            .env("QGA_CONF", dir.path().join("no-such.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logfile));
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn qga-warden");
        let mut agent =
            Agent { child: Some(child), allow_frontend_deaths: false, dir, socket, log };
        // A frontend that ends at once (hostile.rs starts such) may be gone
        // again by the time we look: that it was started is enough.
        agent.wait_for(
            |a| {
                a.socket.exists()
                    && (a.frontend_pid().is_some() || a.log_text().contains("started frontend"))
            },
            "agent start",
        );
        agent
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits (bounded) until `cond` holds; panics with the agent's log if not.
    pub fn wait_for(&mut self, cond: impl Fn(&Agent) -> bool, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond(self) {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("agent exited ({status}) during {what}\n{}", self.log_text());
                }
            }
            assert!(Instant::now() < deadline, "timed out: {what}\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit records the agent wrote to standard error so far (its JSON
    /// lines; log lines start with a timestamp instead).
    pub fn audit_lines(&self) -> Vec<String> {
        self.log_text().lines().filter(|l| l.starts_with('{')).map(str::to_owned).collect()
    }

    /// The pids of the broker's children (the frontend, normally one).
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    pub fn frontend_pid(&self) -> Option<u32> {
        self.children().into_iter().find(|&p| {
            std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|exe| {
                // The real frontend, or the compromised one of hostile.rs.
                exe.file_name().is_some_and(|n| n == "qga-warden-frontend" || n == "evil-frontend")
            })
        })
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        wait_bounded(&mut child, TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("agent did not exit on SIGTERM\n{}", self.log_text())
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // The whole suite runs with the frontend confined: a system call
        // missing from its allowlist shows up here as a seccomp kill.
        if !std::thread::panicking() && !self.allow_frontend_deaths {
            let log = self.log_text();
            assert!(
                !log.contains("killed by SIGSYS"),
                "the frontend was killed by seccomp:\n{log}"
            );
        }
        if let Some(mut child) = self.child.take() {
            let frontends = children_of(child.id());
            let _ = child.kill();
            let _ = child.wait();
            for p in frontends {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log_text());
        }
    }
}

/// Waits for `child` at most `limit`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid ...: comm may hold spaces; split after ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A host-side connection.
pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect to agent");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Client { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to agent");
    }

    /// Reads one reply line (up to and including '\n'), bounded by `TIMEOUT`.
    pub fn line(&mut self) -> Vec<u8> {
        self.line_within(TIMEOUT).expect("a reply line within the timeout")
    }

    /// Reads one line if it arrives within `limit`.
    pub fn line_within(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + limit;
        // Bytes already known to hold no newline (a long reply arrives in
        // many reads; each is searched once).
        let mut searched = 0;
        loop {
            if let Some(pos) = self.buf[searched..].iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=searched + pos).collect());
            }
            searched = self.buf.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).ok()?;
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    return None;
                }
                Err(e) => panic!("reading from agent: {e}"),
            }
        }
    }

    /// Reads one reply line as text.
    pub fn text(&mut self) -> String {
        String::from_utf8(self.line()).expect("reply is UTF-8")
    }

    /// Sends `request` and returns the reply line without its newline.
    pub fn call(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        self.text().trim_end_matches('\n').to_owned()
    }

    /// Asserts that nothing arrives within `limit`.
    pub fn expect_silence(&mut self, limit: Duration) {
        if let Some(line) = self.line_within(limit) {
            panic!("unexpected reply: {:?}", String::from_utf8_lossy(&line));
        }
    }

    /// Resynchronises as qemu-ga's documentation says a host should: 0xFF,
    /// then guest-sync-delimited, then skip to the 0xFF in the reply stream.
    /// Returns false if no delimited reply came within `limit`.
    pub fn resync(&mut self, id: i64, limit: Duration) -> bool {
        let mut msg = vec![0xFF];
        msg.extend_from_slice(
            format!(r#"{{"execute":"guest-sync-delimited","arguments":{{"id":{id}}}}}"#).as_bytes(),
        );
        if self.stream.write_all(&msg).is_err() {
            return false;
        }
        let want = format!("{{\"return\": {id}}}\n");
        let deadline = Instant::now() + limit;
        while let Some(line) = self.line_within(deadline.saturating_duration_since(Instant::now()))
        {
            if let Some(pos) = line.iter().position(|&b| b == 0xFF) {
                if line[pos + 1..] == *want.as_bytes() {
                    return true;
                }
            }
        }
        false
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
