//! Side by side with Debian's qemu-ga (the reference implementation), in
//! unix-socket mode and only with commands that are safe on this machine:
//! the same bytes in, the same bytes out, except where qga-warden deviates on
//! purpose (each listed below with the reason). Skipped, saying so, where
//! qemu-ga is not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qga_warden_tests::{Agent, Client, TIMEOUT, TempDir};

const QEMU_GA: &str = "/usr/sbin/qemu-ga";
const PERMISSIVE: &str = include_str!("../../examples/policy-permissive.toml");

struct Reference {
    child: Child,
    socket: PathBuf,
    _dir: TempDir,
}

impl Reference {
    fn start() -> Option<Reference> {
        if !Path::new(QEMU_GA).exists() {
            eprintln!("skipped: {QEMU_GA} not installed (apt-get install qemu-guest-agent)");
            return None;
        }
        let dir = TempDir::new("qemu-ga");
        let socket = dir.path().join("ref.sock");
        let child = Command::new(QEMU_GA)
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(dir.path())
            .arg("-f")
            .arg(dir.path().join("qemu-ga.pid"))
            .env("QGA_CONF", dir.path().join("none.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qemu-ga");
        let deadline = Instant::now() + TIMEOUT;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "qemu-ga did not create its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Reference { child, socket, _dir: dir })
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The replies to `input`: everything before the reply to a `guest-sync`
/// sent right after it.
fn exchange(c: &mut Client, input: &[u8]) -> Vec<u8> {
    const SENTINEL: &[u8] = br#"{"execute":"guest-sync","arguments":{"id":987654321}}"#;
    c.send(input);
    c.send(SENTINEL);
    let mut out = Vec::new();
    loop {
        let line = c.line();
        if line == b"{\"return\": 987654321}\n" {
            return out;
        }
        out.extend(line);
    }
}

/// Inputs whose replies must be byte-for-byte identical.
const SAME: &[&[u8]] = &[
    br#"{"execute":"guest-ping"}"#,
    br#"{"execute":"guest-ping","id":"abc"}"#,
    br#"{"execute":"guest-ping","id":[1.5,0.1,1e2,-0,18446744073709551615,18446744073709551616,-1.5e-300,1e17,1e16,1e-7]}"#,
    br#"{"execute":"guest-ping","id":"\u00e9\ud83d\ude00\u0001/\"\\\b\f\n\r\t"}"#,
    br#"{"execute":"guest-ping","id":null}"#,
    br#"{"execute":"guest-ping","id":true}"#,
    b"{\"execute\":\"guest-ping\",\"id\":\"\xc0\x80\"}",
    br#"{"execute":"guest-sync","arguments":{"id":123}}"#,
    br#"{"execute":"guest-sync-delimited","arguments":{"id":125}}"#,
    br#"{"execute":"guest-sync-delimited","arguments":{"id":5},"id":"x"}"#,
    br#"{"execute":"guest-sync","arguments":{"id":-9223372036854775808}}"#,
    b"\xff",
    b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":9}}",
    b"{\"execute\":\"guest-pi\xff{\"execute\":\"guest-ping\"}",
    br#"{"execute":"guest-ping","id":1}{"execute":"guest-ping","id":2}"#,
    b"\n {\n\"execute\"\r\n:\t\"guest-ping\" } ",
    b"{'execute':'guest-ping'}",
    b"[1,2,3]",
    b"\"hello\"",
    b"{}",
    br#"{"id":1}"#,
    br#"{"execute":123}"#,
    br#"{"execute":"guest-ping","foo":1}"#,
    br#"{"execute":"guest-ping","arguments":[]}"#,
    br#"{"execute":"guest-ping","arguments":null}"#,
    br#"{"execute":"guest-sync","exec-oob":"x","arguments":{"id":1}}"#,
    br#"{"execute":"no-such-command"}"#,
    br#"{"execute":"nope","id":1}"#,
    br#"{"execute":"guest-sync"}"#,
    br#"{"execute":"guest-sync","arguments":{"id":1,"x":2}}"#,
    br#"{"execute":"guest-sync","arguments":{"x":1,"y":2}}"#,
    br#"{"execute":"guest-sync","arguments":{"id":"s"}}"#,
    br#"{"execute":"guest-sync","arguments":{"id":1.0}}"#,
    br#"{"execute":"guest-sync","arguments":{"id":null}}"#,
    br#"{"execute":"guest-sync","arguments":{"id":9223372036854775808}}"#,
    br#"{"execute":"guest-ping","arguments":{"a":1}}"#,
    b"{\"execute\":\"guest-ping\",\"id\":\"\xc3\x28\"}",
    b"{\"execute\":\"guest-ping\",\"id\":\"\xed\xa0\x80\"}",
    br#"{"execute":"guest-ping","id":"a","id":"b"}"#,
    br#"{"execute":"guest-ping",}"#,
    br#"{"execute" "guest-ping"}"#,
    b"{1:2}",
    br#"{"a":}"#,
    b"[1 2]",
    b"[1,]",
    br#"{"execute":"guest-ping","id":nul}"#,
    br#"{"execute":"guest-ping","id":"\x"}"#,
    br#"{"execute":"guest-ping","id":"\ud800"}"#,
    b"}",
    b"]",
    b"\x01",
    br#"{"execute":"guest-shutdown","arguments":{"mode":"bad"}}"#,
    br#"{"execute":"guest-shutdown","arguments":{"mode":5}}"#,
    br#"{"execute":"guest-exec","arguments":{"path":1}}"#,
    br#"{"execute":"guest-exec","arguments":{"path":"/bin/true","arg":[1]}}"#,
    br#"{"execute":"guest-exec","arguments":{"path":"/bin/true","arg":"x"}}"#,
    br#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":"a"}]}}"#,
    br#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"online":true}]}}"#,
    br#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":true,"z":1}]}}"#,
    br#"{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":1.5,"online":true}]}}"#,
    br#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":null}}"#,
    br#"{"execute":"guest-set-time","arguments":{"time":null}}"#,
    br#"{"execute":"guest-set-time","arguments":{"time":1e3}}"#,
    br#"{"execute":"guest-file-open","arguments":{"path":"/nonexistent","mode":null}}"#,
    br#"{"execute":"guest-file-open","arguments":{"path":"/tmp/x","mode":"zz"}}"#,
    br#"{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":"bad"}}"#,
    br#"{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":1.5}}"#,
    br#"{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":null}}"#,
    br#"{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":[]}}"#,
    br#"{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0}}"#,
    br#"{"execute":"guest-file-read","arguments":{"handle":"1"}}"#,
    br#"{"execute":"guest-file-write","arguments":{"handle":1}}"#,
    br#"{"execute":"guest-exec-status","arguments":{}}"#,
    br#"{"execute":"guest-exec","arguments":{"path":"/bin/true","env":[1]}}"#,
    br#"{"execute":"guest-exec","arguments":{"path":"/bin/true","input-data":5}}"#,
    br#"{"execute":"guest-set-user-password","arguments":{"username":"x","password":"!!!","crypted":false}}"#,
    br#"{"execute":"guest-get-host-name"}"#,
    br#"{"execute":"guest-get-timezone"}"#,
    br#"{"execute":"guest-get-osinfo"}"#,
    br#"{"execute":"guest-get-users"}"#,
    br#"{"execute":"guest-get-devices"}"#,
    br#"{"execute":"guest-get-disks"}"#,
    br#"{"execute":"guest-get-users","arguments":{"x":1}}"#,
    br#"{"execute":"guest-ssh-get-authorized-keys","arguments":{}}"#,
    br#"{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"qgaw-no-such-user"}}"#,
    br##"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"qgaw-no-such-user","keys":["#x"]}}"##,
    br#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"qgaw-no-such-user","keys":[1]}}"#,
    br#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"u","keys":"k"}}"#,
    br#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"u","keys":[],"reset":"yes"}}"#,
    br#"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"qgaw-no-such-user","keys":["a\nb"]}}"#,
    br#"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"qgaw-no-such-user","keys":[]}}"#,
];

/// Deliberate differences: (input, qga-warden's reply, why).
const DIFFERENT: &[(&[u8], &[u8], &str)] = &[
    (
        b"\xff\xff\xff",
        b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n",
        "a run of garbage gets one error (qemu-ga: one per byte)",
    ),
    (
        br#"{"execute": guest-ping}"#,
        b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '-p'\"}}\n",
        "the error for the rest of the same garbage is not repeated",
    ),
    (
        br#"{"execute":"guest-exec","arguments":{"path":"/bin/true","capture-output":"yes"}}"#,
        b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'capture-output' does not accept value 'yes'\"}}\n",
        "capture-output is a boolean or a mode name since QEMU 8.0 (qemu-ga 7.2: boolean only)",
    ),
    (
        br#"{"execute":"guest-ping","id":1E400}"#,
        b"{\"return\": {}, \"id\": 1e999}\n",
        "valid JSON for an infinite double (qemu-ga writes `inf`)",
    ),
];

#[test]
fn same_replies_as_qemu_ga() {
    let Some(reference) = Reference::start() else {
        return;
    };
    // qemu-ga enables every command: compare with the permissive policy, so
    // that argument errors of guest-exec and guest-file-* are compared too.
    let agent = Agent::with_policy(PERMISSIVE, &[]);
    let mut theirs_c = Client::connect(&reference.socket);
    let mut ours_c = agent.connect();
    let mut mismatches = Vec::new();
    for input in SAME {
        let theirs = exchange(&mut theirs_c, input);
        let ours = exchange(&mut ours_c, input);
        assert!(!theirs.is_empty(), "qemu-ga did not answer {:?}", String::from_utf8_lossy(input));
        if theirs != ours {
            mismatches.push(format!(
                "input:    {}\nqemu-ga:  {}\nqga-warden: {}",
                String::from_utf8_lossy(input),
                String::from_utf8_lossy(&theirs),
                String::from_utf8_lossy(&ours)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn deliberate_differences_from_qemu_ga() {
    let reference = Reference::start();
    let mut theirs_c = reference.as_ref().map(|r| Client::connect(&r.socket));
    let agent = Agent::with_policy(PERMISSIVE, &[]);
    let mut ours_c = agent.connect();
    for (input, ours_expected, why) in DIFFERENT {
        let ours = exchange(&mut ours_c, input);
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(ours_expected), "{why}");
        if let Some(c) = &mut theirs_c {
            let theirs = exchange(c, input);
            assert_ne!(theirs, ours, "no longer a difference: {why}");
        }
    }
}

#[test]
fn guest_info_shape_matches_qemu_ga() {
    let Some(reference) = Reference::start() else {
        return;
    };
    let agent = Agent::start(&[]);
    let info = br#"{"execute":"guest-info"}"#;
    let theirs =
        String::from_utf8(exchange(&mut Client::connect(&reference.socket), info)).expect("utf-8");
    let ours = String::from_utf8(exchange(&mut agent.connect(), info)).expect("utf-8");
    // Every entry has qemu-ga's member order; each 2.5 command's
    // success-response agrees with qemu-ga's.
    let entries = |s: &str| -> Vec<(String, String)> {
        s.split("{\"enabled\": ")
            .skip(1)
            .map(|e| {
                let name = e.split("\"name\": \"").nth(1).and_then(|n| n.split('"').next());
                let sr = e.split("\"success-response\": ").nth(1).and_then(|n| n.split('}').next());
                (name.unwrap_or("").to_owned(), sr.unwrap_or("").to_owned())
            })
            .collect()
    };
    let theirs = entries(&theirs);
    let (known, newer): (Vec<_>, Vec<_>) =
        entries(&ours).into_iter().partition(|(n, _)| theirs.iter().any(|(t, _)| t == n));
    // Every command qemu-ga 7.2 has, in its order, with its success-response;
    // before them, what QEMU added later (newest first, as qemu-ga lists).
    assert_eq!(known, theirs);
    let newer: Vec<&str> = newer.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(newer, ["guest-network-get-route", "guest-get-load"]);
    assert!(ours.starts_with("{\"return\": {\"version\": \""));
    // KubeVirt calls an agent supported when these are listed as enabled.
    for name in [
        "guest-ping",
        "guest-get-time",
        "guest-info",
        "guest-shutdown",
        "guest-network-get-interfaces",
        "guest-get-fsinfo",
        "guest-get-host-name",
        "guest-get-users",
        "guest-get-timezone",
        "guest-get-osinfo",
        "guest-ssh-get-authorized-keys",
        "guest-ssh-add-authorized-keys",
        "guest-ssh-remove-authorized-keys",
    ] {
        let entry = format!("{{\"enabled\": true, \"name\": \"{name}\", ");
        assert!(ours.contains(&entry), "{name} is not enabled by default: {ours}");
    }
}

/// One step of a file or exec session, run against both agents. `{dir}` is
/// each agent's own scratch directory (replaced back in the replies), `{pid}`
/// the pid of the last guest-exec.
enum Step {
    /// Replies must be identical.
    Same(&'static str),
    /// A guest-exec whose pid is remembered.
    Exec(&'static str),
    /// guest-exec-status of the last pid, polled until it has exited; the
    /// final reply must be identical.
    WaitExited,
}

use Step::{Exec, Same, WaitExited};

const SESSION: &[Step] = &[
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/missing"}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/missing","mode":"r+"}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/f","mode":"w"}}"#),
    Same(
        r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"aGVsbG8gd29ybGQ="}}"#,
    ),
    Same(
        r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"aGk=","count":1}}"#,
    ),
    Same(
        r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"aGk=","count":3}}"#,
    ),
    Same(
        r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"aGk=","count":-1}}"#,
    ),
    Same(r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"!!!"}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1000}}"#),
    Same(r#"{"execute":"guest-file-flush","arguments":{"handle":1000}}"#),
    Same(r#"{"execute":"guest-file-close","arguments":{"handle":1000}}"#),
    Same(r#"{"execute":"guest-file-close","arguments":{"handle":1000}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1000}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/f","mode":"r"}}"#),
    Same(r#"{"execute":"guest-file-write","arguments":{"handle":1001,"buf-b64":"aGk="}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":5}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":0}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":7}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":7}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":-1}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":50331649}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1001,"offset":6,"whence":0}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":6}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001,"count":6}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1001,"offset":-2,"whence":2}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1001,"offset":-1,"whence":1}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1001}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1001,"offset":-100,"whence":0}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1001,"offset":0,"whence":3}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1001,"offset":0,"whence":"set"}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1001,"offset":0,"whence":"cur"}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/f","mode":"a"}}"#),
    Same(r#"{"execute":"guest-file-write","arguments":{"handle":1002,"buf-b64":"IQ=="}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1002}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/f","mode":"a+"}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1003}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/f","mode":"r+b"}}"#),
    Same(r#"{"execute":"guest-file-write","arguments":{"handle":1004,"buf-b64":"SA=="}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":1004,"offset":0,"whence":0}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1004,"count":100}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/f","mode":"w+"}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":1005}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/g","mode":"wb"}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/g","mode":"ab+"}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}","mode":"w"}}"#),
    Same(r#"{"execute":"guest-file-open","arguments":{"path":"{dir}/f","mode":"x"}}"#),
    Same(r#"{"execute":"guest-file-read","arguments":{"handle":999}}"#),
    Same(r#"{"execute":"guest-file-seek","arguments":{"handle":5,"offset":0,"whence":0}}"#),
    Same(r#"{"execute":"guest-file-flush","arguments":{"handle":-1}}"#),
    Same(r#"{"execute":"guest-exec","arguments":{"path":"{dir}/no-such-program"}}"#),
    Same(r#"{"execute":"guest-exec-status","arguments":{"pid":0}}"#),
    Same(r#"{"execute":"guest-exec-status","arguments":{"pid":-5}}"#),
    Exec(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/echo","arg":["a","b"],"capture-output":true}}"#,
    ),
    WaitExited,
    Same(r#"{"execute":"guest-exec-status","arguments":{"pid":{pid}}}"#),
    Exec(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","echo out; echo err >&2; exit 3"],"capture-output":true}}"#,
    ),
    WaitExited,
    Exec(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","echo out; exit 4"]}}"#,
    ),
    WaitExited,
    Exec(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/cat","input-data":"aW5wdXQK","capture-output":true}}"#,
    ),
    WaitExited,
    Exec(r#"{"execute":"guest-exec","arguments":{"path":"/bin/cat","input-data":"aW5wdXQK"}}"#),
    WaitExited,
    Exec(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","kill -TERM $$"],"capture-output":true}}"#,
    ),
    WaitExited,
    Exec(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","printf x; kill -KILL $$"],"capture-output":true}}"#,
    ),
    WaitExited,
    Exec(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","echo \"$A$B\""],"env":["A=1","B=2"],"capture-output":true}}"#,
    ),
    WaitExited,
    Same(r#"{"execute":"guest-exec","arguments":{"path":"/bin/true","input-data":"!!"}}"#),
];

/// Runs `SESSION` against one agent, returning the reply to each step.
fn run_session(c: &mut Client, dir: &Path) -> Vec<String> {
    let dir = dir.to_str().expect("utf-8 path");
    let mut pid = String::new();
    let mut replies = Vec::new();
    let call = |c: &mut Client, template: &str, pid: &str| {
        let request = template.replace("{dir}", dir).replace("{pid}", pid);
        c.call(&request).replace(dir, "{dir}")
    };
    for step in SESSION {
        let reply = match step {
            Same(t) => call(c, t, &pid),
            Exec(t) => {
                let reply = call(c, t, &pid);
                pid = reply
                    .strip_prefix(r#"{"return": {"pid": "#)
                    .and_then(|r| r.strip_suffix("}}"))
                    .unwrap_or_else(|| panic!("guest-exec: {reply}"))
                    .to_owned();
                "(pid)".into()
            }
            WaitExited => {
                let status = r#"{"execute":"guest-exec-status","arguments":{"pid":{pid}}}"#;
                let deadline = Instant::now() + TIMEOUT;
                loop {
                    let reply = call(c, status, &pid);
                    if !reply.contains(r#""exited": false"#) {
                        break reply;
                    }
                    assert!(Instant::now() < deadline, "pid {pid} did not exit");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        replies.push(reply);
    }
    replies
}

#[test]
fn file_and_exec_sessions_match_qemu_ga() {
    let Some(reference) = Reference::start() else {
        return;
    };
    let agent = Agent::with_policy(PERMISSIVE, &[]);
    let (theirs_dir, ours_dir) = (TempDir::new("ref-files"), TempDir::new("our-files"));
    let theirs = run_session(&mut Client::connect(&reference.socket), theirs_dir.path());
    let ours = run_session(&mut agent.connect(), ours_dir.path());
    let mut mismatches = Vec::new();
    for ((step, t), o) in SESSION.iter().zip(&theirs).zip(&ours) {
        if t != o {
            let request = match step {
                Same(r) | Exec(r) => r,
                WaitExited => "(guest-exec-status until exited)",
            };
            mismatches.push(format!("{request}\nqemu-ga:    {t}\nqga-warden: {o}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    // The files themselves end up the same.
    for name in ["f", "g"] {
        assert_eq!(
            std::fs::read(theirs_dir.path().join(name)).ok(),
            std::fs::read(ours_dir.path().join(name)).ok(),
            "{name}"
        );
    }
}

/// Removes every `"key": N, ` (a masked member that is not last).
fn drop_member(text: &str, key: &str) -> String {
    text.replace(&format!("\"{key}\": N, "), "")
}

/// Statistics replies: the same entries with the same members as qemu-ga;
/// the counters move between two calls.
#[test]
fn statistics_match_qemu_ga_in_shape() {
    let Some(reference) = Reference::start() else {
        return;
    };
    let agent = Agent::start(&[]);
    let digits = |s: &str| {
        let mut out = String::new();
        let mut last_digit = false;
        for c in s.chars() {
            let d = c.is_ascii_digit();
            if !(d && last_digit) {
                out.push(if d { 'N' } else { c });
            }
            last_digit = d;
        }
        out
    };
    for request in
        [&br#"{"execute":"guest-get-cpustats"}"#[..], br#"{"execute":"guest-get-diskstats"}"#]
    {
        let theirs = String::from_utf8(exchange(&mut Client::connect(&reference.socket), request))
            .expect("utf-8");
        let ours = String::from_utf8(exchange(&mut agent.connect(), request)).expect("utf-8");
        assert!(ours.starts_with("{\"return\": [{"), "{ours}");
        assert_eq!(digits(&ours), digits(&theirs));
    }
}

/// `"key": 123` → `"key": N`, for values that move between two calls.
fn mask_number(text: &str, key: &str) -> String {
    let needle = format!("\"{key}\": ");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        out.push_str(&rest[..at + needle.len()]);
        rest = rest[at + needle.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

#[test]
fn fsinfo_matches_qemu_ga_on_this_machine() {
    let Some(reference) = Reference::start() else {
        return;
    };
    let agent = Agent::with_policy(PERMISSIVE, &[]);
    let request = br#"{"execute":"guest-get-fsinfo"}"#;
    let theirs = String::from_utf8(exchange(&mut Client::connect(&reference.socket), request))
        .expect("utf-8");
    let ours = String::from_utf8(exchange(&mut agent.connect(), request)).expect("utf-8");
    // Space in use changes from one call to the next on a busy machine.
    let mask = |s: &str| mask_number(&mask_number(s, "used-bytes"), "total-bytes");
    // QEMU 9.2 added total-bytes-privileged; qemu-ga 7.2 does not have it.
    assert!(ours.contains("\"total-bytes-privileged\": "), "{ours}");
    let ours = drop_member(&mask_number(&ours, "total-bytes-privileged"), "total-bytes-privileged");
    assert_eq!(mask(&ours), mask(&theirs));
    assert!(ours.starts_with("{\"return\": ["), "{ours}");
}

#[test]
fn network_interfaces_match_qemu_ga() {
    let Some(reference) = Reference::start() else {
        return;
    };
    let agent = Agent::with_policy(PERMISSIVE, &[]);
    let request = br#"{"execute":"guest-network-get-interfaces"}"#;
    let theirs = String::from_utf8(exchange(&mut Client::connect(&reference.socket), request))
        .expect("utf-8");
    let ours = String::from_utf8(exchange(&mut agent.connect(), request)).expect("utf-8");
    // The counters move between the two calls.
    const COUNTERS: [&str; 8] = [
        "rx-bytes",
        "rx-packets",
        "rx-errs",
        "rx-dropped",
        "tx-bytes",
        "tx-packets",
        "tx-errs",
        "tx-dropped",
    ];
    let mask = |s: &str| COUNTERS.iter().fold(s.to_owned(), |text, key| mask_number(&text, key));
    assert_eq!(mask(&ours), mask(&theirs));
    assert!(ours.starts_with("{\"return\": ["), "{ours}");

    // Every interface and address that iproute2 lists is in our reply.
    let ip = match Command::new("ip").args(["-j", "addr"]).output() {
        Ok(out) if out.status.success() => out.stdout,
        other => {
            eprintln!("`ip -j addr` not checked: {other:?}");
            return;
        }
    };
    let reply: serde_json::Value = serde_json::from_str(&ours).expect("reply is JSON");
    let interfaces = reply["return"].as_array().expect("a list of interfaces");
    let find = |name: &str| {
        interfaces
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("interface {name} missing from {ours}"))
    };
    let links: serde_json::Value = serde_json::from_slice(&ip).expect("`ip -j addr` is JSON");
    for link in links.as_array().expect("a list of links") {
        let name = link["ifname"].as_str().expect("ifname");
        let interface = find(name);
        if matches!(link["link_type"].as_str(), Some("ether" | "loopback")) {
            assert_eq!(interface["hardware-address"], link["address"], "{name}");
        }
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let kind = match a["family"].as_str() {
                Some("inet") => "ipv4",
                Some("inet6") => "ipv6",
                _ => continue,
            };
            // getifaddrs names an IPv4 address by its label (eth0:1).
            let holder = find(a["label"].as_str().unwrap_or(name));
            let listed = holder["ip-addresses"].as_array().into_iter().flatten().any(|x| {
                x["ip-address"] == a["local"]
                    && x["ip-address-type"] == kind
                    && x["prefix"] == a["prefixlen"]
            });
            assert!(listed, "{name}: {a} missing from {holder}");
        }
    }
}
