//! Test helper: a compromised frontend. The broker starts it in place of
//! qga-warden-frontend (through a wrapper script given as `--frontend`); it
//! confines itself exactly as the real one does (code running inside the
//! sandbox is what an attacker would hold), says it is ready, then attacks
//! the broker over the socketpair. It reports on standard error, which the
//! broker copies into its log, in lines starting with `EVIL `.
//!
//! `evil-frontend SCENARIO [ARG] --uid N --gid N`
//! - `garbage`, `oversized`, `truncated`, `data-frame`: one bad frame.
//! - `hostile DIR`: requests outside the policy (DIR: the test's file area),
//!   each reply reported.
//! - `flood`: pings written while the broker takes them, without reading
//!   the replies; then the replies read and counted.

#![deny(unsafe_code)]

use std::os::fd::{AsFd, BorrowedFd};

use ipc::frame::{FrameReader, encode_frame};
use ipc::{
    Bytes, CaptureOutput, ExecRequest, FileMode, LogicalProcessor, PROTOCOL_VERSION, Request,
    Secret, ShutdownMode, ToBroker, ToFrontend,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use qga_warden_frontend::sandbox::{self, Identity, LandlockPolicy};

fn ipc() -> BorrowedFd<'static> {
    // The socketpair is the standard input, as for the real frontend; the
    // handle is static, and so is its descriptor.
    static STDIN: std::sync::OnceLock<std::io::Stdin> = std::sync::OnceLock::new();
    STDIN.get_or_init(std::io::stdin).as_fd()
}

fn send(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match nix::unistd::write(ipc(), rest) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("EVIL write failed: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn send_msg(msg: &ToBroker) {
    let mut frame = Vec::new();
    encode_frame(msg, &mut frame).expect("encode");
    send(&frame);
}

/// Reads messages until `want` replies have come (or the broker closes).
fn read_replies(reader: &mut FrameReader, want: usize, mut each: impl FnMut(u32, String)) -> usize {
    let mut got = 0;
    while got < want {
        while let Ok(Some(msg)) = reader.next_message::<ToFrontend>() {
            if let ToFrontend::Reply { seq, result } = msg {
                each(seq, format!("{result:?}"));
                got += 1;
            }
        }
        if got >= want {
            break;
        }
        let n = reader
            .fill_with(|buf| nix::unistd::read(ipc(), buf).map_err(std::io::Error::from))
            .unwrap_or(0);
        if n == 0 {
            eprintln!("EVIL the broker closed the socket");
            break;
        }
    }
    got
}

/// Waits until the broker ends this process (it kills a faulty frontend).
fn linger() -> ! {
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(ipc(), &mut buf) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) => {}
        }
    }
}

fn hostile(dir: &str) -> Vec<Request> {
    let exec = |path: &str, args: &[&str]| {
        Request::Exec(ExecRequest {
            path: path.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            input: None,
            capture: CaptureOutput::Separated,
        })
    };
    let open = |path: String| Request::FileOpen { path, mode: FileMode::R };
    vec![
        exec("/bin/sh", &["-c", "id"]),
        exec("/usr/bin/uptime\0/bin/sh", &[]),
        exec("/usr/bin/uptime", &["-p"]),
        exec("/usr/bin/../bin/sh", &[]),
        open("/etc/shadow".into()),
        open(format!("{dir}/../../etc/shadow")),
        open(format!("{dir}/x\0/etc/shadow")),
        open(format!("{dir}/{}", "n".repeat(70_000))),
        open(format!("{dir}/link")),
        Request::FileOpen { path: format!("{dir}/new"), mode: FileMode::W },
        Request::FileRead { handle: 999_999, count: Some(1) },
        Request::FileWrite { handle: 1000, data: Bytes(b"x".to_vec()), count: None },
        Request::FileClose { handle: -1 },
        Request::FileSeek { handle: i64::MAX, offset: 0, whence: 0 },
        Request::ExecStatus { pid: 1 },
        Request::ExecStatus { pid: i64::from(std::process::id()) },
        Request::SetUserPassword {
            username: "root".into(),
            password: Secret::new(b"x".to_vec().into()),
            crypted: true,
        },
        Request::FsfreezeFreezeList { mountpoints: Some(vec!["/".into()]) },
        Request::Shutdown { mode: ShutdownMode::Halt },
        Request::SetVcpus {
            vcpus: vec![LogicalProcessor { logical_id: 0, online: false, can_offline: None }],
        },
        Request::SetTime { time: Some(i64::MAX) },
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().cloned().unwrap_or_default();
    let arg = args.get(1).cloned().unwrap_or_default();
    let find = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    let identity = match (find("--uid"), find("--gid")) {
        (Some(uid), Some(gid)) => Some(Identity { uid, gid }),
        _ => None,
    };
    let report = sandbox::enter(identity, LandlockPolicy::BestEffort).unwrap_or_else(|e| {
        eprintln!("EVIL cannot confine: {e}");
        std::process::exit(78)
    });
    eprintln!("EVIL confined, scenario {scenario}");
    send_msg(&ToBroker::Ready { protocol_version: PROTOCOL_VERSION, sandbox: report });
    let mut reader = FrameReader::new();
    match scenario.as_str() {
        "garbage" => {
            let mut x: u32 = 0x1234_5678;
            let bytes: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            send(&bytes);
            linger();
        }
        "oversized" => {
            send(&0x7fff_ffffu32.to_le_bytes());
            linger();
        }
        "truncated" => {
            send(&1000u32.to_le_bytes());
            send(&[0u8; 10]);
            std::process::exit(0);
        }
        "data-frame" => {
            send(&(3u32 | ipc::limits::DATA_FRAME_FLAG).to_le_bytes());
            send(b"abc");
            linger();
        }
        "hostile" => {
            let requests = hostile(&arg);
            let n = requests.len();
            for (seq, request) in requests.into_iter().enumerate() {
                send_msg(&ToBroker::Request { seq: seq as u32, request });
            }
            let got = read_replies(&mut reader, n, |seq, reply| {
                eprintln!("EVIL reply {seq}: {reply}");
            });
            eprintln!("EVIL done {got} of {n}");
            linger();
        }
        "flood" => {
            let mut frame = Vec::new();
            let mut sent = 0usize;
            // Write while the broker takes them (poll says writable).
            loop {
                let mut fds = [PollFd::new(ipc(), PollFlags::POLLOUT)];
                let ready = poll(&mut fds, PollTimeout::from(500u16)).unwrap_or(0);
                if ready == 0 || sent >= 2_000_000 {
                    break;
                }
                frame.clear();
                for _ in 0..64 {
                    let msg = ToBroker::Request { seq: sent as u32, request: Request::Ping };
                    encode_frame(&msg, &mut frame).expect("encode");
                    sent += 1;
                }
                send(&frame);
            }
            eprintln!("EVIL flooded {sent}");
            // The test measures the broker now. (A poll on nothing: the
            // sandbox allows poll, not nanosleep.)
            let _ = poll(&mut [], PollTimeout::from(2000u16));
            let got = read_replies(&mut reader, sent, |_, _| {});
            eprintln!("EVIL flood replies {got}");
            linger();
        }
        other => {
            eprintln!("EVIL unknown scenario {other}");
            std::process::exit(2);
        }
    }
}
