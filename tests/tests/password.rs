//! guest-set-user-password through the real binaries, in a throw-away /etc:
//! the agent runs in its own mount namespace with a copy of this machine's
//! /etc bind-mounted over /etc, holding an account the test adds, so that
//! the real chpasswd changes only the copy. Needs root and `unshare`; skipped
//! (saying so) otherwise, unless QGA_WARDEN_FS_TESTS=require.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use qga_warden_tests::{Agent, TempDir};

const USER: &str = "qgawtest";
/// Distinctive, so that a search of the agent's memory finds only it.
const PASSWORD: &str = "pw-Qx7;zT!warden-9c1e";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

struct ThrowAwayEtc {
    dir: TempDir,
}

impl ThrowAwayEtc {
    fn new() -> Option<ThrowAwayEtc> {
        let skip = |why: &str| {
            if std::env::var("QGA_WARDEN_FS_TESTS").as_deref() == Ok("require") {
                panic!("password test: {why} (and QGA_WARDEN_FS_TESTS=require)");
            }
            qga_warden_tests::vm::note(&format!("SKIPPED: password test: {why}"));
            None
        };
        if !nix::unistd::Uid::effective().is_root() {
            return skip("needs root (a mount namespace)");
        }
        if !Path::new("/usr/bin/unshare").exists() || !Path::new("/usr/sbin/chpasswd").exists() {
            return skip("needs unshare and chpasswd (util-linux, passwd)");
        }
        let dir = TempDir::new("etc");
        let etc = dir.path().join("etc");
        let status = Command::new("cp").args(["-a", "/etc"]).arg(&etc).status().expect("cp");
        assert!(status.success(), "copying /etc");
        let append = |file: &str, line: &str| {
            let path = etc.join(file);
            let mut text = std::fs::read_to_string(&path).expect("read");
            text.push_str(line);
            std::fs::write(&path, text).expect("write");
        };
        append("passwd", &format!("{USER}:x:4242:4242::/nonexistent:/usr/sbin/nologin\n"));
        append("group", &format!("{USER}:x:4242:\n"));
        append("shadow", &format!("{USER}:!:19000:0:99999:7:::\n"));
        Some(ThrowAwayEtc { dir })
    }

    fn etc(&self) -> String {
        self.dir.path().join("etc").to_str().expect("utf-8").to_owned()
    }

    fn shadow_entry(&self, user: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etc/shadow")).expect("shadow");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{user}:")))
            .map(|rest| rest.split(':').next().unwrap_or("").to_owned())
            .unwrap_or_default()
    }

    fn start(&self, policy: &str) -> Agent {
        Agent::start_over_etc(policy, Path::new(&self.etc()))
    }
}

const POLICY: &str = "version = 1\n[commands]\ndefault = \"allow\"\n[password]\naccounts = [\"qgawtest\", \"nosuchuser*\", \"bad*\"]\nallow_plaintext = true\n";

fn set(c: &mut qga_warden_tests::Client, user: &str, password_b64: &str, crypted: bool) -> String {
    c.call(&format!(
        r#"{{"execute":"guest-set-user-password","arguments":{{"username":"{user}","password":"{password_b64}","crypted":{crypted}}}}}"#
    ))
}

fn generic(desc: &str) -> String {
    format!(r#"{{"error": {{"class": "GenericError", "desc": "{desc}"}}}}"#)
}

#[test]
fn passwords_are_set_plain_and_crypted_and_bad_input_changes_nothing() {
    let Some(etc) = ThrowAwayEtc::new() else {
        return;
    };
    let agent = etc.start(POLICY);
    let mut c = agent.connect();
    assert_eq!(etc.shadow_entry(USER), "!");

    // Every refusal leaves the account as it was.
    let cases = [
        (set(&mut c, USER, "!!!", false), generic("Base64 data contains invalid characters")),
        (
            set(&mut c, USER, &b64("x\nroot:y"), false),
            generic("forbidden characters in raw password"),
        ),
        (set(&mut c, "bad:0", &b64("x"), false), generic("forbidden characters in username")),
        (
            set(&mut c, "root", &b64("x"), false),
            generic(
                "denied by policy rule password.accounts: this account's password may not be set",
            ),
        ),
        (
            set(&mut c, "nosuchuser1", &b64("x"), false),
            generic(
                "Guest agent command failed, error was 'account \\\"nosuchuser1\\\" does not exist'",
            ),
        ),
    ];
    for (got, want) in &cases {
        assert_eq!(got, want);
    }
    assert_eq!(etc.shadow_entry(USER), "!");
    assert_eq!(etc.shadow_entry("root"), {
        // root's entry in the copy is the machine's own, untouched.
        let text = std::fs::read_to_string("/etc/shadow").expect("shadow");
        text.lines()
            .find_map(|l| l.strip_prefix("root:"))
            .map(|r| r.split(':').next().unwrap_or("").to_owned())
            .unwrap_or_default()
    });

    // Plain: chpasswd hashes it.
    assert_eq!(set(&mut c, USER, &b64(PASSWORD), false), r#"{"return": {}}"#);
    let hashed = etc.shadow_entry(USER);
    assert!(hashed.starts_with('$') && !hashed.contains(PASSWORD), "{hashed}");

    // The password is nowhere in either process's memory, in clear or as
    // the base64 the host sent, and not in the log or audit trail. (The
    // search does find what is there: the username.)
    assert!(memory_contains(agent.pid(), USER.as_bytes()), "the memory search finds nothing");
    for pid in [Some(agent.pid()), agent.frontend_pid()].into_iter().flatten() {
        for needle in [PASSWORD.to_owned(), b64(PASSWORD)] {
            assert!(
                !memory_contains(pid, needle.as_bytes()),
                "{needle:?} in the memory of pid {pid}"
            );
        }
    }
    let log = agent.log_text();
    assert!(!log.contains(PASSWORD) && !log.contains(&b64(PASSWORD)));
    assert!(log.contains(r#""command":"guest-set-user-password""#), "{log}");

    // Crypted: stored as given.
    let crypted =
        "$6$qgawsalt$5gHy7uW1QWg8DHlVlVJ3cnZ5fW5qWmJ0cm9vdA8yQWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo";
    assert_eq!(set(&mut c, USER, &b64(crypted), true), r#"{"return": {}}"#);
    assert_eq!(etc.shadow_entry(USER), crypted);
}

#[test]
fn plain_passwords_can_be_refused_by_the_policy() {
    let Some(etc) = ThrowAwayEtc::new() else {
        return;
    };
    let agent = etc.start(&POLICY.replace("allow_plaintext = true", "allow_plaintext = false"));
    let mut c = agent.connect();
    assert_eq!(
        set(&mut c, USER, &b64(PASSWORD), false),
        generic(
            "denied by policy rule password.allow_plaintext: only crypted passwords are accepted"
        )
    );
    assert_eq!(etc.shadow_entry(USER), "!");
}

/// Whether `needle` is in any writable mapping of `pid` (read through
/// /proc/PID/mem, as root).
fn memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else { continue };
        if !perms.starts_with("rw") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}
