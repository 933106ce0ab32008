use ipc::{Bytes, CaptureOutput, LogicalProcessor, MemoryBlock, Secret};

use super::*;

fn policy(text: &str) -> Policy {
    parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn exec(path: &str, args: &[&str]) -> Request {
    Request::Exec(ExecRequest {
        path: path.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        input: None,
        capture: CaptureOutput::None,
    })
}

fn open(path: &str, mode: FileMode) -> Request {
    Request::FileOpen { path: path.into(), mode }
}

fn denied_arg(d: Decision) -> Rule {
    match d {
        Decision::DenyArgument(r) => r,
        other => panic!("not an argument denial: {other:?}"),
    }
}

#[test]
fn the_default_text_is_the_built_in_policy() {
    let parsed = parse(DEFAULT_POLICY, "default").expect("the default parses");
    assert_eq!(parsed, Policy::built_in());
}

/// The packages install `packaging/policy.toml` as
/// /etc/qga-warden/policy.toml ([`DEFAULT_POLICY_PATH`], which the broker
/// reads when it exists): as shipped it must decide exactly as the built-in
/// default does, so that installing the package changes nothing.
#[test]
fn the_shipped_policy_file_is_the_built_in_policy() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/policy.toml");
    let shipped = load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    assert!(shipped.source.is_some());
    let built_in = Policy::built_in();
    assert_eq!(Policy { source: None, ..shipped.clone() }, built_in);
    for &c in Command::ALL {
        assert_eq!(shipped.command_enabled(c), built_in.command_enabled(c), "{c}");
    }
    assert_eq!(DEFAULT_POLICY_PATH, "/etc/qga-warden/policy.toml");
    // Its comments are its own (it says where it is installed), but its
    // settings are the default's, line for line.
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let text = std::fs::read_to_string(path).expect("read");
    assert_eq!(settings(&text), settings(DEFAULT_POLICY));
    assert!(text.starts_with("# /etc/qga-warden/policy.toml"));
}

#[test]
fn built_in_default_denies_exec_and_files_only() {
    let p = Policy::built_in();
    for &c in Command::ALL {
        let denied = c.name().starts_with("guest-exec") || c.name().starts_with("guest-file-");
        assert_eq!(p.command_enabled(c), !denied, "{c}");
    }
    assert_eq!(p.decide(&exec("/bin/true", &[])), Decision::DenyCommand(Rule::CommandDenied));
}

#[test]
fn permissive_allows_anything() {
    let p = Policy::permissive();
    assert!(Command::ALL.iter().all(|&c| p.command_enabled(c)));
    assert!(p.decide(&exec("ls", &["-l", "/"])).is_allowed());
    assert!(p.decide(&open("/etc/shadow", FileMode::W)).is_allowed());
}

#[test]
fn command_lists() {
    let p = policy("[commands]\ndefault = \"deny\"\nallow = [\"guest-ping\", \"guest-info\"]\n");
    assert!(p.command_enabled(Command::Ping));
    assert_eq!(p.command_rule(Command::GetTime), Some(Rule::CommandNotAllowed));
    let mut p = policy("[commands]\ndeny = [\"guest-shutdown\"]\n");
    assert_eq!(p.command_rule(Command::Shutdown), Some(Rule::CommandDenied));
    assert!(p.command_enabled(Command::Exec), "a [commands] section replaces the built-in one");
    p.block([Command::Ping]);
    p.restrict_to([Command::Ping, Command::Info]);
    assert_eq!(p.command_rule(Command::Ping), Some(Rule::BlockRpcs));
    assert_eq!(p.command_rule(Command::Exec), Some(Rule::AllowRpcs));
    assert!(p.command_enabled(Command::Info));
}

const OPS: &str = r#"
[commands]
default = "allow"

[exec]
run_as = "nobody"
timeout_seconds = 30
allow_input = false
env = ["LANG", "LC_*"]

[[exec.program]]
path = "/usr/bin/systemctl"
args = ["status|is-active"]
more_args = "[a-z0-9@._-]+\\.service"
max_args = 3

[[exec.program]]
path = "/usr/bin/uptime"

[[exec.program]]
path = "/usr/local/bin/backup-*"
run_as = "backup"
allow_input = true
timeout_seconds = 600

[files]
max_handles = 4

[[files.rule]]
dir = "/var/log"
pattern = "**/*.log"
access = ["read"]

[[files.rule]]
dir = "/srv/drop"
access = ["read", "write", "create"]

[password]
accounts = ["*"]
deny_accounts = ["root", "admin*"]
allow_plaintext = false

[fsfreeze]
mountpoints = ["/", "/srv/**"]

[vcpus]
min_online = 2
ids = [1, "2-3"]

[memory_blocks]
ids = ["32-63"]

[power]
modes = ["reboot"]

[time]
max_step_seconds = 60
"#;

#[test]
fn exec_rules() {
    let p = policy(OPS);
    match p.decide(&exec("/usr/bin/systemctl", &["status", "ssh.service"])) {
        Decision::Allow(Grant::Exec(g)) => {
            assert_eq!(g.run_as, "nobody");
            assert_eq!(g.timeout_seconds, Some(30));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        denied_arg(p.decide(&exec("/usr/bin/systemctl", &["stop", "ssh.service"]))),
        Rule::ExecArgs
    );
    assert_eq!(
        denied_arg(p.decide(&exec("/usr/bin/systemctl", &["status", "a;b"]))),
        Rule::ExecArgs
    );
    assert_eq!(
        denied_arg(p.decide(&exec(
            "/usr/bin/systemctl",
            &["status", "a.service", "b.service", "c.service"]
        ))),
        Rule::ExecArgs
    );
    assert!(p.decide(&exec("/usr/bin/uptime", &[])).is_allowed());
    assert_eq!(denied_arg(p.decide(&exec("/usr/bin/uptime", &["-p"]))), Rule::ExecArgs);
    assert_eq!(denied_arg(p.decide(&exec("/bin/sh", &["-c", "id"]))), Rule::ExecProgram);
    assert_eq!(denied_arg(p.decide(&exec("uptime", &[]))), Rule::ExecProgram, "relative path");
    assert_eq!(
        denied_arg(p.decide(&exec("/usr/bin/../bin/uptime", &[]))),
        Rule::ExecProgram,
        "'..' never matches"
    );
    assert_eq!(
        denied_arg(p.decide(&exec("/usr/local/bin/backup-x/../../../bin/sh", &[]))),
        Rule::ExecProgram
    );
    match p.decide(&exec("/usr/local/bin/backup-db", &[])) {
        Decision::Allow(Grant::Exec(g)) => {
            assert_eq!((g.run_as.as_str(), g.timeout_seconds), ("backup", Some(600)))
        }
        other => panic!("{other:?}"),
    }
    let with = |env: &[&str], input: bool| {
        Request::Exec(ExecRequest {
            path: "/usr/bin/uptime".into(),
            args: vec![],
            env: env.iter().map(|s| s.to_string()).collect(),
            input: input.then(|| Bytes(b"x".to_vec())),
            capture: CaptureOutput::Separated,
        })
    };
    assert!(p.decide(&with(&["LANG=C", "LC_ALL=C"], false)).is_allowed());
    assert_eq!(denied_arg(p.decide(&with(&["LD_PRELOAD=/tmp/x.so"], false))), Rule::ExecEnv);
    assert_eq!(denied_arg(p.decide(&with(&["LANG"], false))), Rule::ExecEnv, "no '='");
    assert_eq!(denied_arg(p.decide(&with(&[], true))), Rule::ExecInput);
}

#[test]
fn file_rules_are_component_wise_and_reject_traversal() {
    let p = policy(OPS);
    match p.decide(&open("/var/log/app/x.log", FileMode::R)) {
        Decision::Allow(Grant::FileOpen(g)) => {
            assert_eq!(g.base, PathBuf::from("/var/log"));
            assert_eq!(g.relative, PathBuf::from("app/x.log"));
            assert!(!g.may_create);
            assert_eq!(g.max_handles, 4);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(denied_arg(p.decide(&open("/var/log/x.log", FileMode::W))), Rule::FileAccess);
    assert_eq!(
        denied_arg(p.decide(&open("/var/logs/x.log", FileMode::R))),
        Rule::FileAccess,
        "not a string prefix"
    );
    assert_eq!(
        denied_arg(p.decide(&open("/var/log/../../etc/shadow.log", FileMode::R))),
        Rule::FilePath
    );
    assert_eq!(denied_arg(p.decide(&open("/var/log/x.log\0", FileMode::R))), Rule::FilePath);
    assert_eq!(denied_arg(p.decide(&open("var/log/x.log", FileMode::R))), Rule::FilePath);
    assert_eq!(
        denied_arg(p.decide(&open("/var/log", FileMode::R))),
        Rule::FileAccess,
        "the directory itself"
    );
    assert!(
        p.decide(&open("//var/./log//a.log", FileMode::R)).is_allowed(),
        "empty and '.' components"
    );
    match p.decide(&open("/srv/drop/new", FileMode::W)) {
        Decision::Allow(Grant::FileOpen(g)) => assert!(g.may_create),
        other => panic!("{other:?}"),
    }
    assert!(p.decide(&open("/srv/drop/f", FileMode::A)).is_allowed(), "write covers append");
    assert!(p.decide(&open("/srv/drop/f", FileMode::RPlusB)).is_allowed());
}

#[test]
fn password_rules() {
    let p = policy(OPS);
    let pw = |user: &str, crypted: bool| Request::SetUserPassword {
        username: user.into(),
        password: Secret::default(),
        crypted,
    };
    assert!(p.decide(&pw("alice", true)).is_allowed());
    assert_eq!(denied_arg(p.decide(&pw("alice", false))), Rule::PasswordPlaintext);
    assert_eq!(denied_arg(p.decide(&pw("root", true))), Rule::PasswordAccount);
    assert_eq!(denied_arg(p.decide(&pw("administrator", true))), Rule::PasswordAccount);
}

#[test]
fn mounts_hotplug_power() {
    let p = policy(OPS);
    let list = |m: &[&str]| Request::FsfreezeFreezeList {
        mountpoints: Some(m.iter().map(|s| s.to_string()).collect()),
    };
    assert!(p.decide(&list(&["/", "/srv/data"])).is_allowed());
    assert_eq!(denied_arg(p.decide(&list(&["/", "/home"]))), Rule::FreezeMountpoint);
    match p.decide(&Request::FsfreezeFreeze) {
        Decision::Allow(Grant::Mounts(m)) => {
            assert!(m.allows("/srv/x"));
            assert!(!m.allows("/home"));
        }
        other => panic!("{other:?}"),
    }
    let cpus = |ids: &[i64]| Request::SetVcpus {
        vcpus: ids
            .iter()
            .map(|&i| LogicalProcessor { logical_id: i, online: false, can_offline: None })
            .collect(),
    };
    assert_eq!(p.decide(&cpus(&[1, 3])), Decision::Allow(Grant::Vcpus { min_online: 2 }));
    assert_eq!(denied_arg(p.decide(&cpus(&[0]))), Rule::VcpuIds);
    assert_eq!(denied_arg(p.decide(&cpus(&[-1]))), Rule::VcpuIds);
    let blocks = |ids: &[u64]| Request::SetMemoryBlocks {
        blocks: ids
            .iter()
            .map(|&i| MemoryBlock { phys_index: i, online: true, can_offline: None })
            .collect(),
    };
    assert!(p.decide(&blocks(&[32, 63])).is_allowed());
    assert_eq!(denied_arg(p.decide(&blocks(&[64]))), Rule::MemoryBlockIds);
    assert!(p.decide(&Request::Shutdown { mode: ShutdownMode::Reboot }).is_allowed());
    assert_eq!(
        denied_arg(p.decide(&Request::Shutdown { mode: ShutdownMode::Halt })),
        Rule::PowerMode
    );
    assert_eq!(denied_arg(p.decide(&Request::SuspendRam)), Rule::PowerMode);
    assert_eq!(
        p.decide(&Request::SetTime { time: Some(1) }),
        Decision::Allow(Grant::SetTime { max_step_seconds: Some(60) })
    );
}

#[test]
fn rule_texts_do_not_reveal_the_policy() {
    let p = policy(OPS);
    let text = denied_arg(p.decide(&exec("/bin/sh", &[]))).to_string();
    assert_eq!(text, "exec.program: this program may not be run");
    assert!(!text.contains("systemctl"));
}

#[test]
fn the_example_policies_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let p = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(p.source.is_some());
            names.push(path.file_name().expect("name").to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    let permissive = names.iter().find(|n| n.contains("permissive")).expect("a permissive example");
    let p = load(&std::path::Path::new(dir).join(permissive)).expect("parses");
    assert!(Command::ALL.iter().all(|&c| p.command_enabled(c)));
    assert!(p.decide(&exec("/usr/bin/id", &["-u"])).is_allowed());
    assert!(p.decide(&open("/etc/hostname", FileMode::R)).is_allowed());
}

#[test]
fn load_records_the_hash() {
    let dir = std::env::temp_dir().join(format!("qga-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("p.toml");
    std::fs::write(&path, "version = 1\n").expect("write");
    let p = load(&path).expect("loads");
    let source = p.source.expect("source");
    assert_eq!(source.sha256.len(), 64);
    // sha256("version = 1\n")
    assert_eq!(source.sha256, sha256_hex(b"version = 1\n"));
    std::fs::write(&path, vec![0xff, 0xfe]).expect("write");
    assert!(load(&path).expect_err("not UTF-8").to_string().contains("not valid UTF-8"));
    let _ = std::fs::remove_dir_all(&dir);
}
