//! The frontend's confinement: the real sandbox-entry code, entered by a test
//! helper (`sandbox-probe`), then one forbidden action per run. With every
//! layer, seccomp kills the process (SIGSYS); with seccomp left out, Landlock
//! and the dropped identity still refuse (EACCES/EPERM); a panic ends as
//! SIGABRT; the argument conditions of the filter are shown to matter.
//! Security tests in the Firecracker style: they expect the kill.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

use qga_warden_tests::{Agent, TIMEOUT, TempDir, probe_bin, wait_bounded};

const SIGSYS: i32 = 31;
const SIGABRT: i32 = 6;
const EACCES: i32 = 13;
const EPERM: i32 = 1;
const EBADF: i32 = 9;

fn probe(layers: &str, action: &str, arg: &str) -> ExitStatus {
    let mut child = Command::new(probe_bin())
        .args([layers, action, arg])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn probe");
    wait_bounded(&mut child, TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("probe {layers} {action} did not finish")
    })
}

fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => "?".into(),
    }
}

#[test]
fn every_forbidden_action_is_killed_by_seccomp() {
    let dir = TempDir::new("probe");
    let new_file = dir.path().join("new");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port().to_string();
    let cases = [
        ("open-passwd", ""),
        ("create-file", new_file.to_str().expect("utf-8")),
        ("execve", ""),
        ("socket-inet", ""),
        ("socket-unix", ""),
        ("connect-tcp", port.as_str()),
        ("connect-abstract", "qga-warden-probe"),
        ("ptrace", ""),
        ("mount", ""),
        ("setuid0", ""),
        ("kill-parent", ""),
        ("mmap-exec", ""),
        ("fcntl-setfl", ""),
    ];
    for (action, arg) in cases {
        let s = probe("all", action, arg);
        assert_eq!(s.signal(), Some(SIGSYS), "{action}: {}", describe(s));
    }
    assert!(!new_file.exists());
}

#[test]
fn the_sandbox_itself_and_exit_are_allowed() {
    let s = probe("all", "nothing", "");
    assert_eq!(s.code(), Some(0), "{}", describe(s));
}

#[test]
fn descriptors_it_was_not_given_cannot_be_written() {
    let s = probe("all", "write-unowned", "");
    assert_eq!(s.code(), Some(EBADF), "{}", describe(s));
}

#[test]
fn a_panic_inside_the_sandbox_is_an_abort_not_a_seccomp_kill() {
    for layers in ["all", "weak-seccomp"] {
        let s = probe(layers, "panic", "");
        assert_eq!(s.signal(), Some(SIGABRT), "{layers}: {}", describe(s));
    }
}

/// Landlock ABI of this kernel, from the system call the landlock crate uses
/// (read through the probe's own report would need a frontend; the kernel
/// version is enough to decide what to expect).
fn landlock_abi() -> u32 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if !lsm.contains("landlock") {
        return 0;
    }
    match (major, minor) {
        (m, _) if m > 6 => 6,
        (6, n) if n >= 12 => 6,
        (6, n) if n >= 7 => 4,
        (6, n) if n >= 2 => 3,
        (5, n) if n >= 19 => 2,
        (5, n) if n >= 13 => 1,
        (6, _) => 2,
        _ => 0,
    }
}

#[test]
fn without_seccomp_landlock_and_the_identity_still_refuse() {
    let abi = landlock_abi();
    let root = nix::unistd::Uid::effective().is_root();
    let dir = TempDir::new("probe");
    let new_file = dir.path().join("new");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port().to_string();
    let abstract_addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            b"qga-warden-probe-ll",
        )
        .expect("abstract address");
    let abstract_listener =
        std::os::unix::net::UnixListener::bind_addr(&abstract_addr).expect("abstract listener");

    let mut expect: Vec<(&str, &str, i32)> = Vec::new();
    if abi >= 1 {
        expect.push(("open-passwd", "", EACCES));
        expect.push(("create-file", new_file.to_str().expect("utf-8"), EACCES));
        expect.push(("execve", "", EACCES));
    }
    if abi >= 4 {
        expect.push(("connect-tcp", port.as_str(), EACCES));
    }
    if abi >= 6 {
        expect.push(("connect-abstract", "qga-warden-probe-ll", EPERM));
        expect.push(("kill-parent", "", EPERM));
    }
    expect.push(("setuid0", "", EPERM));
    expect.push(("mount", "", EPERM));
    expect.push(("ptrace", "", EPERM));
    if root {
        // Dropped to nobody: signalling the (root) test process is refused too.
        expect.push(("kill-parent", "", EPERM));
    }
    for (action, arg, errno) in expect {
        let s = probe("no-seccomp", action, arg);
        assert_eq!(s.code(), Some(errno), "{action} (Landlock ABI {abi}): {}", describe(s));
    }
    drop(abstract_listener);
    assert!(!new_file.exists());
    if abi == 0 {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED (part): this kernel has no Landlock; only the identity checks ran\n",
        );
    }
}

#[test]
fn the_argument_conditions_have_teeth() {
    // The same calls, allowed by the filter without its argument conditions,
    // killed by the real one.
    for action in ["mmap-exec", "fcntl-setfl"] {
        let weak = probe("weak-seccomp", action, "");
        assert_eq!(weak.code(), Some(0), "{action} under the weak filter: {}", describe(weak));
        let strict = probe("all", action, "");
        assert_eq!(strict.signal(), Some(SIGSYS), "{action} under ours: {}", describe(strict));
    }
}

fn status_fields(pid: u32) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_owned(), v.trim().to_owned())))
        .collect()
}

#[test]
fn the_running_frontend_is_confined_and_the_broker_keeps_little() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    let fe = status_fields(agent.frontend_pid().expect("frontend"));
    assert_eq!(fe["NoNewPrivs"], "1");
    assert_eq!(fe["Seccomp"], "2");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(fe[cap], "0000000000000000", "{cap}");
    }
    let log = agent.log_text();
    assert!(log.contains("confined: uid"), "{log}");
    if nix::unistd::Uid::effective().is_root() {
        assert_eq!(fe["CapBnd"], "0000000000000000");
        let uid = fe["Uid"].split_whitespace().next().expect("uid");
        assert_ne!(uid, "0", "frontend runs as root");
        assert!(fe["Uid"].split_whitespace().all(|u| u == uid), "uids differ: {}", fe["Uid"]);
        assert_eq!(fe["Groups"], "");
        // The broker, with the built-in policy (every command but exec and
        // files): CAP_KILL; fsfreeze and fstrim: CAP_SYS_ADMIN and
        // CAP_DAC_READ_SEARCH; passwords: CAP_CHOWN, CAP_DAC_OVERRIDE,
        // CAP_FOWNER, CAP_AUDIT_WRITE; the clock: CAP_SYS_TIME; power:
        // CAP_SYS_BOOT; SSH keys (a child takes the account's identity):
        // CAP_SETUID, CAP_SETGID. In the bounding set also what the
        // frontend needs to drop its own privileges.
        let br = status_fields(agent.pid());
        let kept = (1u64 << 0) // chown
            | (1 << 1) // dac_override
            | (1 << 2) // dac_read_search
            | (1 << 3) // fowner
            | (1 << 5) // kill
            | (1 << 6) // setgid
            | (1 << 7) // setuid
            | (1 << 21) // sys_admin
            | (1 << 22) // sys_boot
            | (1 << 25) // sys_time
            | (1 << 29); // audit_write
        let bounding = kept | (1 << 8); // setpcap
        assert_eq!(br["CapEff"], format!("{kept:016x}"), "broker effective");
        assert_eq!(br["CapPrm"], format!("{kept:016x}"), "broker permitted");
        assert_eq!(br["CapBnd"], format!("{bounding:016x}"), "broker bounding");
        assert_eq!(br["CapInh"], "0000000000000000");
        assert_eq!(br["CapAmb"], "0000000000000000");
    }
}

#[test]
fn a_named_frontend_user_that_does_not_exist_stops_start_up() {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let dir = TempDir::new("user");
    let out = Command::new(qga_warden_tests::broker_bin())
        .args(["-m", "unix-listen", "-p"])
        .arg(dir.path().join("s"))
        .args(["--frontend-user", "no-such-user-qgaw"])
        .env("QGA_CONF", "/nonexistent/x.conf")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user-qgaw"));
}

#[test]
fn require_landlock_serves_when_the_kernel_enforces_it_all() {
    if landlock_abi() < 6 {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: Landlock ABI 6 not available; --require-landlock is tested in the VM\n",
        );
        return;
    }
    let agent = Agent::start(&["--require-landlock"]);
    let mut c = agent.connect();
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
}

#[test]
fn a_frontend_that_cannot_confine_itself_stops_the_agent() {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    // A wrapper that drops the account arguments: the frontend then finds
    // itself root with nobody to become, refuses, and the broker stops
    // instead of serving unconfined or restarting it forever.
    let dir = TempDir::new("unconfinable");
    let wrapper = dir.path().join("frontend-wrapper");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {}\n", qga_warden_tests::frontend_bin().display()),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut child = Command::new(qga_warden_tests::broker_bin())
        .args(["-m", "unix-listen", "-p"])
        .arg(dir.path().join("s"))
        .arg("--frontend")
        .arg(&wrapper)
        .env("QGA_CONF", "/nonexistent/x.conf")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_bounded(&mut child, TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the agent kept running with a frontend that cannot confine itself")
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("no account to drop to"), "{err}");
    assert!(err.contains("cannot confine itself"), "{err}");
}
