//! guest-file-* and guest-exec through the real binaries, under the policy:
//! what the rules allow works as qemu-ga's does (reference.rs compares the
//! replies byte for byte), and what they do not is refused and audited —
//! denied paths, symlinks out of the allowed directory, denied programs and
//! environment variables. Limits: handles, children, captured output, time.
//! Every file a test touches is under its own temporary directory; every
//! program it runs is short-lived and killed with the agent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use qga_warden_tests::{Agent, Client, TIMEOUT, TempDir, children_of};
use serde_json::Value;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64 from the agent")
}

fn json(reply: &str) -> Value {
    serde_json::from_str(reply).unwrap_or_else(|e| panic!("not JSON ({e}): {reply}"))
}

fn ret(reply: &str) -> Value {
    let v = json(reply);
    assert!(v.get("return").is_some(), "expected success: {reply}");
    v["return"].clone()
}

fn desc(reply: &str) -> String {
    let v = json(reply);
    v["error"]["desc"].as_str().unwrap_or_else(|| panic!("expected an error: {reply}")).to_owned()
}

/// A policy allowing files beneath `area` (read, write, create) and
/// `/bin/sh`, `/bin/cat`, `/usr/bin/env`, `/bin/sleep`, `/usr/bin/id` as
/// `run_as`, plus `extra` TOML inside `[exec]`.
fn policy(area: &Path, run_as: &str, exec_extra: &str, files_extra: &str) -> String {
    format!(
        r#"version = 1
[commands]
default = "allow"

[exec]
run_as = "{run_as}"
allow_input = true
env = ["GREETING", "X_*"]
{exec_extra}
[[exec.program]]
path = "/bin/sh"
more_args = ".*"
[[exec.program]]
path = "/bin/cat"
[[exec.program]]
path = "/usr/bin/env"
[[exec.program]]
path = "/bin/sleep"
args = ["[0-9.]+"]
[[exec.program]]
path = "/usr/bin/id"
more_args = ".*"

[files]
{files_extra}
[[files.rule]]
dir = "{area}"
pattern = "**"
access = ["read", "write", "append", "create"]
[[files.rule]]
dir = "{area}/ro"
pattern = "*.log"
access = ["read"]
"#,
        area = area.display()
    )
}

struct Setup {
    _dir: TempDir,
    root: std::path::PathBuf,
    area: std::path::PathBuf,
    agent: Agent,
}

fn setup(run_as: &str, exec_extra: &str, files_extra: &str) -> Setup {
    let dir = TempDir::new("files");
    let root = dir.path().to_owned();
    let area = root.join("area");
    std::fs::create_dir_all(area.join("ro")).expect("mkdir");
    // The test directory is private by default; the agent's children may
    // run as nobody.
    for d in [&root, &area] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let agent = Agent::with_policy(&policy(&area, run_as, exec_extra, files_extra), &[]);
    Setup { _dir: dir, root, area, agent }
}

fn open(c: &mut Client, path: &Path, mode: &str) -> String {
    c.call(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{}","mode":"{mode}"}}}}"#,
        path.display()
    ))
}

fn handle(reply: &str) -> i64 {
    ret(reply).as_i64().unwrap_or_else(|| panic!("not a handle: {reply}"))
}

fn records(agent: &Agent, command: &str) -> Vec<Value> {
    agent
        .audit_lines()
        .iter()
        .map(|l| json(l))
        .filter(|r| r["event"] == "request" && r["command"] == command)
        .collect()
}

// --- files --------------------------------------------------------------

#[test]
fn symlinks_out_of_the_allowed_directory_are_refused_and_audited() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let secret = s.root.join("secret");
    std::fs::write(&secret, "outside").expect("write");
    std::os::unix::fs::symlink(&secret, s.area.join("link")).expect("symlink");
    std::os::unix::fs::symlink(&s.root, s.area.join("up")).expect("symlink");
    std::os::unix::fs::symlink(s.root.join("created"), s.area.join("dangling")).expect("symlink");
    std::os::unix::fs::symlink("../secret", s.area.join("relative")).expect("symlink");

    for (name, mode) in
        [("link", "r"), ("up/secret", "r"), ("dangling", "w"), ("relative", "a+"), ("up/x", "w")]
    {
        let path = s.area.join(name);
        let reply = open(&mut c, &path, mode);
        assert_eq!(
            desc(&reply),
            format!(
                "failed to open file '{}' (mode: '{mode}'): Too many levels of symbolic links",
                path.display()
            ),
            "{name}"
        );
    }
    // Nothing was created or changed outside.
    assert!(!s.root.join("created").exists());
    assert!(!s.root.join("x").exists());
    assert_eq!(std::fs::read_to_string(&secret).expect("read"), "outside");
    // Each attempt is on the audit trail, allowed by the policy and failed.
    let opens = records(&s.agent, "guest-file-open");
    assert_eq!(opens.len(), 5);
    for r in &opens {
        assert_eq!((r["decision"].as_str(), r["outcome"].as_str()), (Some("allow"), Some("error")));
    }
    assert_eq!(opens[0]["args"]["path"], s.area.join("link").to_str().expect("utf-8"));
}

#[test]
fn paths_outside_the_rules_are_denied_and_audited() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    std::fs::write(s.area.join("ro/app.log"), "log line\n").expect("write");
    let denied = |path: &Path, mode: &str, c: &mut Client| {
        let reply = open(c, path, mode);
        assert_eq!(
            desc(&reply),
            "denied by policy rule files.rule: no rule allows this access to this path",
            "{} {mode}",
            path.display()
        );
    };
    denied(Path::new("/etc/shadow"), "r", &mut c);
    denied(&s.root.join("secret"), "r", &mut c);
    // `area` does not cover `area2`.
    denied(&s.root.join("area2/x"), "w", &mut c);
    // ro/ is read-only for *.log... but `area` allows everything beneath it:
    // rules add up, so use a path only the ro rule could match.
    let reply = open(&mut c, &s.area.join("ro/app.log"), "r");
    let h = handle(&reply);
    let read = c.call(&format!(r#"{{"execute":"guest-file-read","arguments":{{"handle":{h}}}}}"#));
    assert_eq!(unb64(ret(&read)["buf-b64"].as_str().expect("buf-b64")), b"log line\n");
    let reply = c.call(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{}/../secret"}}}}"#,
        s.area.display()
    ));
    assert_eq!(
        desc(&reply),
        "denied by policy rule files: the path must be absolute, without '..' or NUL"
    );

    let opens = records(&s.agent, "guest-file-open");
    let denials: Vec<_> = opens.iter().filter(|r| r["decision"] == "deny").collect();
    assert_eq!(denials.len(), 4);
    assert_eq!(denials[0]["rule"], "files.rule: no rule allows this access to this path");
    assert_eq!(denials[0]["args"]["path"], "/etc/shadow");
}

#[test]
fn created_files_are_private_and_existing_modes_are_kept() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    for mode in ["w", "w+", "a", "a+", "wb", "ab+"] {
        let path = s.area.join(format!("new-{mode}"));
        handle(&open(&mut c, &path, mode));
        let perm = std::fs::metadata(&path).expect("created").permissions().mode() & 0o777;
        assert_eq!(perm, 0o600, "{mode}");
    }
    let existing = s.area.join("existing");
    std::fs::write(&existing, "x").expect("write");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    handle(&open(&mut c, &existing, "w"));
    let perm = std::fs::metadata(&existing).expect("meta").permissions().mode() & 0o777;
    assert_eq!(perm, 0o644);
    assert_eq!(std::fs::read(&existing).expect("read"), b"", "w truncates");
    // r and r+ never create.
    for mode in ["r", "r+", "rb", "r+b"] {
        let path = s.area.join(format!("absent-{mode}"));
        assert!(desc(&open(&mut c, &path, mode)).ends_with("No such file or directory"));
        assert!(!path.exists());
    }
}

#[test]
fn the_number_of_open_handles_is_capped() {
    let s = setup("nobody", "", "max_handles = 2");
    let mut c = s.agent.connect();
    let f = s.area.join("f");
    let h1 = handle(&open(&mut c, &f, "w"));
    let h2 = handle(&open(&mut c, &f, "r"));
    assert_eq!(h2, h1 + 1);
    assert_eq!(desc(&open(&mut c, &f, "r")), "too many open files (the policy allows 2)");
    let close = format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{h1}}}}}"#);
    assert_eq!(c.call(&close), r#"{"return": {}}"#);
    assert_eq!(handle(&open(&mut c, &f, "r")), h2 + 1);
}

#[test]
fn handles_outlive_the_host_connection_as_with_qemu_ga() {
    let s = setup("nobody", "", "");
    let f = s.area.join("f");
    std::fs::write(&f, "0123456789").expect("write");
    let h = {
        let mut c = s.agent.connect();
        let h = handle(&open(&mut c, &f, "r"));
        let read = c.call(&format!(
            r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":4}}}}"#
        ));
        assert_eq!(unb64(ret(&read)["buf-b64"].as_str().expect("b64")), b"0123");
        h
    };
    // A new connection continues where the last one left off.
    let mut c = s.agent.connect();
    let read = c.call(&format!(r#"{{"execute":"guest-file-read","arguments":{{"handle":{h}}}}}"#));
    assert_eq!(unb64(ret(&read)["buf-b64"].as_str().expect("b64")), b"456789");
    assert_eq!(ret(&read)["eof"], true);
}

#[test]
fn handle_numbers_continue_after_a_restart() {
    let state = TempDir::new("statedir");
    let area = TempDir::new("area");
    let text = policy(area.path(), "nobody", "", "");
    let statedir = state.path().to_str().expect("utf-8");
    let f = area.path().join("f");
    let first = {
        let agent = Agent::with_policy(&text, &["-t", statedir]);
        handle(&open(&mut agent.connect(), &f, "w"))
    };
    assert_eq!(first, 1000);
    let agent = Agent::with_policy(&text, &["-t", statedir]);
    assert_eq!(handle(&open(&mut agent.connect(), &f, "w")), 1001);
}

/// Reads the whole of `handle` with `count`-byte requests.
fn read_all(c: &mut Client, h: i64, count: usize) -> Vec<u8> {
    let mut data = Vec::new();
    let request =
        format!(r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{count}}}}}"#);
    loop {
        let r = ret(&c.call(&request));
        let chunk = unb64(r["buf-b64"].as_str().expect("b64"));
        assert_eq!(r["count"].as_u64(), Some(chunk.len() as u64));
        data.extend_from_slice(&chunk);
        if r["eof"] == true {
            return data;
        }
        assert_eq!(chunk.len(), count, "a short read must say eof");
    }
}

#[test]
fn large_reads_and_writes_arrive_whole_and_in_order() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let f = s.area.join("big");
    let data: Vec<u8> =
        (0..(10 << 20) + 12345u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&f, &data).expect("write");
    for count in [4096, 1 << 20, (4 << 20) + 1, 48 << 20] {
        let h = handle(&open(&mut c, &f, "r"));
        assert!(read_all(&mut c, h, count) == data, "count {count}");
    }
    // Requests sent together are answered in order around a streamed read.
    let h = handle(&open(&mut c, &f, "r"));
    c.send(
        format!(
            r#"{{"execute":"guest-ping","id":1}}{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":3000000}},"id":2}}{{"execute":"guest-bogus","id":3}}{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":5}},"id":4}}"#
        )
        .as_bytes(),
    );
    let ids: Vec<Value> = (0..4).map(|_| json(&c.text())["id"].clone()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);

    // Writing the same data back in pieces gives the same file.
    let copy = s.area.join("copy");
    let h = handle(&open(&mut c, &copy, "w"));
    for piece in data.chunks(3 << 20) {
        let r = c.call(&format!(
            r#"{{"execute":"guest-file-write","arguments":{{"handle":{h},"buf-b64":"{}"}}}}"#,
            b64(piece)
        ));
        assert_eq!(ret(&r)["count"].as_u64(), Some(piece.len() as u64));
    }
    assert!(std::fs::read(&copy).expect("read") == data);
}

#[test]
fn a_host_that_leaves_during_a_large_read_does_not_disturb_the_next() {
    let s = setup("nobody", "", "");
    let f = s.area.join("big");
    let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(&f, &data).expect("write");
    let h = {
        let mut c = s.agent.connect();
        let h = handle(&open(&mut c, &f, "r"));
        c.send(
            format!(
                r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{}}}}}"#,
                20 << 20
            )
            .as_bytes(),
        );
        // Leave without reading the reply.
        std::thread::sleep(Duration::from_millis(50));
        h
    };
    let mut c = s.agent.connect();
    assert!(c.resync(77, TIMEOUT));
    let seek = format!(
        r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":0}}}}"#
    );
    assert_eq!(ret(&c.call(&seek))["position"], 0);
    assert!(read_all(&mut c, h, 8 << 20) == data);
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
}

#[test]
fn a_host_that_does_not_read_cannot_make_the_agent_hold_many_reads() {
    let s = setup("nobody", "", "");
    let f = s.area.join("big");
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&f, &data).expect("write");
    let mut c = s.agent.connect();
    let h = handle(&open(&mut c, &f, "r"));
    let seek = format!(
        r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":0}}}}"#
    );
    let read = format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{}}}}}"#,
        8 << 20
    );
    // 30 reads of 8 MiB asked at once, none of the replies read yet.
    c.send(format!("{seek}{read}").repeat(30).as_bytes());
    std::thread::sleep(Duration::from_millis(500));
    let rss: u64 = children_of(s.agent.pid())
        .into_iter()
        .chain([s.agent.pid()])
        .filter_map(qga_warden_tests::rss_kib)
        .sum();
    // One read's data (8 MiB) and the buffers around it, not 240 MiB.
    assert!(rss < 64 * 1024, "the agent holds {rss} KiB");
    for _ in 0..30 {
        assert_eq!(ret(&c.text())["position"], 0);
        let r = ret(&c.text());
        assert!(unb64(r["buf-b64"].as_str().expect("b64")) == data);
    }
}

// --- exec ---------------------------------------------------------------

/// Runs a guest-exec and polls its status until it has exited.
fn run(c: &mut Client, args: &str) -> Value {
    let reply = c.call(&format!(r#"{{"execute":"guest-exec","arguments":{args}}}"#));
    let pid = ret(&reply)["pid"].as_i64().unwrap_or_else(|| panic!("{reply}"));
    wait_exited(c, pid)
}

fn wait_exited(c: &mut Client, pid: i64) -> Value {
    let status = format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = ret(&c.call(&status));
        if r["exited"] == true {
            // Reported once, then forgotten.
            assert_eq!(desc(&c.call(&status)), "Invalid parameter 'pid'");
            return r;
        }
        assert!(Instant::now() < deadline, "pid {pid} did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn out(status: &Value) -> String {
    String::from_utf8(status["out-data"].as_str().map(unb64).unwrap_or_default()).expect("utf-8")
}

#[test]
fn every_combination_of_capture_input_and_env() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let script = r#"read line; echo "in=$line env=$GREETING"; echo err >&2"#;
    for capture in [false, true] {
        for input in [None, Some("hello\n")] {
            for env in [None, Some("GREETING=hi")] {
                let mut args = format!(r#"{{"path":"/bin/sh","arg":["-c",{}]"#, json_str(script));
                if capture {
                    args.push_str(r#","capture-output":true"#);
                }
                if let Some(i) = input {
                    args.push_str(&format!(r#","input-data":"{}""#, b64(i.as_bytes())));
                }
                if let Some(e) = env {
                    args.push_str(&format!(r#","env":["{e}"]"#));
                }
                args.push('}');
                let st = run(&mut c, &args);
                let what = format!("capture {capture} input {input:?} env {env:?}");
                assert_eq!(st["exitcode"], 0, "{what}");
                if capture {
                    let expect = format!(
                        "in={} env={}\n",
                        input.unwrap_or("").trim_end(),
                        env.map_or("", |_| "hi")
                    );
                    assert_eq!(out(&st), expect, "{what}");
                    assert_eq!(unb64(st["err-data"].as_str().expect("err-data")), b"err\n");
                    assert_eq!(
                        (&st["out-truncated"], &st["err-truncated"]),
                        (&Value::Bool(false), &Value::Bool(false))
                    );
                } else {
                    assert!(st.get("out-data").is_none() && st.get("err-data").is_none(), "{what}");
                }
            }
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

#[test]
fn children_get_a_clean_environment_as_the_policy_account() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let st = run(&mut c, r#"{"path":"/usr/bin/env","env":["X_ONE=1"],"capture-output":true}"#);
    let mut vars: Vec<String> = out(&st).lines().map(str::to_owned).collect();
    vars.sort();
    let nobody_home = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .map(|u| u.dir.display().to_string())
        .expect("nobody exists");
    assert_eq!(
        vars,
        [
            format!("HOME={nobody_home}"),
            "LOGNAME=nobody".into(),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "USER=nobody".into(),
            "X_ONE=1".into(),
        ]
    );
    let st = run(&mut c, r#"{"path":"/usr/bin/id","arg":["-u"],"capture-output":true}"#);
    assert_eq!(out(&st), "65534\n");
    // Default signal handling, whatever the broker blocks or ignores.
    let st = run(
        &mut c,
        r#"{"path":"/bin/sh","arg":["-c","grep -E '^Sig(Blk|Ign)' /proc/self/status"],"capture-output":true}"#,
    );
    assert_eq!(out(&st), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    // Its own session: not in the broker's process group.
    let st = run(
        &mut c,
        r#"{"path":"/bin/sh","arg":["-c","cut -d' ' -f6 /proc/$$/stat; echo $$"],"capture-output":true}"#,
    );
    let text = out(&st);
    let ids: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "{text}");
    assert_eq!(ids[0], ids[1], "the child leads its own session");
}

#[test]
fn denied_programs_and_variables_are_refused_and_audited() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let cases = [
        (r#"{"path":"/bin/bash","arg":["-c","id"]}"#, "exec.program: this program may not be run"),
        (r#"{"path":"/bin/../bin/sh"}"#, "exec.program: this program may not be run"),
        (r#"{"path":"sh"}"#, "exec.program: this program may not be run"),
        (
            r#"{"path":"/bin/sleep","arg":["1;reboot"]}"#,
            "exec.program.args: these arguments are not allowed for this program",
        ),
        (
            r#"{"path":"/bin/cat","arg":["/etc/shadow"]}"#,
            "exec.program.args: these arguments are not allowed for this program",
        ),
        (
            r#"{"path":"/bin/cat","env":["LD_PRELOAD=/tmp/x.so"]}"#,
            "exec.env: an environment variable is not allowed",
        ),
        (
            r#"{"path":"/bin/cat","env":["GREETING"]}"#,
            "exec.env: an environment variable is not allowed",
        ),
    ];
    for (args, rule) in cases {
        let reply = c.call(&format!(r#"{{"execute":"guest-exec","arguments":{args}}}"#));
        assert_eq!(desc(&reply), format!("denied by policy rule {rule}"), "{args}");
    }
    let execs = records(&s.agent, "guest-exec");
    assert_eq!(execs.len(), cases.len());
    for (r, (_, rule)) in execs.iter().zip(cases) {
        assert_eq!((r["decision"].as_str(), r["rule"].as_str()), (Some("deny"), Some(rule)));
    }
    // The audit names variables, never their values.
    let text = s.agent.audit_lines().join("\n");
    assert!(text.contains("LD_PRELOAD") && !text.contains("/tmp/x.so"), "{text}");
}

#[test]
fn output_beyond_the_cap_is_truncated() {
    let s = setup("nobody", "max_output_bytes = 1000", "");
    let mut c = s.agent.connect();
    let st = run(
        &mut c,
        r#"{"path":"/bin/sh","arg":["-c","head -c 5000 /dev/zero; head -c 999 /dev/zero >&2"],"capture-output":true}"#,
    );
    assert_eq!(st["exitcode"], 0);
    assert_eq!(unb64(st["out-data"].as_str().expect("out")).len(), 1000);
    assert_eq!(st["out-truncated"], true);
    assert_eq!(unb64(st["err-data"].as_str().expect("err")).len(), 999);
    assert_eq!(st["err-truncated"], false);
}

#[test]
fn the_default_cap_is_qemu_gas_16_mib() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let st = run(
        &mut c,
        r#"{"path":"/bin/sh","arg":["-c","head -c 17000000 /dev/zero"],"capture-output":true}"#,
    );
    assert_eq!(unb64(st["out-data"].as_str().expect("out")).len(), 16 << 20);
    assert_eq!(st["out-truncated"], true);
}

#[test]
fn signals_end_children_and_are_reported() {
    let s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let st = run(&mut c, r#"{"path":"/bin/sh","arg":["-c","kill -TERM $$"]}"#);
    assert_eq!((st.get("exitcode"), &st["signal"]), (None, &Value::from(15)));
    let st = run(
        &mut c,
        r#"{"path":"/bin/sh","arg":["-c","echo partial; kill -KILL $$"],"capture-output":true}"#,
    );
    assert_eq!((&st["signal"], out(&st).as_str()), (&Value::from(9), "partial\n"));
}

/// True while a process with exactly this command line exists.
fn running(cmdline: &str) -> bool {
    let want: Vec<u8> = cmdline.split(' ').flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want)
            && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
    })
}

#[test]
fn the_time_limit_kills_the_child_and_its_process_group() {
    let s = setup("nobody", "timeout_seconds = 1", "");
    let mut c = s.agent.connect();
    // A background grandchild in the same process group dies with it.
    let started = Instant::now();
    let st = run(
        &mut c,
        r#"{"path":"/bin/sh","arg":["-c","sleep 31.25 & sleep 31.5; echo never"],"capture-output":true}"#,
    );
    assert_eq!(st["signal"], 9);
    assert!(started.elapsed() < TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    while running("sleep 31.25") {
        assert!(Instant::now() < deadline, "the grandchild survived");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn many_children_run_at_once_up_to_the_cap() {
    let s = setup("nobody", "max_children = 20", "");
    let mut c = s.agent.connect();
    let spawn = |c: &mut Client, n: usize| {
        let script = format!("head -c {} /dev/zero | tr '\\0' x; sleep 0.2", 100_000 + n);
        c.call(&format!(
            r#"{{"execute":"guest-exec","arguments":{{"path":"/bin/sh","arg":["-c",{}],"capture-output":true}}}}"#,
            json_str(&script)
        ))
    };
    let pids: Vec<i64> =
        (0..20).map(|n| ret(&spawn(&mut c, n))["pid"].as_i64().expect("pid")).collect();
    assert_eq!(
        desc(&spawn(&mut c, 99)),
        "too many guest-exec processes running or not yet collected with guest-exec-status (the policy allows 20)"
    );
    // The agent keeps answering while they all write.
    assert_eq!(c.call(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    for (n, pid) in pids.iter().enumerate() {
        let st = wait_exited(&mut c, *pid);
        assert_eq!(out(&st).len(), 100_000 + n, "child {n}");
        assert!(out(&st).bytes().all(|b| b == b'x'));
    }
    // Reaped: no zombies left behind, and room for more.
    let zombies: Vec<u32> = children_of(s.agent.pid())
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| st.contains(") Z "))
        })
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
    assert!(ret(&spawn(&mut c, 0))["pid"].is_i64());
}

#[test]
fn children_not_yet_collected_count_against_the_cap() {
    let s = setup("nobody", "max_children = 2", "");
    let mut c = s.agent.connect();
    let exec = r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","echo done"],"capture-output":true}}"#;
    let first = ret(&c.call(exec))["pid"].as_i64().expect("pid");
    ret(&c.call(exec));
    // Both end, but nobody asks: a third would make the broker hold output
    // for children the host may never collect.
    std::thread::sleep(Duration::from_millis(300));
    assert!(desc(&c.call(exec)).starts_with("too many guest-exec processes"));
    assert_eq!(out(&wait_exited(&mut c, first)), "done\n");
    ret(&c.call(exec));
}

#[test]
fn stopping_the_agent_kills_its_children() {
    let mut s = setup("nobody", "", "");
    let mut c = s.agent.connect();
    let reply =
        c.call(r#"{"execute":"guest-exec","arguments":{"path":"/bin/sleep","arg":["32.75"]}}"#);
    ret(&reply);
    assert!(running("/bin/sleep 32.75"));
    assert!(s.agent.terminate().success());
    assert!(!running("/bin/sleep 32.75"));
}

#[test]
fn an_unknown_account_is_an_error_not_a_root_child() {
    let s = setup("no-such-user-qgaw", "", "");
    let mut c = s.agent.connect();
    let reply = c.call(r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/id"}}"#);
    assert_eq!(
        desc(&reply),
        "Guest agent command failed, error was 'account \"no-such-user-qgaw\" does not exist'"
    );
}
