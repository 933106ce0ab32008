//! The unprivileged half of qga-warden as a library: the binary
//! `qga-warden-frontend` is a thin `main` around [`server::run`], and the
//! sandbox tests drive [`sandbox`] directly.

#![forbid(unsafe_code)]

mod args;
mod base64;
mod commands;
mod json;
pub mod log;
mod qmp;
mod reply;
pub mod sandbox;
pub mod server;
