//! The broker's log: standard error or the `-l` file, one line per message in
//! qemu-ga's format (`SECONDS.MICROS: level: message`). Lines the frontend
//! writes reach it through a pipe and are logged here with its name.
//!
//! When standard error is the journal's stream (systemd says so in
//! `JOURNAL_STREAM`), each line instead starts with its syslog priority,
//! `<3>` to `<7>` (sd-daemon(3)), and carries no time stamp: the journal
//! stamps it and files it under that priority.
//!
//! A `-l` file is reopened when it has been renamed or removed (log
//! rotation) and on SIGHUP, so that no line goes to a file being rotated
//! away.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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

    /// The syslog priority (sd-daemon(3) prefix) of lines at this level.
    pub fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

struct Logger {
    max: Level,
    file: Option<LogFile>,
    /// Standard error is the journal: lines carry `<N>` priorities.
    journal: bool,
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

/// The `-l` file and where it was opened, to notice rotation.
struct LogFile {
    path: PathBuf,
    file: File,
    /// Reopen before the next line (SIGHUP).
    reopen: bool,
}

static LOGGER: Mutex<Logger> =
    Mutex::new(Logger { max: Level::Info, file: None, journal: false, held: None });

fn logger() -> std::sync::MutexGuard<'static, Logger> {
    LOGGER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn set_verbose(verbose: bool) {
    logger().max = if verbose { Level::Debug } else { Level::Info };
}

/// Opens (creating, 0640) the `-l` file for appending.
pub fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)
}

/// Sends further lines to `file`, opened from `path`, instead of standard
/// error.
pub fn set_file(path: &Path, file: File) {
    logger().file = Some(LogFile { path: path.to_owned(), file, reopen: false });
}

/// Asks for the `-l` file to be reopened before the next line is written
/// (SIGHUP; see [`crate::audit::Audit::reopen`]).
pub fn reopen() {
    if let Some(f) = &mut logger().file {
        f.reopen = true;
    }
}

/// Whether `JOURNAL_STREAM` (systemd's `DEVICE:INODE` of the stream it
/// connected) names our standard error. Only then are priorities written:
/// a journal stream inherited by a program whose standard error was
/// redirected elsewhere must not get them.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr().as_fd()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// Looks at `JOURNAL_STREAM` and standard error again (at start-up, and
/// after `-d` has pointed standard error elsewhere).
pub fn detect_journal() {
    let stream = std::env::var("JOURNAL_STREAM").ok();
    logger().journal = stderr_is_journal(stream.as_deref());
}

/// Whether standard error is the journal (see [`detect_journal`]).
pub fn journal() -> bool {
    logger().journal
}

/// `<N>` for a line of priority `priority` on standard error when that is
/// the journal, else nothing.
pub fn stderr_prefix(priority: u8) -> String {
    if journal() { format!("<{priority}>") } else { String::new() }
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
                    &l,
                    Level::Warning,
                    format_args!("{} log lines were dropped while frozen", held.dropped),
                );
                emit(&mut l, line.as_bytes());
            }
        }
        (false, None) => {}
    }
}

/// One line as written: for the journal, `<priority>level: message`;
/// otherwise qemu-ga's `SECONDS.MICROS: level: message`.
fn format_line(level: Level, args: fmt::Arguments<'_>, journal: bool, now: SystemTime) -> String {
    if journal {
        return format!("<{}>{}: {}\n", level.priority(), level.name(), args);
    }
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}: {}: {}\n", now.as_secs(), now.subsec_micros(), level.name(), args)
}

fn stamp(l: &Logger, level: Level, args: fmt::Arguments<'_>) -> String {
    // The journal prefix only where the line goes to standard error.
    format_line(level, args, l.journal && l.file.is_none(), SystemTime::now())
}

/// Whether `file` is no longer what `path` names (renamed or removed by
/// log rotation).
pub fn replaced(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(now), Ok(ours)) => now.dev() != ours.dev() || now.ino() != ours.ino(),
        (Err(_), _) => true,
        // Our own descriptor cannot be examined: leave it be.
        (Ok(_), Err(_)) => false,
    }
}

fn emit(l: &mut Logger, bytes: &[u8]) {
    let written = match &mut l.file {
        Some(f) => {
            if f.reopen || replaced(&f.path, &f.file) {
                f.reopen = false;
                match open_file(&f.path) {
                    Ok(new) => f.file = new,
                    // Keep writing to the file we have: the lines are kept
                    // there rather than lost.
                    Err(e) => {
                        let _ =
                            writeln!(f.file, "cannot reopen log file {}: {e}", f.path.display());
                    }
                }
            }
            f.file.write_all(bytes)
        }
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
    let line = stamp(&l, level, args);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_carry_priorities_and_no_stamp() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_000_123);
        assert_eq!(
            format_line(Level::Warning, format_args!("a {}", 1), false, t),
            "1700000000.000123: warning: a 1\n"
        );
        let levels = [(Level::Error, 3), (Level::Warning, 4), (Level::Info, 6), (Level::Debug, 7)];
        for (level, p) in levels {
            assert_eq!(
                format_line(level, format_args!("x"), true, t),
                format!("<{p}>{}: x\n", level.name())
            );
        }
    }

    #[test]
    fn journal_stream_must_name_standard_error() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("")));
        assert!(!stderr_is_journal(Some("12:x")));
        let st = nix::sys::stat::fstat(std::io::stderr().as_fd()).expect("fstat stderr");
        let ours = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(stderr_is_journal(Some(&ours)));
        let other = format!("{}:{}", st.st_dev, st.st_ino.wrapping_add(1));
        assert!(!stderr_is_journal(Some(&other)));
    }

    #[test]
    fn a_renamed_file_is_noticed() {
        let dir = std::env::temp_dir().join(format!("qga-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("agent.log");
        let file = open_file(&path).expect("open");
        assert!(!replaced(&path, &file));
        std::fs::rename(&path, dir.join("agent.log.1")).expect("rename");
        assert!(replaced(&path, &file), "gone");
        std::fs::write(&path, "").expect("new file");
        assert!(replaced(&path, &file), "another file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
