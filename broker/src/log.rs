//! The broker's log: standard error or the `-l` file, one line per message in
//! qemu-ga's format (`SECONDS.MICROS: level: message`). Lines the frontend
//! writes reach it through a pipe and are logged here with its name.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    pub fn from_name(s: &str) -> Option<Level> {
        match s {
            "error" | "critical" => Some(Level::Error),
            "warning" => Some(Level::Warning),
            "info" | "message" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
}

struct Logger {
    max: Level,
    file: Option<File>,
    /// Lines kept in memory while filesystems are frozen (a log file, or
    /// standard error redirected to one, must not be written then).
    held: Option<Held>,
}

struct Held {
    lines: Vec<u8>,
    dropped: u64,
}

/// Log bytes kept while frozen; beyond this, lines are counted and dropped.
const MAX_HELD: usize = 256 * 1024;

static LOGGER: Mutex<Logger> = Mutex::new(Logger { max: Level::Info, file: None, held: None });

fn logger() -> std::sync::MutexGuard<'static, Logger> {
    LOGGER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn set_verbose(verbose: bool) {
    logger().max = if verbose { Level::Debug } else { Level::Info };
}

/// Sends further lines to `file` instead of standard error.
pub fn set_file(file: File) {
    logger().file = Some(file);
}

/// While `hold` is set, lines are kept in memory (bounded); clearing it
/// writes them out, with a count of any that did not fit.
pub fn hold(hold: bool) {
    let mut l = logger();
    match (hold, l.held.take()) {
        (true, held) => l.held = Some(held.unwrap_or(Held { lines: Vec::new(), dropped: 0 })),
        (false, Some(held)) => {
            emit(&mut l, &held.lines);
            if held.dropped > 0 {
                let line = stamp(
                    Level::Warning,
                    format_args!("{} log lines were dropped while frozen", held.dropped),
                );
                emit(&mut l, line.as_bytes());
            }
        }
        (false, None) => {}
    }
}

fn stamp(level: Level, args: fmt::Arguments<'_>) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}: {}: {}\n", now.as_secs(), now.subsec_micros(), level.name(), args)
}

fn emit(l: &mut Logger, bytes: &[u8]) {
    let written = match &mut l.file {
        Some(f) => f.write_all(bytes),
        None => std::io::stderr().write_all(bytes),
    };
    // Nowhere left to report a failing log; dropping the line is all we can do.
    drop(written);
}

pub fn write(level: Level, args: fmt::Arguments<'_>) {
    let mut l = logger();
    if level > l.max {
        return;
    }
    let line = stamp(level, args);
    if let Some(held) = &mut l.held {
        if held.lines.len() + line.len() <= MAX_HELD {
            held.lines.extend_from_slice(line.as_bytes());
        } else {
            held.dropped += 1;
        }
        return;
    }
    emit(&mut l, line.as_bytes());
}

macro_rules! error { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($a)*)) } }
macro_rules! warning { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($a)*)) } }
macro_rules! info { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($a)*)) } }
macro_rules! debug { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($a)*)) } }
pub(crate) use {debug, error, info, warning};
