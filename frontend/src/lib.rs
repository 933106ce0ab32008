//! The unprivileged half of qga-warden as a library: the binary
//! `qga-warden-frontend` is a thin `main` around [`server::run`], and the
//! sandbox tests drive [`sandbox`] directly.

#![forbid(unsafe_code)]

mod args;
mod base64;
mod commands;
pub mod fuzz;
mod json;
pub mod log;
mod qmp;
mod reply;
pub mod sandbox;
pub mod server;

/// Parses one request as the running frontend would (every command taken
/// as enabled): for `qga-warden policy explain`. The error is qemu-ga's
/// description of why the request was rejected.
pub fn parse_request(input: &[u8]) -> Result<ipc::Request, String> {
    let mut splitter = json::Splitter::new();
    let mut events = Vec::new();
    splitter.feed(input, &mut |e| events.push(e));
    // A trailing token (a number) only ends at the next byte.
    splitter.feed(b" ", &mut |e| events.push(e));
    let describe = |e: qmp::RequestError| String::from_utf8_lossy(&e.describe().1).into_owned();
    match events.into_iter().next() {
        Some(json::Event::Value(v)) => match qmp::interpret(v, &ipc::CommandStates::default()) {
            Ok(qmp::Call { kind: qmp::CallKind::Request(r), .. }) => Ok(r),
            Ok(qmp::Call { kind: qmp::CallKind::Disabled(c), .. }) => {
                Err(format!("{c} is disabled"))
            }
            Err(r) => Err(describe(r.error)),
        },
        Some(json::Event::Error(e)) => Err(describe(qmp::RequestError::Parse(e))),
        None => Err("no request".into()),
    }
}
