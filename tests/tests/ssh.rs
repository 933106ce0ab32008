//! guest-ssh-*-authorized-keys through the real binaries, as a host calls
//! them, for an account that exists only in a throw-away /etc: the agent
//! runs in its own mount namespace with a copy of this machine's /etc
//! bind-mounted over /etc, holding an account whose home is a directory the
//! test made. Nothing outside the test's directories can change. Needs root
//! and `unshare`; skipped (saying so) otherwise, unless
//! QGA_WARDEN_FS_TESTS=require.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use qga_warden_tests::{Agent, Client, TempDir};

const USER: &str = "qgawssh";
const UID: u32 = 4343;
/// Real keys, made with ssh-keygen.
const KEY1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIIkpnHIoGT8CbE92RDb0j0ey9oPJUKfPyt++VBFvj1 test@host";
const KEY1_FP: &str = "SHA256:QaU0kUPmBGlCgbLYLZMI8y5Qx25Aubc8SNRXYJJmPbs";
const KEY2: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFxLId2Lcixd/+f3C4QWjBe2j6vwVhLLR0gBnkbDjePh7yY9AzQUtsPgaAxiJPQVeDZ/OVty4eWbPaeOS32xWwc= ec@example";

struct Guest {
    dir: TempDir,
}

impl Guest {
    fn new() -> Option<Guest> {
        let skip = |why: &str| {
            if std::env::var("QGA_WARDEN_FS_TESTS").as_deref() == Ok("require") {
                panic!("ssh test: {why} (and QGA_WARDEN_FS_TESTS=require)");
            }
            qga_warden_tests::vm::note(&format!("SKIPPED: ssh test: {why}"));
            None
        };
        if !nix::unistd::Uid::effective().is_root() {
            return skip("needs root (a mount namespace, an account's identity)");
        }
        if !Path::new("/usr/bin/unshare").exists() {
            return skip("needs unshare (util-linux)");
        }
        let dir = TempDir::new("ssh");
        // The home must be reachable by the account: TempDir is 0700.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let etc = dir.path().join("etc");
        let status = Command::new("cp").args(["-a", "/etc"]).arg(&etc).status().expect("cp");
        assert!(status.success(), "copying /etc");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home");
        std::os::unix::fs::chown(&home, Some(UID), Some(UID)).expect("chown home");
        let append = |file: &str, line: &str| {
            let path = etc.join(file);
            let mut text = std::fs::read_to_string(&path).expect("read");
            text.push_str(line);
            std::fs::write(&path, text).expect("write");
        };
        append("passwd", &format!("{USER}:x:{UID}:{UID}::{}:/usr/sbin/nologin\n", home.display()));
        append("group", &format!("{USER}:x:{UID}:\n"));
        Some(Guest { dir })
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn keys_file(&self) -> PathBuf {
        self.home().join(".ssh/authorized_keys")
    }

    fn start(&self, policy: &str) -> Agent {
        Agent::start_over_etc(policy, &self.dir.path().join("etc"))
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

fn add(c: &mut Client, user: &str, keys: &[&str], reset: Option<bool>) -> String {
    let keys: Vec<String> = keys.iter().map(|k| json(k)).collect();
    let reset = reset.map_or(String::new(), |r| format!(r#","reset":{r}"#));
    c.call(&format!(
        r#"{{"execute":"guest-ssh-add-authorized-keys","arguments":{{"username":"{user}","keys":[{}]{reset}}}}}"#,
        keys.join(",")
    ))
}

fn remove(c: &mut Client, user: &str, keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| json(k)).collect();
    c.call(&format!(
        r#"{{"execute":"guest-ssh-remove-authorized-keys","arguments":{{"username":"{user}","keys":[{}]}}}}"#,
        keys.join(",")
    ))
}

fn get(c: &mut Client, user: &str) -> String {
    c.call(&format!(
        r#"{{"execute":"guest-ssh-get-authorized-keys","arguments":{{"username":"{user}"}}}}"#
    ))
}

fn keys_reply(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| json(k)).collect();
    format!(r#"{{"return": {{"keys": [{}]}}}}"#, keys.join(", "))
}

/// As qemu's JSON writer quotes it: non-ASCII as `\uXXXX`.
fn generic(desc: &str) -> String {
    let mut quoted = String::new();
    for c in json(desc).chars() {
        if c.is_ascii() {
            quoted.push(c);
        } else {
            quoted.push_str(&format!("\\u{:04X}", c as u32));
        }
    }
    format!(r#"{{"error": {{"class": "GenericError", "desc": {quoted}}}}}"#)
}

const OK: &str = r#"{"return": {}}"#;

#[test]
fn keys_are_added_listed_removed_and_reset_as_the_account() {
    let Some(g) = Guest::new() else {
        return;
    };
    let agent = g.start("version = 1\n");
    let mut c = agent.connect();
    let path = g.keys_file();
    let missing = format!(
        "failed to read '{0}': Failed to open file \u{201c}{0}\u{201d}: No such file or directory",
        path.display()
    );
    assert_eq!(get(&mut c, USER), generic(&missing));

    assert_eq!(add(&mut c, USER, &[KEY1, KEY2], None), OK);
    let ssh = std::fs::metadata(g.home().join(".ssh")).expect(".ssh");
    assert_eq!((ssh.mode() & 0o7777, ssh.uid(), ssh.gid()), (0o700, UID, UID));
    let file = std::fs::metadata(&path).expect("authorized_keys");
    assert_eq!((file.mode() & 0o7777, file.uid(), file.gid()), (0o600, UID, UID));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), format!("{KEY1}\n{KEY2}\n"));
    // qemu-ga lists the keys last first.
    assert_eq!(get(&mut c, USER), keys_reply(&[KEY2, KEY1]));

    // Comments, options and blank lines the user wrote are kept.
    let mine = format!("# mine\n\nfrom=\"10.0.0.1\" {KEY1}\n{KEY2}\n");
    std::fs::write(&path, &mine).expect("write");
    let inode = std::fs::metadata(&path).expect("stat").ino();
    assert_eq!(add(&mut c, USER, &[KEY2], None), OK, "already there");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), mine);
    assert_eq!(std::fs::metadata(&path).expect("stat").ino(), inode, "not rewritten");
    assert_eq!(add(&mut c, USER, &[KEY1], None), OK);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), format!("{mine}{KEY1}\n"));
    assert_eq!(remove(&mut c, USER, &[KEY1]), OK);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), mine);
    assert_eq!(get(&mut c, USER), keys_reply(&[KEY2, &format!("from=\"10.0.0.1\" {KEY1}")]));

    assert_eq!(add(&mut c, USER, &[KEY1], Some(true)), OK);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), format!("{KEY1}\n"));
    assert_eq!(remove(&mut c, USER, &[KEY1, KEY2]), OK);
    assert_eq!(get(&mut c, USER), keys_reply(&[]));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(g.home().join(".ssh"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["authorized_keys"]);

    // Each change is audited with the account and the keys' fingerprints.
    let audit = agent.audit_lines();
    let added = audit
        .iter()
        .find(|l| l.contains("guest-ssh-add-authorized-keys") && l.contains("\"allow\""))
        .expect("an audit record of the add");
    assert!(added.contains(USER) && added.contains(KEY1_FP), "{added}");
    assert!(!audit.iter().any(|l| l.contains("AAAAC3NzaC1lZDI1NTE5")), "keys are not copied");
}

#[test]
fn malformed_keys_and_denied_accounts_change_nothing() {
    let Some(g) = Guest::new() else {
        return;
    };
    let agent = g.start("version = 1\n");
    let mut c = agent.connect();
    assert_eq!(add(&mut c, USER, &[KEY1], None), OK);
    let path = g.keys_file();
    let before = std::fs::read(&path).expect("read");
    let invalid = |k: &str| generic(&format!("invalid OpenSSH public key: '{k}'"));
    let body = KEY1.split(' ').nth(1).expect("body");
    // A well-formed key of a type the default policy does not list.
    let dss = {
        use base64::Engine;
        let mut blob = vec![0, 0, 0, 7];
        blob.extend_from_slice(b"ssh-dss");
        blob.extend_from_slice(&[0, 0, 0, 1, 0x42]);
        format!("ssh-dss {}", base64::engine::general_purpose::STANDARD.encode(blob))
    };
    for (keys, want) in [
        (vec!["#comment"], invalid("#comment")),
        (vec!["ssh-ed25519 !!!notbase64"], invalid("ssh-ed25519 !!!notbase64")),
        // The blob says ed25519, the line says ecdsa.
        (
            vec![&*format!("ecdsa-sha2-nistp256 {body}")],
            invalid(&format!("ecdsa-sha2-nistp256 {body}")),
        ),
        (vec![KEY2, "a\nb"], invalid("a\nb")),
        (vec![""], invalid("")),
        (
            vec![&*dss],
            generic("denied by policy rule ssh.key_types: this key type is not accepted"),
        ),
        (
            vec![&*format!("command=\"/bin/sh\" {KEY2}")],
            generic("denied by policy rule ssh.allow_options: key options are not accepted"),
        ),
    ] {
        assert_eq!(add(&mut c, USER, &keys, None), want, "{keys:?}");
    }
    assert_eq!(
        add(&mut c, "root", &[KEY1], None),
        generic("denied by policy rule ssh.accounts: this account's keys may not be managed")
    );
    assert_eq!(
        get(&mut c, "root"),
        generic("denied by policy rule ssh.accounts: this account's keys may not be managed")
    );
    assert_eq!(
        add(&mut c, "qgaw-no-such-user", &[KEY1], None),
        generic("failed to lookup user 'qgaw-no-such-user': Success")
    );
    let many: Vec<&str> = std::iter::repeat_n(KEY1, 65).collect();
    assert_eq!(
        add(&mut c, USER, &many, None),
        generic("denied by policy rule ssh.max_keys: too many keys in one request")
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
    // Every refusal is audited: by the policy (deny) or by the checks of
    // the keys (error).
    let refused = agent
        .audit_lines()
        .into_iter()
        .filter(|l| {
            l.contains("guest-ssh-add-authorized-keys")
                && (l.contains("\"decision\":\"deny\"") || l.contains("\"outcome\":\"error\""))
        })
        .count();
    assert_eq!(refused, 10, "every refusal is audited");

    // A policy that allows options and root's keys.
    drop(c);
    drop(agent);
    let agent = g.start("version = 1\n[ssh]\nallow_options = true\n");
    let mut c = agent.connect();
    let with_options = format!("command=\"/usr/bin/uptime\",no-pty {KEY2}");
    assert_eq!(add(&mut c, USER, &[&with_options], None), OK);
    assert!(std::fs::read_to_string(&path).expect("read").ends_with(&format!("{with_options}\n")));
}

#[test]
fn symbolic_links_out_of_the_home_are_refused() {
    let Some(g) = Guest::new() else {
        return;
    };
    let agent = g.start("version = 1\n");
    let mut c = agent.connect();
    // Stand-ins for /root/.ssh and /etc/shadow, outside the home.
    let outside = g.dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("authorized_keys"), "root's key\n").expect("write");
    let secret = g.dir.path().join("shadow");
    std::fs::write(&secret, "root:$6$hash:1::::::\n").expect("write");
    let home = g.home();
    let chown = |p: &Path| {
        std::os::unix::fs::lchown(p, Some(UID), Some(UID)).expect("lchown");
    };

    // ~/.ssh -> a directory outside the home.
    std::os::unix::fs::symlink(&outside, home.join(".ssh")).expect("symlink");
    chown(&home.join(".ssh"));
    let reply = add(&mut c, USER, &[KEY1], None);
    assert!(reply.contains("GenericError"), "{reply}");
    let reply = add(&mut c, USER, &[KEY1], Some(true));
    assert!(reply.contains("GenericError"), "{reply}");
    let reply = remove(&mut c, USER, &["root's key"]);
    assert!(reply.contains("GenericError"), "{reply}");
    let reply = get(&mut c, USER);
    assert!(reply.contains("GenericError"), "{reply}");
    assert_eq!(
        std::fs::read_to_string(outside.join("authorized_keys")).expect("read"),
        "root's key\n"
    );
    assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 1, "nothing created outside");

    // ~/.ssh/authorized_keys -> a file outside the home.
    std::fs::remove_file(home.join(".ssh")).expect("rm");
    std::fs::create_dir(home.join(".ssh")).expect("mkdir");
    chown(&home.join(".ssh"));
    std::os::unix::fs::symlink(&secret, home.join(".ssh/authorized_keys")).expect("symlink");
    chown(&home.join(".ssh/authorized_keys"));
    for reply in [
        add(&mut c, USER, &[KEY1], None),
        add(&mut c, USER, &[KEY1], Some(true)),
        remove(&mut c, USER, &["root:$6$hash:1::::::"]),
        get(&mut c, USER),
    ] {
        assert!(reply.contains("GenericError"), "{reply}");
    }
    assert_eq!(std::fs::read_to_string(&secret).expect("read"), "root:$6$hash:1::::::\n");
    assert!(
        std::fs::symlink_metadata(home.join(".ssh/authorized_keys"))
            .expect("lstat")
            .file_type()
            .is_symlink()
    );

    // A file only root may read stays unread: the child is the account.
    std::fs::remove_file(home.join(".ssh/authorized_keys")).expect("rm");
    std::fs::write(home.join(".ssh/authorized_keys"), format!("{KEY1}\n")).expect("write");
    std::fs::set_permissions(
        home.join(".ssh/authorized_keys"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let reply = get(&mut c, USER);
    assert!(reply.contains("Permission denied"), "read as the account, not as root: {reply}");
}
