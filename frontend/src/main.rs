//! qga-warden-frontend: the unprivileged half of qga-warden. It is started by
//! the broker (`qga-warden`), never by hand: its standard input is the IPC
//! socket to the broker, its standard error a pipe to the broker's log.
//!
//! It reads the host's bytes from the channel the broker hands it, parses and
//! validates them, asks the broker to act, and writes the replies.

#![forbid(unsafe_code)]

mod args;
mod base64;
mod commands;
mod json;
mod log;
mod qmp;
mod reply;
mod server;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if let Some(arg) = args.next() {
        match arg.as_str() {
            "--version" | "-V" => {
                println!("qga-warden-frontend {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!(
                    "qga-warden-frontend is started by qga-warden and takes no arguments \
                     (got '{arg}')"
                );
                return ExitCode::from(1);
            }
        }
    }
    match server::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}
