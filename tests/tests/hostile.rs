//! A compromised frontend, and floods from a hostile host, through the real
//! broker. The compromised frontend is tests/src/bin/evil-frontend.rs,
//! started by the broker in place of the real one (through a wrapper script
//! given as `--frontend`), confined as the real one is: bad frames end it
//! and the broker serves the next frontend; requests outside the policy are
//! refused and recorded; a flood does not make the broker hold more than a
//! bound. The host-side floods check the memory of both processes and that
//! the next request is answered.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qga_warden_tests::{Agent, Client, TIMEOUT, TempDir, bin_dir, rss_kib};
use serde_json::Value;

/// The frontend the broker runs: a script that execs whichever program the
/// test has put in it.
struct Wrapper {
    _dir: TempDir,
    path: PathBuf,
}

impl Wrapper {
    fn new(program: &Path, args: &[&str]) -> Wrapper {
        let dir = TempDir::new("wrapper");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = dir.path().join("frontend");
        let w = Wrapper { _dir: dir, path };
        w.point_at(program, args);
        w
    }

    /// From the next frontend start on, runs `program args...`.
    fn point_at(&self, program: &Path, args: &[&str]) {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let text = format!("#!/bin/sh\nexec '{}' {} \"$@\"\n", program.display(), quoted.join(" "));
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write wrapper");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&tmp, &self.path).expect("rename wrapper");
    }
}

fn evil() -> PathBuf {
    bin_dir().join("evil-frontend")
}

fn real_frontend() -> PathBuf {
    bin_dir().join("qga-warden-frontend")
}

fn wait_log(agent: &Agent, text: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !agent.log_text().contains(text) {
        assert!(Instant::now() < deadline, "{text:?} not in the log:\n{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn records(agent: &Agent) -> Vec<Value> {
    agent.audit_lines().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

const POLICY: &str = "version = 1\n[commands]\ndefault = \"allow\"\n";

#[test]
fn bad_frames_end_the_frontend_and_the_next_one_serves() {
    for (scenario, logged) in [
        ("garbage", "sent an invalid frame"),
        ("oversized", "frame of 2147483647 bytes exceeds the limit"),
        ("data-frame", "data frame of 3 bytes where a message was expected"),
        ("truncated", "exited with status 0"),
    ] {
        let wrapper = Wrapper::new(&evil(), &[scenario]);
        let wrapper_s = wrapper.path.to_str().expect("utf-8").to_owned();
        let mut agent = Agent::with_policy(POLICY, &["--frontend", &wrapper_s]);
        agent.allow_frontend_deaths = true;
        let broker = agent.pid();
        wait_log(&agent, &format!("EVIL confined, scenario {scenario}"));
        wait_log(&agent, logged);
        // Recorded, and replaced: by the real frontend from now on.
        assert!(
            records(&agent).iter().any(|r| r["event"] == "frontend-exit"),
            "{scenario}: no frontend-exit record"
        );
        wrapper.point_at(&real_frontend(), &[]);
        agent.wait_for(
            |a| {
                a.log_text().contains("frontend[")
                    && a.log_text().contains("connected to the broker")
            },
            "the real frontend",
        );
        let mut c = agent.connect();
        assert!(c.resync(9, TIMEOUT), "{scenario}: no service after the bad frontend");
        assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
        assert_eq!(agent.pid(), broker);
    }
}

#[test]
fn requests_outside_the_policy_from_a_compromised_frontend_are_refused_and_recorded() {
    let area = TempDir::new("hostile-area");
    std::os::unix::fs::symlink("/etc/passwd", area.path().join("link")).expect("symlink");
    let dir = area.path().to_str().expect("utf-8");
    let policy = format!(
        r#"version = 1
[commands]
default = "allow"
[exec]
[[exec.program]]
path = "/usr/bin/uptime"
args = []
[files]
[[files.rule]]
dir = "{dir}"
pattern = "**"
access = ["read"]
[password]
accounts = ["*"]
deny_accounts = ["root"]
[fsfreeze]
mountpoints = []
[fstrim]
mountpoints = []
[vcpus]
ids = [1]
[power]
modes = []
[time]
max_step_seconds = 60
"#
    );
    let wrapper = Wrapper::new(&evil(), &["hostile", dir]);
    let wrapper_s = wrapper.path.to_str().expect("utf-8").to_owned();
    let mut agent = Agent::with_policy(&policy, &["--frontend", &wrapper_s]);
    agent.allow_frontend_deaths = true;
    wait_log(&agent, "EVIL done");
    let log = agent.log_text();
    let replies: Vec<&str> = log.lines().filter_map(|l| l.split("EVIL reply ").nth(1)).collect();
    assert!(log.contains("EVIL done 21 of 21"), "{log}");
    assert_eq!(replies.len(), 21);
    for reply in &replies {
        assert!(reply.contains(": Err("), "allowed: {reply}");
    }
    // Each one is on the audit trail, refused or failed.
    let requests: Vec<Value> =
        records(&agent).into_iter().filter(|r| r["event"] == "request").collect();
    assert_eq!(requests.len(), 21, "{log}");
    assert!(requests.iter().all(|r| r["outcome"] == "error"));
    let denied = requests.iter().filter(|r| r["decision"] == "deny").count();
    // Programs, arguments, paths (.., NUL, outside, write access), root's
    // password, freezing /, halt, cpu0: 12; the rest fail in the operation
    // (unknown handles and pids, a symlink, a name too long, the clock step).
    assert_eq!(denied, 12);
    // Nothing was created or changed.
    assert!(!area.path().join("new").exists());
    // And the broker still serves a real frontend.
    wrapper.point_at(&real_frontend(), &[]);
    let old = agent.frontend_pid().expect("the evil frontend");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    agent.wait_for(|a| a.frontend_pid().is_some_and(|p| p != old), "a new frontend");
    let mut c = agent.connect();
    assert!(c.resync(3, TIMEOUT));
}

#[test]
fn a_flooding_frontend_cannot_make_the_broker_hold_much() {
    let wrapper = Wrapper::new(&evil(), &["flood"]);
    let wrapper_s = wrapper.path.to_str().expect("utf-8").to_owned();
    let mut agent = Agent::with_policy(POLICY, &["--frontend", &wrapper_s]);
    agent.allow_frontend_deaths = true;
    wait_log(&agent, "EVIL flooded");
    let broker_kib = rss_kib(agent.pid()).expect("broker rss");
    let log = agent.log_text();
    let flooded: usize = log
        .split("EVIL flooded ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("count");
    // The broker stopped reading: far fewer pings than could be sent, and
    // a bounded amount of memory.
    assert!(broker_kib < 32 * 1024, "the broker holds {broker_kib} KiB");
    wait_log(&agent, &format!("EVIL flood replies {flooded}"));
}

/// Makes the piece of a flood at an offset.
type Chunker = Box<dyn Fn(usize) -> Vec<u8>>;

/// Sends `total` bytes made by `chunk` (called with the offset) on a
/// connection, while a thread reads and counts what comes back; returns the
/// bytes read back and the peak resident memory of the agent's processes.
fn flood(agent: &Agent, total: usize, chunk: impl Fn(usize) -> Vec<u8>) -> (usize, u64) {
    use std::io::Read;
    let mut c = std::os::unix::net::UnixStream::connect(&agent.socket).expect("connect");
    let mut r = c.try_clone().expect("clone");
    r.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        let mut buf = vec![0u8; 65536];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return n,
                Ok(k) => n += k,
                Err(_) => return n,
            }
        }
    });
    let pids: Vec<u32> = std::iter::once(agent.pid()).chain(agent.frontend_pid()).collect();
    let mut peak = 0;
    let mut sent = 0;
    while sent < total {
        let piece = chunk(sent);
        c.write_all(&piece).expect("send");
        sent += piece.len();
        peak = peak.max(pids.iter().filter_map(|&p| rss_kib(p)).sum::<u64>());
    }
    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let back = reader.join().expect("reader");
    (back, peak)
}

#[test]
fn a_gibibyte_of_each_kind_of_garbage_costs_little_and_the_next_request_is_answered() {
    // The release build: a debug build takes minutes per gibibyte.
    let agent = Agent::start_release(policy::DEFAULT_POLICY, &[]);
    const GIB: usize = 1 << 30;
    let mib = |byte: u8| move |_: usize| vec![byte; 1 << 20];
    let cases: Vec<(&str, Chunker, usize)> = vec![
        ("0xFF bytes", Box::new(mib(0xFF)), GIB),
        (
            "random bytes",
            Box::new(|off: usize| {
                let mut x = (off as u64) | 1;
                (0..1 << 20)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            }),
            GIB,
        ),
        (
            "an unterminated string",
            Box::new(|off: usize| {
                if off == 0 {
                    let mut v = b"{\"execute\":\"".to_vec();
                    v.resize(1 << 20, b'a');
                    v
                } else {
                    vec![b'a'; 1 << 20]
                }
            }),
            GIB,
        ),
        ("deeply nested arrays", Box::new(mib(b'[')), GIB),
    ];
    for (what, chunk, total) in cases {
        let (back, peak_kib) = flood(&agent, total, chunk);
        // Not amplified: a few error lines at most.
        assert!(back < 64 * 1024, "{what}: {back} bytes of replies to {total}");
        // Bounded: the 64 MiB request limit and buffers, for both processes.
        assert!(peak_kib < 160 * 1024, "{what}: {peak_kib} KiB resident");
        // Nor into the log (the agent runs with -v).
        let log = std::fs::metadata(&agent.log).map(|m| m.len()).unwrap_or(0);
        assert!(log < 1 << 20, "{what}: the log grew to {log} bytes");
        // The next request, on a new connection, is answered.
        let mut c = Client::connect(&agent.socket);
        assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#, "after {what}");
    }
}

#[test]
fn a_frontend_killed_mid_command_loses_no_state() {
    let area = TempDir::new("faults");
    let data: Vec<u8> = (0..(16u32 << 20)).map(|i| (i % 251) as u8).collect();
    let file = area.path().join("big");
    std::fs::write(&file, &data).expect("write");
    let policy = format!(
        "version = 1\n[commands]\ndefault = \"allow\"\n[exec]\nrun_as = \"nobody\"\n[[exec.program]]\npath = \"/bin/sleep\"\nargs = [\"[0-9.]+\"]\n[files]\n[[files.rule]]\ndir = \"{}\"\npattern = \"**\"\naccess = [\"read\"]\n",
        area.path().display()
    );
    let mut agent = Agent::with_policy(&policy, &[]);
    agent.allow_frontend_deaths = true;
    let mut c = agent.connect();
    let exec =
        c.call(r#"{"execute":"guest-exec","arguments":{"path":"/bin/sleep","arg":["1.5"]}}"#);
    let pid: Value = serde_json::from_str(&exec).expect("json");
    let pid = pid["return"]["pid"].as_i64().expect("pid");
    let open = c.call(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{}"}}}}"#,
        file.display()
    ));
    let handle: Value = serde_json::from_str(&open).expect("json");
    let handle = handle["return"].as_i64().expect("handle");
    // A large read in flight when the frontend dies.
    c.send(
        format!(
            r#"{{"execute":"guest-file-read","arguments":{{"handle":{handle},"count":{}}}}}"#,
            16 << 20
        )
        .as_bytes(),
    );
    let old = agent.frontend_pid().expect("frontend");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    agent.wait_for(|a| a.frontend_pid().is_some_and(|p| p != old), "a new frontend");
    // The host resynchronises on the same connection and carries on.
    assert!(c.resync(11, TIMEOUT));
    let status = format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let s: Value = serde_json::from_str(&c.call(&status)).expect("json");
        if s["return"]["exited"] == true {
            assert_eq!(s["return"]["exitcode"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "the child was lost");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seek = format!(
        r#"{{"execute":"guest-file-seek","arguments":{{"handle":{handle},"offset":0,"whence":0}}}}"#
    );
    assert_eq!(c.call(&seek), r#"{"return": {"eof": false, "position": 0}}"#);
    let read =
        format!(r#"{{"execute":"guest-file-read","arguments":{{"handle":{handle},"count":5}}}}"#);
    assert_eq!(c.call(&read), r#"{"return": {"count": 5, "buf-b64": "AAECAwQ=", "eof": false}}"#);
    assert!(records(&agent).iter().any(|r| r["event"] == "frontend-exit"));
}
