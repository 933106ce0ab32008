//! The two processes: start-up, supervision, the command line, shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use qga_warden_tests::{Agent, TIMEOUT, TempDir, broker_bin, wait_bounded};

#[test]
fn two_processes_broker_and_frontend() {
    let agent = Agent::start(&[]);
    let children = agent.children();
    assert_eq!(children.len(), 1, "broker children: {children:?}");
    let fe = agent.frontend_pid().expect("frontend");
    let fe_fds: Vec<String> = std::fs::read_dir(format!("/proc/{fe}/fd"))
        .expect("fd dir")
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    // stdin (IPC), stdout (/dev/null), stderr (log pipe), the SIGIO signalfd,
    // and the host connection once one exists: nothing else was inherited.
    assert!(fe_fds.len() <= 5, "frontend descriptors: {fe_fds:?}");
    let env = std::fs::read(format!("/proc/{fe}/environ")).expect("environ");
    assert!(env.is_empty(), "frontend environment is not empty");
}

#[test]
fn a_killed_frontend_is_restarted_and_the_host_resyncs() {
    let mut agent = Agent::start(&[]);
    agent.allow_frontend_deaths = true;
    let mut c = agent.connect();
    assert_eq!(c.call(r#"{"execute":"guest-ping","id":1}"#), r#"{"return": {}, "id": 1}"#);
    let old = agent.frontend_pid().expect("frontend");
    // Mid-request: half a request is in the frontend when it dies.
    c.send(br#"{"execute":"guest-sync","arguments":"#);
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill frontend");
    agent.wait_for(|a| a.frontend_pid().is_some_and(|p| p != old), "frontend restart");
    // The host connection survived (the broker holds it); the host resyncs.
    assert!(c.resync(77, TIMEOUT), "no resync after the frontend restart");
    assert_eq!(c.call(r#"{"execute":"guest-ping","id":2}"#), r#"{"return": {}, "id": 2}"#);
    let log = agent.log_text();
    assert!(log.contains("was killed by SIGKILL"), "{log}");
    assert!(log.contains("restarting the frontend"), "{log}");
    assert_eq!(agent.children().len(), 1);
}

#[test]
fn repeated_frontend_deaths_back_off() {
    let mut agent = Agent::start(&[]);
    agent.allow_frontend_deaths = true;
    let mut last = agent.frontend_pid().expect("frontend");
    for _ in 0..4 {
        kill(Pid::from_raw(last as i32), Signal::SIGKILL).expect("kill");
        agent.wait_for(|a| a.frontend_pid().is_some_and(|p| p != last), "restart");
        last = agent.frontend_pid().expect("frontend");
    }
    let log = agent.log_text();
    assert!(log.contains("restarting the frontend in 800 ms"), "{log}");
    let mut c = agent.connect();
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
}

#[test]
fn sigterm_stops_cleanly() {
    let mut agent = Agent::start(&[]);
    let fe = agent.frontend_pid().expect("frontend");
    let status = agent.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(!agent.socket.exists(), "socket left behind");
    assert!(
        !std::path::Path::new(&format!("/proc/{fe}")).exists() || {
            // A zombie reaped by init would not be ours; the broker waits for it.
            std::fs::read_to_string(format!("/proc/{fe}/stat")).is_err()
        }
    );
}

fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(broker_bin())
        .args(args)
        .env("QGA_CONF", "/nonexistent/qga-warden-test.conf")
        .stdin(Stdio::null())
        .output()
        .expect("run qga-warden");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn command_line_errors_exit_1_with_a_message() {
    for (args, msg) in [
        (&["--bogus"][..], "unknown option '--bogus'"),
        (&["-m", "tcp"], "invalid method 'tcp'"),
        (&["-m", "unix-listen"], "needs a path"),
        (&["-m", "vsock-listen", "-p", "nope"], "invalid vsock address"),
        (&["-p"], "requires an argument"),
        (&["-t", "relative"], "must be an absolute path"),
        (&["-c", "/nonexistent/qga.conf"], "/nonexistent/qga.conf"),
    ] {
        let (code, _, err) = run_cli(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // A channel that cannot be opened.
    let (code, _, err) = run_cli(&["-m", "virtio-serial", "-p", "/nonexistent/port"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/port"), "{err}");
}

#[test]
fn version_help_dump_and_rpc_list() {
    let (code, out, _) = run_cli(&["-V"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("qga-warden "), "{out}");
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--method",
        "--path",
        "--logfile",
        "--pidfile",
        "--statedir",
        "--verbose",
        "--version",
        "--daemonize",
        "--config",
        "--dump-conf",
        "--help",
        "--block-rpcs",
    ] {
        assert!(out.contains(flag), "help lacks {flag}");
    }
    let (code, out, _) = run_cli(&["-b", "help"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), ipc::Command::ALL.len());
    assert_eq!(out.lines().next(), Some("guest-sync-delimited"));
    let (code, out, _) =
        run_cli(&["-D", "-m", "unix-listen", "-p", "/tmp/x.sock", "-b", "guest-exec"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("[general]\ndaemon=false\nmethod=unix-listen\npath=/tmp/x.sock\n"),
        "{out}"
    );
    assert!(out.contains("block-rpcs=guest-exec\n"), "{out}");
}

#[test]
fn config_file_is_read_and_the_command_line_overrides_it() {
    let dir = TempDir::new("conf");
    let sock = dir.path().join("from-conf.sock");
    let conf = dir.path().join("qemu-ga.conf");
    std::fs::write(
        &conf,
        format!(
            "[general]\nmethod=unix-listen\npath={}\nblock-rpcs=guest-ping\nverbose=true\n",
            sock.display()
        ),
    )
    .expect("write conf");
    let (code, out, err) =
        run_cli(&["-c", conf.to_str().expect("utf-8"), "-D", "-b", "guest-info"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("path={}\n", sock.display())), "{out}");
    assert!(out.contains("block-rpcs=guest-ping,guest-info\n"), "{out}");
    assert!(out.contains("verbose=true\n"), "{out}");

    // And it really serves from the configured path with the block list.
    let mut child = Command::new(broker_bin())
        .args(["-c", conf.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = qga_warden_tests::Client::connect(&sock);
    let reply = c.call(r#"{"execute":"guest-ping"}"#);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        reply,
        r#"{"error": {"class": "CommandNotFound", "desc": "Command guest-ping has been disabled"}}"#
    );
}

#[test]
fn runs_unprivileged_without_a_config_file() {
    if !nix::unistd::Uid::effective().is_root() {
        // Already unprivileged: every other test covers this case.
        return;
    }
    let Ok(setpriv) = which("setpriv") else {
        eprintln!("skipped: setpriv not found");
        return;
    };
    // The binaries must be reachable by nobody: copy them somewhere world-readable.
    let dir = TempDir::new("nobody");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    for bin in ["qga-warden", "qga-warden-frontend"] {
        std::fs::copy(qga_warden_tests::bin_dir().join(bin), dir.path().join(bin)).expect("copy");
    }
    let sock = dir.path().join("qga.sock");
    let mut child = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(dir.path().join("qga-warden"))
        .args(["-m", "unix-listen", "-p"])
        .arg(&sock)
        .env("QGA_CONF", "/nonexistent/qga-warden-test.conf")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn as nobody");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !sock.exists() && std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("agent exited as nobody: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = qga_warden_tests::Client::connect(&sock);
    let reply = c.call(r#"{"execute":"guest-ping"}"#);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("term");
    let status = wait_bounded(&mut child, TIMEOUT).expect("exit");
    assert_eq!(reply, r#"{"return": {}}"#);
    assert!(status.success());
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .ok_or(())
}

/// Under systemd (standard error is the journal's stream, named by
/// `JOURNAL_STREAM`), every line the broker writes carries its syslog
/// priority, audit records included; with the variable naming another
/// stream, none does.
#[test]
fn journal_lines_carry_their_priorities() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("journal");
    for (journal, name) in [(true, "journal.log"), (false, "other.log")] {
        let path = dir.path().join(name);
        let file = std::fs::File::create(&path).expect("create");
        let meta = file.metadata().expect("meta");
        let stream = match journal {
            true => format!("{}:{}", meta.dev(), meta.ino()),
            false => format!("{}:{}", meta.dev(), meta.ino() + 1),
        };
        let mut agent = Agent::start_with(policy::DEFAULT_POLICY, &[], move |cmd| {
            cmd.stderr(file).env("JOURNAL_STREAM", stream);
        });
        let mut c = agent.connect();
        assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
        c.call(r#"{"execute":"guest-exec","arguments":{"path":"/bin/true"}}"#);
        assert!(agent.terminate().success());
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 5, "{text}");
        if !journal {
            assert!(lines.iter().all(|l| !l.starts_with('<')), "{text}");
            continue;
        }
        for l in &lines {
            let p = l.strip_prefix('<').and_then(|r| r.split_once('>')).map(|(p, _)| p);
            assert!(matches!(p, Some("3" | "4" | "5" | "6" | "7")), "no priority: {l}");
        }
        let has = |prefix: &str, what: &str| {
            lines.iter().any(|l| l.starts_with(prefix) && l.contains(what))
        };
        assert!(has("<6>info: ", "started"), "{text}");
        assert!(has("<7>debug: ", ""), "-v lines are debug: {text}");
        assert!(has("<5>{", "\"command\":\"guest-ping\""), "{text}");
        assert!(has("<4>{", "\"decision\":\"deny\""), "a denial is a warning: {text}");
        assert!(has("<5>{", "\"event\":\"stop\""), "{text}");
    }
}
