//! qga-warden-frontend: the unprivileged half of qga-warden. It is started by
//! the broker (`qga-warden`), never by hand: its standard input is the IPC
//! socket to the broker, its standard error a pipe to the broker's log.
//!
//! It reads the host's bytes from the channel the broker hands it, parses and
//! validates them, asks the broker to act, and writes the replies.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use qga_warden_frontend::sandbox::{self, Identity, LandlockPolicy};
use qga_warden_frontend::{log, server};

struct Options {
    identity: Option<Identity>,
    landlock: LandlockPolicy,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut uid = None;
    let mut gid = None;
    let mut landlock = LandlockPolicy::BestEffort;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value")).cloned();
        match arg.as_str() {
            "--uid" => {
                uid = Some(value("--uid")?.parse::<u32>().map_err(|e| format!("--uid: {e}"))?)
            }
            "--gid" => {
                gid = Some(value("--gid")?.parse::<u32>().map_err(|e| format!("--gid: {e}"))?)
            }
            "--landlock" => {
                landlock = match value("--landlock")?.as_str() {
                    "required" => LandlockPolicy::Required,
                    "best-effort" => LandlockPolicy::BestEffort,
                    other => return Err(format!("--landlock: unknown value '{other}'")),
                }
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let identity = match (uid, gid) {
        (Some(uid), Some(gid)) => Some(Identity { uid, gid }),
        (None, None) => None,
        _ => return Err("--uid and --gid go together".into()),
    };
    Ok(Options { identity, landlock })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("--version" | "-V")) {
        println!("qga-warden-frontend {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("--parse-request") {
        return parse_request_tool();
    }
    let fail = |e: &dyn std::error::Error| {
        let mut msg = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cur = c.source();
        }
        log::line("error", format_args!("{msg}"));
        ExitCode::from(1)
    };
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            log::line(
                "error",
                format_args!("{e} (qga-warden-frontend is started by qga-warden, not by hand)"),
            );
            return ExitCode::from(1);
        }
    };
    // Everything the frontend will ever hold is opened before confinement:
    // standard input/output/error from the broker, and the SIGIO signalfd.
    if let Err(e) = sandbox::check_descriptors() {
        return fail(&e);
    }
    let sigio = match server::sigio_fd() {
        Ok(fd) => fd,
        Err(e) => return fail(&e),
    };
    let report = match sandbox::enter(opts.identity, opts.landlock) {
        Ok(r) => r,
        Err(e) => {
            fail(&e);
            // The broker stops rather than restart a frontend that cannot
            // confine itself.
            return ExitCode::from(ipc::EXIT_CANNOT_CONFINE);
        }
    };
    log::line(
        "info",
        format_args!(
            "confined: uid {} gid {}, no capabilities, no_new_privs, {}, seccomp allowlist",
            report.uid,
            report.gid,
            sandbox::LandlockReportDisplay(&report)
        ),
    );
    match server::run(sigio, report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `--parse-request`: for `qga-warden policy explain`, which parses no JSON
/// itself. Reads one request from standard input and writes it as an IPC
/// frame on standard output; a rejected request is described on standard
/// error (exit status 2).
fn parse_request_tool() -> ExitCode {
    use std::io::{Read, Write};
    let mut input = Vec::new();
    let limit = 64 * 1024 * 1024 + 1;
    if std::io::stdin().take(limit).read_to_end(&mut input).is_err() {
        return ExitCode::from(1);
    }
    match qga_warden_frontend::parse_request(&input) {
        Ok(request) => {
            let mut frame = Vec::new();
            match ipc::frame::encode_frame(&ipc::ToBroker::Request { seq: 0, request }, &mut frame)
            {
                Ok(()) if std::io::stdout().write_all(&frame).is_ok() => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        Err(desc) => {
            eprintln!("{desc}");
            ExitCode::from(2)
        }
    }
}
