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
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger { max: Level::Info, file: None });

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

pub fn write(level: Level, args: fmt::Arguments<'_>) {
    let mut l = logger();
    if level > l.max {
        return;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let line =
        format!("{}.{:06}: {}: {}\n", now.as_secs(), now.subsec_micros(), level.name(), args);
    let written = match &mut l.file {
        Some(f) => f.write_all(line.as_bytes()),
        None => std::io::stderr().write_all(line.as_bytes()),
    };
    // Nowhere left to report a failing log; dropping the line is all we can do.
    drop(written);
}

macro_rules! error { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($a)*)) } }
macro_rules! warning { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($a)*)) } }
macro_rules! info { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($a)*)) } }
macro_rules! debug { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($a)*)) } }
pub(crate) use {debug, error, info, warning};
