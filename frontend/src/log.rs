//! Log lines go to standard error, a pipe the broker reads and forwards to its
//! own log with the frontend's name on them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(v: bool) {
    VERBOSE.store(v, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Writes one line with a level the broker understands.
pub fn line(level: &str, msg: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{level}: {msg}");
}

macro_rules! warning { ($($a:tt)*) => { $crate::log::line("warning", format_args!($($a)*)) } }
macro_rules! debug {
    ($($a:tt)*) => { if $crate::log::verbose() { $crate::log::line("debug", format_args!($($a)*)) } }
}
pub(crate) use {debug, warning};
