//! guest-fsfreeze-*, guest-fstrim and guest-get-fsinfo through the real
//! binaries, on loop-mounted ext4, xfs and squashfs images each test makes for
//! itself (tests/src/scratch.rs). Every agent here runs with a policy whose
//! `[fsfreeze]` and `[fstrim]` mount points are exactly that test's scratch
//! mounts, so even `guest-fsfreeze-freeze` (all) cannot reach this
//! machine's own filesystems; and every scratch filesystem is thawed,
//! unmounted and detached when the test ends, pass or fail.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qga_warden_tests::scratch::ScratchFs;

/// A scratch filesystem, or return from the test (skipped, said so).
macro_rules! scratch {
    ($fstype:expr) => {
        match ScratchFs::new($fstype) {
            Some(fs) => fs,
            None => return,
        }
    };
}
use qga_warden_tests::{Agent, Client, TIMEOUT, TempDir, broker_bin};
use serde_json::Value;

fn json(reply: &str) -> Value {
    serde_json::from_str(reply).unwrap_or_else(|e| panic!("not JSON ({e}): {reply}"))
}

fn ret(reply: &str) -> Value {
    let v = json(reply);
    assert!(v.get("return").is_some(), "expected success: {reply}");
    v["return"].clone()
}

fn desc(reply: &str) -> String {
    json(reply)["error"]["desc"].as_str().unwrap_or_else(|| panic!("no error: {reply}")).to_owned()
}

/// A policy allowing everything, freezing and trimming only `mounts`, plus
/// `extra` lines in `[fsfreeze]`.
fn policy(mounts: &[&ScratchFs], extra: &str) -> String {
    let list: Vec<String> = mounts.iter().map(|m| format!("\"{}\"", m.dir())).collect();
    format!(
        "version = 1\n[commands]\ndefault = \"allow\"\n[fsfreeze]\nmountpoints = [{list}]\n{extra}\n[fstrim]\nmountpoints = [{list}]\n",
        list = list.join(", ")
    )
}

fn freeze_list(c: &mut Client, mounts: &[&str]) -> String {
    let list: Vec<String> = mounts.iter().map(|m| format!("\"{m}\"")).collect();
    c.call(&format!(
        r#"{{"execute":"guest-fsfreeze-freeze-list","arguments":{{"mountpoints":[{}]}}}}"#,
        list.join(",")
    ))
}

const STATUS: &str = r#"{"execute":"guest-fsfreeze-status"}"#;
const THAW: &str = r#"{"execute":"guest-fsfreeze-thaw"}"#;
const FREEZE: &str = r#"{"execute":"guest-fsfreeze-freeze"}"#;

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn freeze_list_status_and_thaw_on_ext4_and_xfs() {
    let (a, b) = (scratch!("ext4"), scratch!("xfs"));
    let agent = Agent::with_policy(&policy(&[&a, &b], ""), &[]);
    let mut c = agent.connect();
    assert_eq!(c.call(STATUS), r#"{"return": "thawed"}"#);
    assert_eq!(c.call(THAW), r#"{"return": 0}"#, "thaw when nothing is frozen");

    assert_eq!(freeze_list(&mut c, &[b.dir()]), r#"{"return": 1}"#);
    assert!(b.is_frozen() && !a.is_frozen());
    assert_eq!(c.call(STATUS), r#"{"return": "frozen"}"#);
    // A second freeze is refused as qemu-ga refuses it.
    assert_eq!(
        c.call(FREEZE),
        r#"{"error": {"class": "CommandNotFound", "desc": "Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state"}}"#
    );
    assert_eq!(c.call(THAW), r#"{"return": 1}"#);
    assert!(!b.is_frozen());
    assert_eq!(c.call(STATUS), r#"{"return": "thawed"}"#);

    // Freeze everything the policy allows: both, whatever else is mounted.
    assert_eq!(c.call(FREEZE), r#"{"return": 2}"#);
    assert!(a.is_frozen() && b.is_frozen());
    assert_eq!(c.call(THAW), r#"{"return": 2}"#);
    assert!(!a.is_frozen() && !b.is_frozen());
    assert_eq!(c.call(THAW), r#"{"return": 0}"#);
}

#[test]
fn a_device_mounted_twice_is_frozen_once() {
    let a = scratch!("ext4");
    let bind = TempDir::new("bind");
    let bind_dir = bind.path().to_str().expect("utf-8").to_owned();
    let status =
        Command::new("mount").args(["--bind", a.dir(), &bind_dir]).status().expect("mount --bind");
    assert!(status.success());
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(bind_dir.clone());
    let text = policy(&[&a], "").replace(
        &format!("mountpoints = [\"{}\"]\n\n", a.dir()),
        &format!("mountpoints = [\"{}\", \"{bind_dir}\"]\n\n", a.dir()),
    );
    let agent = Agent::with_policy(&text, &[]);
    let mut c = agent.connect();
    assert_eq!(c.call(FREEZE), r#"{"return": 1}"#);
    assert!(a.is_frozen());
    assert_eq!(c.call(THAW), r#"{"return": 1}"#);
    assert!(!a.is_frozen());
}

#[test]
fn only_the_allowed_commands_run_while_frozen() {
    let a = scratch!("ext4");
    let agent = Agent::with_policy(&policy(&[&a], ""), &[]);
    let mut c = agent.connect();
    assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    let disabled = |cmd: &str| {
        format!(
            r#"{{"error": {{"class": "CommandNotFound", "desc": "Command {cmd} has been disabled: the agent is in frozen state"}}}}"#
        )
    };
    for cmd in
        ["guest-get-time", "guest-file-open", "guest-exec", "guest-fstrim", "guest-get-fsinfo"]
    {
        // Refused before its arguments are looked at, as qemu-ga does.
        assert_eq!(
            c.call(&format!(r#"{{"execute":"{cmd}","arguments":{{"bogus":1}}}}"#)),
            disabled(cmd)
        );
    }
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    assert_eq!(c.call(r#"{"execute":"guest-sync","arguments":{"id":5}}"#), r#"{"return": 5}"#);
    let info = c.call(r#"{"execute":"guest-info"}"#);
    assert!(
        info.contains(r#"{"enabled": false, "name": "guest-get-time", "success-response": true}"#)
    );
    assert!(
        info.contains(
            r#"{"enabled": true, "name": "guest-fsfreeze-thaw", "success-response": true}"#
        )
    );
    // The state survives the frontend being killed and replaced.
    let mut agent = agent;
    agent.allow_frontend_deaths = true;
    let old = agent.frontend_pid().expect("frontend");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    agent.wait_for(|a| a.frontend_pid().is_some_and(|p| p != old), "a new frontend");
    // The broker kept the host's connection; the host resynchronises.
    assert!(c.resync(3, TIMEOUT));
    assert_eq!(c.call(STATUS), r#"{"return": "frozen"}"#);
    assert_eq!(c.call(r#"{"execute":"guest-get-time"}"#), disabled("guest-get-time"));
    assert_eq!(c.call(THAW), r#"{"return": 1}"#);
    assert!(ret(&c.call(r#"{"execute":"guest-get-time"}"#)).is_i64());
}

#[test]
fn a_failure_part_way_thaws_everything_first() {
    // squashfs cannot be frozen (no freeze_fs): mounted before the ext4
    // image, it is reached after the ext4 one is frozen.
    let bad = scratch!("squashfs");
    let good = scratch!("ext4");
    let agent = Agent::with_policy(&policy(&[&bad, &good], ""), &[]);
    let mut c = agent.connect();
    assert_eq!(
        desc(&freeze_list(&mut c, &[bad.dir(), good.dir()])),
        format!("'{}' is not a mounted filesystem that can be frozen", bad.dir())
    );
    assert!(!good.is_frozen());
    assert_eq!(c.call(STATUS), r#"{"return": "thawed"}"#);
    // Freezing everything skips what cannot be frozen, as qemu-ga does.
    assert_eq!(c.call(FREEZE), r#"{"return": 1}"#);
    assert_eq!(c.call(THAW), r#"{"return": 1}"#);
    // Unknown mount points: an error, and nothing frozen.
    let nowhere = format!("{}/sub", good.dir());
    assert_eq!(
        desc(&freeze_list(&mut c, &[good.dir(), &nowhere])),
        "denied by policy rule fsfreeze.mountpoints: a mount point may not be frozen"
    );
    assert!(!good.is_frozen());
    assert!(desc(&freeze_list(&mut c, &["/"])).starts_with("denied by policy rule"));
}

#[test]
fn an_unknown_mount_point_allowed_by_the_policy_is_an_error() {
    let a = scratch!("ext4");
    let text = format!(
        "version = 1\n[commands]\ndefault = \"allow\"\n[fsfreeze]\nmountpoints = [\"{}\", \"{}/**\"]\n",
        a.dir(),
        a.dir()
    );
    let agent = Agent::with_policy(&text, &[]);
    let mut c = agent.connect();
    let sub = format!("{}/not-a-mount", a.dir());
    assert_eq!(
        desc(&freeze_list(&mut c, &[a.dir(), &sub])),
        format!("'{sub}' is not a mounted filesystem that can be frozen")
    );
    assert!(!a.is_frozen());
}

fn hook(dir: &Path, script: &str) -> std::path::PathBuf {
    let path = dir.join("hook");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write hook");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn the_hook_runs_around_freeze_and_thaw_and_its_failure_stops_the_freeze() {
    let a = scratch!("ext4");
    let dir = TempDir::new("hook");
    let trace = dir.path().join("trace");
    let script = format!(
        "echo \"$1\" >> {t}; echo \"hook says $1\"; echo oops >&2\ncase \"$1:$(cat {f} 2>/dev/null)\" in freeze:fail) exit 3;; thaw:fail-thaw) exit 4;; esac\nexit 0",
        t = trace.display(),
        f = dir.path().join("mode").display()
    );
    let path = hook(dir.path(), &script);
    let flag = format!("-F{}", path.display());
    let agent = Agent::with_policy(&policy(&[&a], ""), &[&flag]);
    let mut c = agent.connect();
    assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    assert_eq!(c.call(THAW), r#"{"return": 1}"#);
    assert_eq!(std::fs::read_to_string(&trace).expect("trace"), "freeze\nthaw\n");
    // Its output is logged (after the thaw: nothing is logged while frozen).
    agent_log_contains(&agent, "fsfreeze hook stdout: hook says freeze");
    agent_log_contains(&agent, "fsfreeze hook stderr: oops");

    std::fs::write(dir.path().join("mode"), "fail").expect("mode");
    assert_eq!(desc(&freeze_list(&mut c, &[a.dir()])), "fsfreeze hook has failed with status 3");
    assert!(!a.is_frozen());
    assert_eq!(c.call(STATUS), r#"{"return": "thawed"}"#);

    std::fs::write(dir.path().join("mode"), "fail-thaw").expect("mode");
    assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    assert_eq!(desc(&c.call(THAW)), "fsfreeze hook has failed with status 4");
    assert!(!a.is_frozen(), "thawed even though the hook failed");
    assert_eq!(c.call(STATUS), r#"{"return": "thawed"}"#);

    // A hook that cannot be run: nothing frozen.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(
        desc(&freeze_list(&mut c, &[a.dir()])),
        format!("can't access fsfreeze hook '{}': Permission denied", path.display())
    );
    assert!(!a.is_frozen());
}

fn agent_log_contains(agent: &Agent, text: &str) {
    let log = agent.log_text();
    assert!(log.contains(text), "{text:?} not in the log:\n{log}");
}

#[test]
fn nothing_is_written_to_a_frozen_filesystem() {
    // The audit file and the log are on the filesystem being frozen: any
    // write while frozen would block the broker, and these requests would
    // not be answered.
    let a = scratch!("ext4");
    let audit = a.path().join("audit.log");
    let text = format!(
        "{}[audit]\nfile = \"{}\"\nsync = \"record\"\nstderr = false\n",
        policy(&[&a], ""),
        audit.display()
    );
    let log = a.path().join("agent.log");
    let log_s = log.to_str().expect("utf-8");
    let agent = Agent::with_policy(&text, &["-l", log_s]);
    let mut c = agent.connect();
    assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    let before = std::fs::read_to_string(&audit).expect("audit");
    for _ in 0..20 {
        assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
        assert_eq!(c.call(STATUS), r#"{"return": "frozen"}"#);
        c.call(r#"{"execute":"guest-get-time"}"#);
    }
    assert_eq!(std::fs::read_to_string(&audit).expect("audit"), before);
    assert_eq!(c.call(THAW), r#"{"return": 1}"#);
    // The held records arrive after the thaw, in order.
    wait_until("held audit records", || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.matches("\"guest-ping\"").count() == 20)
    });
    let text = std::fs::read_to_string(&audit).expect("audit");
    let freeze_at = text.find("guest-fsfreeze-freeze-list").expect("freeze record");
    let thaw_at = text.find("guest-fsfreeze-thaw").expect("thaw record");
    assert!(freeze_at < text.find("guest-ping").expect("ping") && thaw_at > freeze_at);
    wait_until("held log lines", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("thawed 1 filesystems"))
    });
}

#[test]
fn the_watchdog_thaws_and_records_it() {
    let a = scratch!("ext4");
    let agent = Agent::with_policy(&policy(&[&a], "max_frozen_seconds = 1"), &[]);
    let mut c = agent.connect();
    assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    wait_until("the watchdog thaw", || !a.is_frozen());
    assert_eq!(c.call(STATUS), r#"{"return": "thawed"}"#);
    assert!(ret(&c.call(r#"{"execute":"guest-get-time"}"#)).is_i64());
    let thaw = agent
        .audit_lines()
        .into_iter()
        .map(|l| json(&l))
        .find(|r| r["event"] == "thaw")
        .expect("a thaw record");
    assert_eq!(thaw["reason"], "no guest-fsfreeze-thaw within 1 s");
    assert_eq!(thaw["mountpoints"], serde_json::json!([a.dir()]));
    assert_eq!(thaw["thawed"], 1);
}

#[test]
fn sigterm_while_frozen_thaws_first() {
    let a = scratch!("ext4");
    let mut agent = Agent::with_policy(&policy(&[&a], ""), &[]);
    let mut c = agent.connect();
    assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    assert!(agent.terminate().success());
    assert!(!a.is_frozen());
    let log = agent.log_text();
    assert!(
        log.contains(r#""event":"thaw","reason":"the agent is stopping (signal SIGTERM)""#),
        "{log}"
    );
}

#[test]
fn the_host_leaving_thaws_when_the_policy_says_so() {
    let a = scratch!("ext4");
    let agent = Agent::with_policy(&policy(&[&a], "thaw_on_disconnect = true"), &[]);
    {
        let mut c = agent.connect();
        assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    }
    wait_until("the thaw on disconnect", || !a.is_frozen());
    // By default (as qemu-ga) a freeze outlives the connection.
    let agent = Agent::with_policy(&policy(&[&a], ""), &[]);
    {
        let mut c = agent.connect();
        assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    }
    let mut c = agent.connect();
    assert_eq!(c.call(STATUS), r#"{"return": "frozen"}"#);
    assert!(a.is_frozen());
    assert_eq!(c.call(THAW), r#"{"return": 1}"#);
}

#[test]
fn a_broker_that_dies_frozen_is_recovered_from() {
    let a = scratch!("ext4");
    let state = TempDir::new("state");
    let statedir = state.path().to_str().expect("utf-8");
    let text = policy(&[&a], "");
    {
        let mut agent = Agent::with_policy(&text, &["-t", statedir]);
        agent.allow_frontend_deaths = true;
        let mut c = agent.connect();
        assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
        // Killed outright: no chance to thaw (dropping the handle kills it).
    }
    assert!(a.is_frozen());
    // The next agent starts frozen, as qemu-ga does, and thaws on request.
    {
        let agent = Agent::with_policy(&text, &["-t", statedir]);
        let mut c = agent.connect();
        assert_eq!(c.call(STATUS), r#"{"return": "frozen"}"#);
        assert!(desc(&c.call(r#"{"execute":"guest-get-time"}"#)).contains("frozen state"));
        assert_eq!(c.call(THAW), r#"{"return": 1}"#);
        assert!(!a.is_frozen());
        // Recorded (once the thaw let the audit trail be written).
        let log = agent.log_text();
        assert!(log.contains(r#""event":"frozen-at-start""#), "{log}");
    }
    // `qga-warden thaw` (for ExecStopPost=) thaws what the state file names.
    {
        let agent = Agent::with_policy(&text, &["-t", statedir]);
        let mut c = agent.connect();
        assert_eq!(freeze_list(&mut c, &[a.dir()]), r#"{"return": 1}"#);
    }
    assert!(a.is_frozen());
    let out = Command::new(broker_bin()).args(["thaw", "-t", statedir]).output().expect("thaw");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("thawed {}\n1 filesystems thawed\n", a.dir())
    );
    assert!(!a.is_frozen());
    assert!(!state.path().join("qga-warden.frozen").exists());
    // Nothing recorded: nothing done.
    let out = Command::new(broker_bin()).args(["thaw", "-t", statedir]).output().expect("thaw");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0 filesystems thawed\n");
    // Named mount points.
    let status = Command::new("fsfreeze").args(["--freeze", a.dir()]).status().expect("fsfreeze");
    assert!(status.success());
    let out =
        Command::new(broker_bin()).args(["thaw", "-t", statedir, a.dir()]).output().expect("thaw");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("thawed {}", a.dir())));
    assert!(!a.is_frozen());
}

#[test]
fn fstrim_reports_each_allowed_mount() {
    let (a, b) = (scratch!("ext4"), scratch!("xfs"));
    let agent = Agent::with_policy(&policy(&[&a, &b], ""), &[]);
    let mut c = agent.connect();
    let r = ret(&c.call(r#"{"execute":"guest-fstrim","arguments":{"minimum":65536}}"#));
    let paths = r["paths"].as_array().expect("paths");
    // qemu-ga's order: the reverse of the mount table.
    let dirs: Vec<&str> = paths.iter().map(|p| p["path"].as_str().expect("path")).collect();
    assert_eq!(dirs, [b.dir(), a.dir()]);
    for p in paths {
        match &p["error"] {
            Value::Null => {
                assert!(p["trimmed"].as_i64().is_some_and(|t| t >= 0), "{p}");
                assert!(p["minimum"].as_i64().is_some_and(|m| m >= 65536 || m == 0), "{p}");
            }
            // Loop devices without discard support.
            e => assert_eq!(e, "trim not supported"),
        }
    }
    let r = ret(&c.call(r#"{"execute":"guest-fstrim"}"#));
    assert_eq!(r["paths"].as_array().map(Vec::len), Some(2));
}

#[test]
fn fsinfo_lists_the_scratch_filesystems() {
    let a = scratch!("ext4");
    let agent = Agent::with_policy(&policy(&[&a], ""), &[]);
    let mut c = agent.connect();
    let list = ret(&c.call(r#"{"execute":"guest-get-fsinfo"}"#));
    let fs = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|f| f["mountpoint"] == a.dir())
        .unwrap_or_else(|| panic!("{} not in {list}", a.dir()))
        .clone();
    let loop_name = a.device.trim_start_matches("/dev/");
    assert_eq!(fs["name"], loop_name);
    assert_eq!(fs["type"], "ext4");
    // A loop device is virtual, with no disk beneath it.
    assert_eq!(fs["disk"], serde_json::json!([]));
    let (used, total) = (fs["used-bytes"].as_u64(), fs["total-bytes"].as_u64());
    assert!(used.is_some_and(|u| u > 0) && total.is_some_and(|t| t > 10 << 20), "{fs}");
}
