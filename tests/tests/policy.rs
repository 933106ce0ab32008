//! The policy file and the audit trail, through the real binaries: every
//! rule kind denies with a named rule and allows what it should; the
//! command-line lists only narrow; a policy error stops start-up with its
//! location; every request leaves an audit record, checked field by field;
//! the operators' tools.

use std::process::{Command, Stdio};

use qga_warden_tests::{Agent, TempDir, broker_bin};
use serde_json::Value;

const OPS: &str = include_str!("../../examples/policy-operations.toml");

/// The operations example with its audit file in `dir` instead of this
/// machine's /var/log.
fn ops_in(dir: &TempDir) -> String {
    let example = "file = \"/var/log/qga-warden/audit.log\"";
    assert!(OPS.contains(example), "the example's audit file moved");
    OPS.replace(example, &format!("file = \"{}/audit.log\"", dir.path().display()))
}

fn generic(desc: &str) -> String {
    format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}")
}

fn disabled(cmd: &str) -> String {
    format!(
        "{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"Command {cmd} has been disabled\"}}}}"
    )
}

fn denied(rule: &str) -> String {
    generic(&format!("denied by policy rule {rule}"))
}

/// Allowed by the policy: whatever the operation then answers (a pid, a
/// handle, "not supported", an errno), it is not a policy refusal.
const PASSED: &str = "(passed the policy)";

fn passed_policy() -> String {
    PASSED.into()
}

const RULES: &str = r#"
version = 1
[commands]
default = "allow"
deny = ["guest-get-time"]

[exec]
env = ["LANG"]
allow_input = false
[[exec.program]]
path = "/usr/bin/uptime"
args = []
[[exec.program]]
path = "/usr/bin/systemctl"
args = ["status"]
more_args = "[a-z]+\\.service"

[files]
[[files.rule]]
dir = "/var/log"
pattern = "**/*.log"
access = ["read"]

[password]
accounts = ["*"]
deny_accounts = ["root"]
allow_plaintext = false

[fsfreeze]
mountpoints = ["/srv/**"]

# Ids no machine has: a request the policy allows then fails in the
# operation, so that this test can never change this machine's CPUs or
# memory (it once offlined cpu1 and memory block 9 of the machine running it).
[vcpus]
ids = [4090]

[memory_blocks]
ids = ["999990-999999"]

[power]
modes = ["reboot"]
"#;

#[test]
fn every_rule_kind_through_the_real_binaries() {
    let agent = Agent::with_policy(RULES, &[]);
    let mut c = agent.connect();
    let cases: &[(&str, String)] = &[
        // Whole commands.
        (r#"{"execute":"guest-get-time"}"#, disabled("guest-get-time")),
        (r#"{"execute":"guest-ping"}"#, r#"{"return": {}}"#.into()),
        // exec
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","id"]}}"#,
            denied("exec.program: this program may not be run"),
        ),
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/uptime","arg":["-p"]}}"#,
            denied("exec.program.args: these arguments are not allowed for this program"),
        ),
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/systemctl","arg":["status","ssh;reboot"]}}"#,
            denied("exec.program.args: these arguments are not allowed for this program"),
        ),
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/uptime","env":["LD_PRELOAD=/x.so"]}}"#,
            denied("exec.env: an environment variable is not allowed"),
        ),
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/uptime","input-data":"aGk="}}"#,
            denied("exec.allow_input: input-data is not allowed"),
        ),
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/../bin/uptime"}}"#,
            denied("exec.program: this program may not be run"),
        ),
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/uptime","env":["LANG=C"]}}"#,
            passed_policy(),
        ),
        (
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/systemctl","arg":["status","ssh.service"]}}"#,
            passed_policy(),
        ),
        // files
        (
            r#"{"execute":"guest-file-open","arguments":{"path":"/var/log/syslog.log"}}"#,
            passed_policy(),
        ),
        (
            r#"{"execute":"guest-file-open","arguments":{"path":"/var/log/a/b.log","mode":"w"}}"#,
            denied("files.rule: no rule allows this access to this path"),
        ),
        (
            r#"{"execute":"guest-file-open","arguments":{"path":"/var/log/../../etc/shadow"}}"#,
            denied("files: the path must be absolute, without '..' or NUL"),
        ),
        (
            r#"{"execute":"guest-file-open","arguments":{"path":"/var/logs/x.log"}}"#,
            denied("files.rule: no rule allows this access to this path"),
        ),
        (
            r#"{"execute":"guest-file-open","arguments":{"path":"/var/log/x.log\u0000.txt"}}"#,
            denied("files: the path must be absolute, without '..' or NUL"),
        ),
        (
            r#"{"execute":"guest-file-open","arguments":{"path":"var/log/x.log"}}"#,
            denied("files: the path must be absolute, without '..' or NUL"),
        ),
        // password
        (
            r#"{"execute":"guest-set-user-password","arguments":{"username":"root","password":"JDEkeA==","crypted":true}}"#,
            denied("password.accounts: this account's password may not be set"),
        ),
        (
            r#"{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"c2VjcmV0","crypted":false}}"#,
            denied("password.allow_plaintext: only crypted passwords are accepted"),
        ),
        (
            r#"{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"JDEkeA==","crypted":true}}"#,
            passed_policy(),
        ),
        // fsfreeze
        (
            r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/"]}}"#,
            denied("fsfreeze.mountpoints: a mount point may not be frozen"),
        ),
        (
            r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/srv/data"]}}"#,
            passed_policy(),
        ),
        // hotplug
        (
            r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":0,"online":false}]}}"#,
            denied("vcpus.ids: a vCPU may not be changed"),
        ),
        (
            r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":false}]}}"#,
            denied("vcpus.ids: a vCPU may not be changed"),
        ),
        (
            r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":4090,"online":false}]}}"#,
            generic(r#"open(\"/sys/devices/system/cpu/cpu4090/\"): No such file or directory"#),
        ),
        (
            r#"{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":9,"online":false}]}}"#,
            denied("memory_blocks.ids: a memory block may not be changed"),
        ),
        (
            r#"{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":999995,"online":false}]}}"#,
            r#"{"return": [{"response": "not-found", "error-code": 2, "phys-index": 999995}]}"#
                .into(),
        ),
        // power (never an allowed mode here: this is the test machine)
        (
            r#"{"execute":"guest-shutdown","arguments":{"mode":"halt"}}"#,
            denied("power.modes: this mode is not allowed"),
        ),
        (r#"{"execute":"guest-shutdown"}"#, denied("power.modes: this mode is not allowed")),
        (r#"{"execute":"guest-suspend-ram"}"#, denied("power.modes: this mode is not allowed")),
    ];
    for (request, want) in cases {
        let got = c.call(request);
        if want == PASSED {
            assert!(
                !got.contains("denied by policy") && !got.contains("disabled"),
                "{request}: {got}"
            );
        } else {
            assert_eq!(&got, want, "{request}");
        }
    }
    // The whole-command rules reach guest-info and the frontend's error order.
    let info = c.call(r#"{"execute":"guest-info"}"#);
    assert!(
        info.contains(r#"{"enabled": false, "name": "guest-get-time", "success-response": true}"#)
    );
    assert_eq!(
        c.call(r#"{"execute":"guest-get-time","arguments":{"bogus":1}}"#),
        disabled("guest-get-time")
    );
}

#[test]
fn the_default_policy_denies_exec_and_files() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    for cmd in ["guest-exec", "guest-exec-status", "guest-file-open", "guest-file-read"] {
        assert_eq!(c.call(&format!(r#"{{"execute":"{cmd}"}}"#)), disabled(cmd));
    }
    let info = c.call(r#"{"execute":"guest-info"}"#);
    assert!(info.contains(r#"{"enabled": false, "name": "guest-exec", "success-response": true}"#));
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
}

#[test]
fn no_policy_file_means_the_built_in_policy() {
    if std::path::Path::new(policy::DEFAULT_POLICY_PATH).exists() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("SKIPPED: {} exists on this machine\n", policy::DEFAULT_POLICY_PATH).as_bytes(),
        );
        return;
    }
    let dir = TempDir::new("nopolicy");
    let sock = dir.path().join("s");
    let mut child = Command::new(broker_bin())
        .args(["-m", "unix-listen", "-p"])
        .arg(&sock)
        .env("QGA_CONF", "/nonexistent/x.conf")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + qga_warden_tests::TIMEOUT;
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut c = qga_warden_tests::Client::connect(&sock);
    let reply = c.call(r#"{"execute":"guest-exec","arguments":{"path":"/bin/true"}}"#);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reply, disabled("guest-exec"));
}

#[test]
fn block_and_allow_rpcs_only_narrow_the_policy() {
    // The policy allows exec of uptime and denies guest-file-write; -a cannot
    // bring guest-file-write back, -b takes guest-exec away.
    let dir = TempDir::new("ops");
    let agent = Agent::with_policy(
        &ops_in(&dir),
        &["-b", "guest-exec", "-a", "guest-ping,guest-file-write,guest-info"],
    );
    let mut c = agent.connect();
    assert_eq!(
        c.call(r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/uptime"}}"#),
        disabled("guest-exec")
    );
    assert_eq!(
        c.call(r#"{"execute":"guest-file-write","arguments":{"handle":1,"buf-b64":""}}"#),
        disabled("guest-file-write")
    );
    assert_eq!(c.call(r#"{"execute":"guest-get-vcpus"}"#), disabled("guest-get-vcpus"));
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
}

/// Switching from qemu-ga: its configuration file ($QGA_CONF here, as the
/// default /etc/qemu/qemu-ga.conf would be) keeps narrowing the policy with
/// block-rpcs and allow-rpcs, and cannot widen it.
#[test]
fn qemu_ga_conf_rpc_lists_only_narrow_the_policy() {
    let dir = TempDir::new("qemu-ga-conf");
    let conf = dir.path().join("qemu-ga.conf");
    std::fs::write(
        &conf,
        "# written for qemu-ga\n[general]\nverbose=true\nblock-rpcs=guest-exec\n\
         allow-rpcs=guest-ping,guest-file-write,guest-info,guest-exec\n",
    )
    .expect("write conf");
    let ops = ops_in(&dir);
    let agent = Agent::start_with(&ops, &[], |cmd| {
        cmd.env("QGA_CONF", &conf);
    });
    let mut c = agent.connect();
    assert_eq!(
        c.call(r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/uptime"}}"#),
        disabled("guest-exec")
    );
    // The policy denies guest-file-write: allow-rpcs cannot bring it back.
    assert_eq!(
        c.call(r#"{"execute":"guest-file-write","arguments":{"handle":1,"buf-b64":""}}"#),
        disabled("guest-file-write")
    );
    assert_eq!(c.call(r#"{"execute":"guest-get-vcpus"}"#), disabled("guest-get-vcpus"));
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
}

#[test]
fn a_policy_error_stops_start_up_with_its_location() {
    let dir = TempDir::new("badpolicy");
    let file = dir.path().join("policy.toml");
    std::fs::write(
        &file,
        "version = 1\n[commands]\ndeny = [\"guest-exec\", \"guest-frobnicate\"]\n",
    )
    .expect("write");
    let out = Command::new(broker_bin())
        .args(["-m", "unix-listen", "-p"])
        .arg(dir.path().join("s"))
        .arg("--policy")
        .arg(&file)
        .env("QGA_CONF", "/nonexistent/x.conf")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:3:23: unknown command 'guest-frobnicate'", file.display())),
        "{err}"
    );
    assert!(!dir.path().join("s").exists(), "it must not have started serving");
    // A named policy file that does not exist stops it too.
    let out = Command::new(broker_bin())
        .args(["-m", "unix-listen", "-p"])
        .arg(dir.path().join("s"))
        .args(["--policy", "/nonexistent/policy.toml"])
        .env("QGA_CONF", "/nonexistent/x.conf")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policy.toml"));
}

fn records(agent: &Agent) -> Vec<Value> {
    agent
        .audit_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn requests(all: &[Value]) -> Vec<&Value> {
    all.iter().filter(|r| r["event"] == "request").collect()
}

#[test]
fn every_request_is_audited_field_by_field() {
    let dir = TempDir::new("audit");
    let audit_file = dir.path().join("audit/audit.log");
    let policy = format!(
        "{RULES}\n[audit]\nstderr = true\nfile = \"{}\"\nsync = \"record\"\n",
        audit_file.display()
    );
    let mut agent = Agent::with_policy(&policy, &[]);
    let mut c = agent.connect();
    c.call(r#"{"execute":"guest-ping"}"#);
    c.call(r#"{"execute":"guest-get-time"}"#);
    c.call(r#"{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"c2VjcmV0LXB3","crypted":false}}"#);
    c.call(r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/uptime","env":["LANG=C"],"input-data":"c2VjcmV0LWlucHV0"}}"#);
    c.call(r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"c2VjcmV0LWRhdGE="}}"#);
    c.call(r#"{"execute":"guest-sync","arguments":{"id":42}}"#);
    // Garbage never reaches the broker: it is not a request to audit.
    c.send(b"\xff");
    c.text();
    agent.terminate();

    let all = records(&agent);
    let text = agent.audit_lines().join("\n");
    for secret in ["secret-pw", "c2VjcmV0LXB3", "secret-input", "secret-data", "c2VjcmV0"] {
        assert!(!text.contains(secret), "the trail holds a secret: {secret}");
    }
    // Sequence numbers count every record from 1; times are RFC 3339 UTC.
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "{r}");
        let t = r["time"].as_str().expect("time");
        assert_eq!(t.len(), 27, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
    assert_eq!(all[0]["event"], "start");
    assert_eq!(all[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(all[1]["event"], "policy");
    let policy_path = agent.dir.path().join("policy.toml");
    assert_eq!(all[1]["path"], policy_path.display().to_string());
    assert_eq!(all[1]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(all[1]["disabled"], serde_json::json!(["guest-get-time"]));
    let fe = all.iter().find(|r| r["event"] == "frontend").expect("frontend record");
    assert_eq!(fe["seccomp"], true);
    assert_eq!(fe["no_new_privs"], true);
    assert_eq!(fe["capabilities_cleared"], true);
    assert_eq!(all.last().expect("records")["event"], "stop");

    let req = requests(&all);
    assert_eq!(
        req.len(),
        6,
        "{}",
        req.iter().map(|r| r["command"].to_string()).collect::<Vec<_>>().join(",")
    );
    let ping = req[0];
    assert_eq!(ping["command"], "guest-ping");
    assert_eq!(ping["decision"], "allow");
    assert_eq!(ping["outcome"], "ok");
    assert!(ping.get("rule").is_none() && ping.get("error_class").is_none());
    assert!(ping["duration_us"].as_u64().is_some());
    assert_eq!(ping["args"], serde_json::json!({}));

    let time = req[1];
    assert_eq!(time["decision"], "deny");
    assert_eq!(time["rule"], "commands.deny: the command is disabled");
    assert_eq!(time["outcome"], "error");
    assert_eq!(time["error_class"], "CommandNotFound");

    let pw = req[2];
    assert_eq!(pw["command"], "guest-set-user-password");
    assert_eq!(pw["rule"], "password.allow_plaintext: only crypted passwords are accepted");
    assert_eq!(pw["error_class"], "GenericError");
    assert_eq!(
        pw["args"],
        serde_json::json!({"username": "alice", "password_len": 9, "crypted": false})
    );

    let exec = req[3];
    assert_eq!(exec["rule"], "exec.allow_input: input-data is not allowed");
    assert_eq!(exec["args"]["env"], serde_json::json!(["LANG"]));
    assert_eq!(exec["args"]["input_len"], 12);
    assert_eq!(exec["args"]["path"], "/usr/bin/uptime");

    let write = req[4];
    assert_eq!(write["args"], serde_json::json!({"handle": 1000, "data_len": 11}));
    assert_eq!(req[5]["args"], serde_json::json!({"id": 42}));

    // The same records in the file, which is private to root.
    let file_text = std::fs::read_to_string(&audit_file).expect("audit file");
    assert_eq!(file_text.lines().count(), all.len());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&audit_file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Log rotation as logrotate does it (rename, `nocreate`), a removed file,
/// and SIGHUP: the agent follows, each record lands in exactly one file,
/// and none is lost.
#[test]
fn a_rotated_audit_file_loses_no_record() {
    let dir = TempDir::new("rotate");
    let audit_file = dir.path().join("audit.log");
    let policy = format!("{RULES}\n[audit]\nstderr = false\nfile = \"{}\"\n", audit_file.display());
    let mut agent = Agent::with_policy(&policy, &[]);
    let mut c = agent.connect();
    let ping = |c: &mut qga_warden_tests::Client| {
        assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    };
    ping(&mut c);
    std::fs::rename(&audit_file, dir.path().join("audit.log.1")).expect("rotate");
    ping(&mut c);
    ping(&mut c);
    std::fs::rename(&audit_file, dir.path().join("audit.log.2")).expect("rotate");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    ping(&mut c);
    agent.terminate();

    let seqs = |name: &str| -> Vec<u64> {
        let text = std::fs::read_to_string(dir.path().join(name)).expect(name);
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("record")["seq"].as_u64().expect("seq")
            })
            .collect()
    };
    let (first, second, last) = (seqs("audit.log.1"), seqs("audit.log.2"), seqs("audit.log"));
    assert!(!first.is_empty() && !second.is_empty() && !last.is_empty());
    let all: Vec<u64> = first.iter().chain(&second).chain(&last).copied().collect();
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>(), "{first:?} {second:?} {last:?}");
    let log = agent.log_text();
    assert!(log.contains("audit file") && log.contains("reopened"), "{log}");
    assert!(log.contains("received SIGHUP"), "{log}");
}

#[test]
fn frontend_restarts_are_audited() {
    let mut agent = Agent::start(&[]);
    agent.allow_frontend_deaths = true;
    let old = agent.frontend_pid().expect("frontend");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    agent.wait_for(|a| a.frontend_pid().is_some_and(|p| p != old), "restart");
    let mut c = agent.connect();
    c.call(r#"{"execute":"guest-ping"}"#);
    // The records reach the harness through the broker's standard error,
    // read by another thread: wait for them rather than race it.
    let count = |a: &Agent, event: &str| records(a).iter().filter(|r| r["event"] == event).count();
    agent.wait_for(|a| count(a, "frontend") == 2 && count(a, "frontend-exit") == 1, "records");
    let all = records(&agent);
    let exit = all.iter().find(|r| r["event"] == "frontend-exit").expect("frontend-exit record");
    assert_eq!(exit["pid"], old);
    assert_eq!(exit["how"], "was killed by SIGKILL");
    assert_eq!(all.iter().filter(|r| r["event"] == "frontend").count(), 2);
}

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(broker_bin()).args(args).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn operators_tools() {
    let dir = TempDir::new("tools");
    // show-default prints a policy that checks clean.
    let (code, default, _) = tool(&["policy", "show-default"]);
    assert_eq!(code, 0);
    let file = dir.path().join("default.toml");
    std::fs::write(&file, &default).expect("write");
    let (code, out, err) = tool(&["policy", "check", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid") && out.contains("disabled commands: guest-file-open"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[files]\nmax_handles = \"many\"\n").expect("write");
    let (code, _, err) = tool(&["policy", "check", bad.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{}:2:15: ", bad.display())), "{err}");

    let ops = dir.path().join("ops.toml");
    std::fs::write(&ops, OPS).expect("write");
    let ops = ops.to_str().expect("utf-8");
    let (code, out, _) = tool(&[
        "policy",
        "explain",
        ops,
        r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/systemctl","arg":["status","ssh.service"]}}"#,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("decision: allow") && out.contains("runs as: nobody; time limit: 30 s"),
        "{out}"
    );
    let (code, out, _) = tool(&[
        "policy",
        "explain",
        ops,
        r#"{"execute":"guest-file-open","arguments":{"path":"/etc/shadow"}}"#,
    ]);
    assert_eq!(code, 3);
    assert!(out.contains("rule: files.rule: no rule allows this access to this path"), "{out}");
    let (code, out, _) = tool(&[
        "policy",
        "explain",
        ops,
        r#"{"execute":"guest-file-write","arguments":{"handle":1,"buf-b64":""}}"#,
    ]);
    assert_eq!(code, 3);
    assert!(out.contains("decision: deny (the whole command)"), "{out}");
    let (code, _, err) =
        tool(&["policy", "explain", ops, r#"{"execute":"guest-exec","arguments":{"path":1}}"#]);
    assert_eq!(code, 1);
    assert!(err.contains("Invalid parameter type for 'path', expected: string"), "{err}");
    let (code, _, err) = tool(&["policy", "frobnicate"]);
    assert_eq!(code, 1);
    assert!(err.contains("usage: qga-warden policy"), "{err}");
}
