//! The fuzz targets: what `fuzz/fuzz_targets/*.rs` run under libFuzzer
//! (`cargo +nightly fuzz run TARGET`), and what `tests/tests/fuzz_smoke.rs`
//! runs for a few seconds on stable in every test run. Each panics when an
//! invariant breaks.

use std::sync::OnceLock;

use ipc::frame::{Frame, FrameReader};
use ipc::{Request, ShutdownMode, ToBroker};
use policy::{Decision, Policy};
use serde_json::Value;

/// A fuzz target: bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("splitter", splitter),
    ("request", request),
    ("base64", base64),
    ("reply", reply),
    ("frames", frames),
    ("policy", policy_decision),
];

/// One reply line: a JSON object with `return` or `error`, then `\n`, and
/// no other newline.
fn check_reply_line(bytes: &[u8]) {
    let body = bytes.strip_suffix(b"\n").unwrap_or_else(|| panic!("no newline: {bytes:?}"));
    assert!(!body.contains(&b'\n'), "a newline inside a reply");
    // The writer's infinity, 1e999, is valid JSON that serde_json refuses
    // as out of range: read it as a finite number.
    let text = String::from_utf8_lossy(body).replace("1e999", "1e308");
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert!(v.get("return").is_some() || v.get("error").is_some(), "{v}");
}

/// The frontend's splitter, parser and argument checks on any bytes: every
/// error reply is valid JSON and short.
pub fn splitter(data: &[u8]) {
    for reply in qga_warden_frontend::fuzz::splitter(data) {
        check_reply_line(&reply);
    }
}

/// One request, parsed and validated; if accepted, it survives the IPC.
pub fn request(data: &[u8]) {
    qga_warden_frontend::fuzz::request(data);
}

pub fn base64(data: &[u8]) {
    qga_warden_frontend::fuzz::base64(data);
}

/// Any result the broker could send becomes one valid JSON reply line.
pub fn reply(data: &[u8]) {
    if let Some(line) = qga_warden_frontend::fuzz::reply(data) {
        check_reply_line(&line);
    }
}

/// The broker's side of the socketpair: any bytes, in any chunking, either
/// decode to messages or end in an error; the buffer stays within one frame.
pub fn frames(data: &[u8]) {
    let mut reader = FrameReader::new();
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1) * 7;
    let mut rest = data;
    while !rest.is_empty() {
        let filled = reader.fill_with(|buf| {
            let n = buf.len().min(rest.len()).min(step);
            buf[..n].copy_from_slice(&rest[..n]);
            Ok(n)
        });
        let Ok(n) = filled else {
            // Refused before growing the buffer: the broker drops the frontend.
            return;
        };
        rest = &rest[n..];
        assert!(reader.buffered() <= ipc::limits::MAX_FRAME_LEN + ipc::limits::FRAME_HEADER_LEN);
        loop {
            match reader.next_frame::<ToBroker>() {
                Ok(Some(Frame::Message(_) | Frame::Data(_))) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

fn policies() -> &'static [(&'static str, Policy)] {
    static P: OnceLock<Vec<(&'static str, Policy)>> = OnceLock::new();
    P.get_or_init(|| {
        let parse = |name: &'static str, text: &str| {
            (name, policy::parse(text, name).unwrap_or_else(|e| panic!("{name}: {e}")))
        };
        vec![
            ("built-in", Policy::built_in()),
            parse("locked-down", include_str!("../../examples/policy-locked-down.toml")),
            parse("operations", include_str!("../../examples/policy-operations.toml")),
        ]
    })
}

/// The policy on any request the broker could decode (from bincode, so
/// every field can be anything, beyond what the frontend would send): a
/// command denied as a whole is never run, and what the operations policy
/// allows satisfies, by an independent reading of that file, its rules.
pub fn policy_decision(data: &[u8]) {
    let Ok(request) = ipc::codec::decode::<Request>(data) else {
        return;
    };
    for (name, p) in policies() {
        let decision = p.decide(&request);
        let allowed = matches!(decision, Decision::Allow(_));
        if p.disabled_commands().contains(&request.command()) {
            assert!(
                matches!(decision, Decision::DenyCommand(_)),
                "{name}: {request:?} ran though its command is disabled"
            );
        }
        if allowed && *name == "operations" {
            operations_invariants(&request);
        }
    }
}

fn operations_invariants(request: &Request) {
    match request {
        Request::Exec(e) => {
            let allowed: &[(&str, Option<&[&str]>)] = &[
                ("/usr/bin/uptime", Some(&[])),
                ("/usr/bin/df", Some(&["-h"])),
                ("/usr/bin/systemctl", None),
                ("/usr/bin/journalctl", None),
            ];
            let Some((_, args)) = allowed.iter().find(|(p, _)| *p == e.path) else {
                panic!("a program outside the policy ran: {:?}", e.path);
            };
            if let Some(args) = args {
                assert_eq!(&e.args, args, "{e:?}");
            }
            assert!(e.input.is_none(), "input-data allowed: {e:?}");
            for var in &e.env {
                let name = var.split('=').next().unwrap_or("");
                assert!(name == "LANG" || name == "LC_ALL", "variable {var:?} allowed");
            }
            if e.path == "/usr/bin/systemctl" {
                assert!(e.args.len() <= 4, "{e:?}");
                assert!(matches!(e.args[0].as_str(), "status" | "is-active" | "is-failed"));
                assert!(e.args.iter().all(|a| !a.contains(['/', ';', ' ', '\n', '\0'])), "{e:?}");
            }
        }
        Request::FileOpen { path, mode } => {
            // As the kernel reads it: "//var/log/x" and "/var/log/./x" are
            // /var/log/x.
            let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
            assert!(path.starts_with('/'), "{path:?} opened");
            assert!(parts.len() > 2 && parts[..2] == ["var", "log"], "{path:?} opened");
            assert!(!path.contains('\0') && !parts.contains(&".."), "{path:?}");
            assert!(
                matches!(mode, ipc::FileMode::R | ipc::FileMode::Rb),
                "{path:?} opened with {mode:?}"
            );
        }
        Request::SetUserPassword { username, crypted, .. } => {
            assert_ne!(username, "root");
            assert!(crypted, "a plain password allowed");
        }
        Request::Shutdown { mode } => {
            assert!(matches!(mode, ShutdownMode::Reboot | ShutdownMode::Powerdown), "{mode:?}");
        }
        Request::SuspendDisk | Request::SuspendRam | Request::SuspendHybrid => {
            panic!("suspend allowed: {request:?}")
        }
        Request::FileWrite { .. } => panic!("guest-file-write allowed"),
        _ => {}
    }
}

/// Seeds for every target: real requests of every command, as hosts send
/// them, and for the other targets their encodings.
pub fn seed_requests() -> Vec<&'static str> {
    vec![
        r#"{"execute":"guest-sync-delimited","arguments":{"id":123}}"#,
        r#"{"execute":"guest-sync","arguments":{"id":-1}}"#,
        r#"{"execute":"guest-ping","id":"x"}"#,
        r#"{"execute":"guest-info"}"#,
        r#"{"execute":"guest-get-time"}"#,
        r#"{"execute":"guest-set-time","arguments":{"time":1700000000000000000}}"#,
        r#"{"execute":"guest-set-time"}"#,
        r#"{"execute":"guest-shutdown","arguments":{"mode":"reboot"}}"#,
        r#"{"execute":"guest-file-open","arguments":{"path":"/var/log/syslog","mode":"r"}}"#,
        r#"{"execute":"guest-file-close","arguments":{"handle":1000}}"#,
        r#"{"execute":"guest-file-read","arguments":{"handle":1000,"count":4096}}"#,
        r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"aGVsbG8=","count":3}}"#,
        r#"{"execute":"guest-file-seek","arguments":{"handle":1000,"offset":-2,"whence":"end"}}"#,
        r#"{"execute":"guest-file-flush","arguments":{"handle":1000}}"#,
        r#"{"execute":"guest-fsfreeze-status"}"#,
        r#"{"execute":"guest-fsfreeze-freeze"}"#,
        r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/","/srv"]}}"#,
        r#"{"execute":"guest-fsfreeze-thaw"}"#,
        r#"{"execute":"guest-fstrim","arguments":{"minimum":65536}}"#,
        r#"{"execute":"guest-suspend-disk"}"#,
        r#"{"execute":"guest-suspend-ram"}"#,
        r#"{"execute":"guest-suspend-hybrid"}"#,
        r#"{"execute":"guest-network-get-interfaces"}"#,
        r#"{"execute":"guest-get-vcpus"}"#,
        r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":false}]}}"#,
        r#"{"execute":"guest-get-fsinfo"}"#,
        r#"{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"JDYkc2FsdCRoYXNo","crypted":true}}"#,
        r#"{"execute":"guest-get-memory-blocks"}"#,
        r#"{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":32,"online":true}]}}"#,
        r#"{"execute":"guest-get-memory-block-info"}"#,
        r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/systemctl","arg":["status","ssh.service"],"env":["LANG=C"],"capture-output":true}}"#,
        r#"{"execute":"guest-exec-status","arguments":{"pid":1234}}"#,
        "\u{ff}{'execute':'guest-ping'}",
        r#"[{"a":[1,2.5e3,-0,true,null,"\u00e9\ud83d\ude00"]}]"#,
    ]
}

/// The seed corpus of `target`, built from [`seed_requests`].
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let requests = seed_requests();
    let parsed =
        || requests.iter().filter_map(|r| qga_warden_frontend::parse_request(r.as_bytes()).ok());
    match target {
        "splitter" | "request" => {
            let mut v: Vec<Vec<u8>> = requests.iter().map(|r| r.as_bytes().to_vec()).collect();
            v.push(requests.concat().into_bytes());
            v
        }
        "base64" => vec![
            b"aGVsbG8gd29ybGQ=".to_vec(),
            b"aGk=\naGk=".to_vec(),
            b"=".to_vec(),
            b"!!!".to_vec(),
        ],
        "policy" => {
            let mut v = Vec::new();
            for r in parsed() {
                let mut out = Vec::new();
                if ipc::codec::encode(&r, &mut out).is_ok() {
                    v.push(out);
                }
            }
            v
        }
        "frames" => {
            let mut all = Vec::new();
            let mut v = Vec::new();
            for (seq, request) in parsed().enumerate() {
                let mut one = Vec::new();
                let msg = ToBroker::Request { seq: seq as u32, request };
                if ipc::frame::encode_frame(&msg, &mut one).is_ok() {
                    all.extend_from_slice(&one);
                    v.push(one);
                }
            }
            v.push(all);
            v
        }
        "reply" => {
            let results: Vec<Result<ipc::Response, ipc::OpError>> = vec![
                Ok(ipc::Response::Empty),
                Ok(ipc::Response::Int(-5)),
                Ok(ipc::Response::FileRead { count: 5, eof: true }),
                Ok(ipc::Response::FsfreezeStatus(ipc::FreezeStatus::Frozen)),
                Ok(ipc::Response::MemoryBlockInfo { size: 134217728 }),
                Err(ipc::OpError::Denied { rule: "exec.program: \"quoted\"\n".into() }),
                Err(ipc::OpError::FileOpen {
                    path: "/tmp/\u{1}x".into(),
                    mode: ipc::FileMode::R,
                    errno: 2,
                }),
            ];
            results
                .iter()
                .filter_map(|r| {
                    let mut out = Vec::new();
                    ipc::codec::encode(r, &mut out).ok().map(|()| out)
                })
                .collect()
        }
        _ => Vec::new(),
    }
}
