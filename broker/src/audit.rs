//! Writing the audit trail: one JSON line per record, to a file (created
//! 0600, appended, fsync'ed per record or per batch) and/or standard error.
//!
//! While filesystems are frozen the trail is held in memory (a write to a
//! frozen filesystem would block the agent) and written after the thaw. The
//! memory it may take is bounded by the policy; when it is full, requests are
//! refused (except the thaw) rather than run unrecorded, and the number
//! refused is recorded once the trail can be written again.
//!
//! Rotation loses no record: before each write the file is compared with
//! what its path now names, and reopened (created anew, 0600) when it was
//! renamed or removed; SIGHUP asks for the same. A record written between
//! the rotator's rename and our check lands in the renamed file, which is
//! why the shipped logrotate configuration neither truncates
//! (`copytruncate` would lose such records) nor compresses the newest
//! rotated file (`delaycompress`), nor creates the new file itself
//! (`nocreate`: the agent does, before its next record).
//!
//! On standard error, when that is the journal, each record is prefixed
//! with its syslog priority ([`priority`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use policy::audit::{Event, Record, Verdict, rfc3339};
use policy::{AuditConfig, SyncMode};

use crate::log::{error, info};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit file {}", .0.display())]
    Open(std::path::PathBuf, #[source] io::Error),
}

/// The syslog priority of a record on the journal: a denial or a thaw the
/// host did not ask for is a warning, refused records an error, the rest a
/// notice.
pub fn priority(event: &Event) -> u8 {
    match event {
        Event::Request { decision: Verdict::Deny, .. } => 4,
        Event::Thaw { .. } | Event::FrozenAtStart { .. } => 4,
        Event::Overflow { .. } => 3,
        _ => 5,
    }
}

/// The audit file and the path it was opened from.
struct AuditFile {
    path: PathBuf,
    file: File,
    /// Reopen before the next write (SIGHUP).
    reopen: bool,
}

pub struct Audit {
    config: AuditConfig,
    file: Option<AuditFile>,
    seq: u64,
    /// Encoded records not yet written.
    pending: Vec<u8>,
    /// Where each pending record ends in `pending`, and its priority
    /// (kept only when standard error is the journal).
    marks: Vec<(usize, u8)>,
    /// Standard error is the journal: records carry `<N>` priorities there.
    journal: bool,
    held: bool,
    refused: u64,
}

impl Audit {
    pub fn open(config: &AuditConfig) -> Result<Audit, AuditError> {
        let file = match &config.file {
            None => None,
            Some(path) => Some(AuditFile {
                path: path.clone(),
                file: open_file(path).map_err(|e| AuditError::Open(path.clone(), e))?,
                reopen: false,
            }),
        };
        Ok(Audit {
            config: config.clone(),
            file,
            seq: 0,
            pending: Vec::new(),
            marks: Vec::new(),
            journal: config.stderr && crate::log::journal(),
            held: false,
            refused: 0,
        })
    }

    /// Adds a record. Written at the next [`Audit::flush`], or at once when
    /// the policy asks for an fsync per record.
    pub fn record(&mut self, event: Event) {
        self.seq += 1;
        let priority = priority(&event);
        let record = Record { time: rfc3339(SystemTime::now()), seq: self.seq, event };
        self.push(&record, priority);
        if self.config.sync == SyncMode::Record {
            self.flush();
        }
    }

    fn push(&mut self, record: &Record, priority: u8) {
        match serde_json::to_writer(&mut self.pending, record) {
            Ok(()) => {
                self.pending.push(b'\n');
                if self.journal {
                    self.marks.push((self.pending.len(), priority));
                }
            }
            Err(e) => error!("audit record {} could not be encoded: {e}", record.seq),
        }
    }

    /// Asks for the audit file to be reopened before the next write
    /// (SIGHUP). Deferred while records are held: the file may be on a
    /// frozen filesystem.
    pub fn reopen(&mut self) {
        if let Some(f) = &mut self.file {
            f.reopen = true;
        }
    }

    /// True when held records fill the memory the policy allows: requests
    /// (other than the thaw) must then be refused.
    pub fn is_full(&self) -> bool {
        self.held && self.pending.len() as u64 >= self.config.max_held_bytes
    }

    /// Counts a request refused because the trail was full.
    pub fn refused(&mut self) {
        self.refused += 1;
    }

    /// Holds records in memory (filesystems frozen) or lets them go.
    pub fn hold(&mut self, held: bool) {
        self.held = held;
        if !held {
            self.flush();
        }
    }

    /// Writes pending records, then syncs the file once.
    pub fn flush(&mut self) {
        if self.held || self.pending.is_empty() {
            return;
        }
        if self.refused > 0 {
            let refused = std::mem::take(&mut self.refused);
            self.seq += 1;
            let event = Event::Overflow { refused };
            let priority = priority(&event);
            let record = Record { time: rfc3339(SystemTime::now()), seq: self.seq, event };
            self.push(&record, priority);
        }
        if let Some(f) = &mut self.file {
            f.follow_rotation();
            if let Err(e) = f.file.write_all(&self.pending).and_then(|()| f.file.sync_data()) {
                // The records are not lost: they still reach standard error.
                error!("writing the audit file failed: {e}");
                if !self.config.stderr {
                    self.write_stderr();
                }
            }
        }
        if self.config.stderr {
            self.write_stderr();
        }
        self.pending.clear();
        self.marks.clear();
        if self.pending.capacity() > 1 << 20 {
            self.pending = Vec::new();
        }
    }

    /// The pending records on standard error, each with its priority when
    /// that is the journal.
    fn write_stderr(&self) {
        let mut err = io::stderr().lock();
        if !self.journal {
            let _ = err.write_all(&self.pending);
            return;
        }
        let mut start = 0;
        for &(end, priority) in &self.marks {
            let Some(record) = self.pending.get(start..end) else { break };
            let _ = write!(err, "<{priority}>");
            let _ = err.write_all(record);
            start = end;
        }
    }
}

impl AuditFile {
    /// Reopens the file if it was rotated away (renamed or removed) or a
    /// reopen was asked for. If that fails, records keep going to the file
    /// already open rather than being lost.
    fn follow_rotation(&mut self) {
        if !self.reopen && !crate::log::replaced(&self.path, &self.file) {
            return;
        }
        self.reopen = false;
        match open_file(&self.path) {
            Ok(file) => {
                self.file = file;
                info!("audit file {} reopened", self.path.display());
            }
            Err(e) => error!("cannot reopen audit file {}: {e}", self.path.display()),
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: u64) -> AuditConfig {
        AuditConfig { stderr: false, file: None, sync: SyncMode::Batch, max_held_bytes: max }
    }

    #[test]
    fn held_records_are_kept_and_bounded() {
        let mut a = Audit::open(&config(200)).expect("open");
        a.hold(true);
        for _ in 0..3 {
            a.record(Event::Stop { reason: "test".into() });
        }
        assert!(!a.pending.is_empty(), "held records stay in memory");
        assert!(a.is_full());
        a.refused();
        a.hold(false);
        assert!(a.pending.is_empty());
        assert!(!a.is_full());
        assert_eq!(a.seq, 4, "three records and the overflow record");
    }

    #[test]
    fn records_reach_the_file_and_it_is_private() {
        let dir = std::env::temp_dir().join(format!("qga-audit-test-{}", std::process::id()));
        let path = dir.join("sub/audit.log");
        let mut cfg = config(1 << 20);
        cfg.file = Some(path.clone());
        let mut a = Audit::open(&cfg).expect("open");
        a.record(Event::Stop { reason: "one".into() });
        a.record(Event::Stop { reason: "two".into() });
        a.flush();
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(!a.journal, "a file only: no priorities");
        assert!(
            lines[0].starts_with("{\"time\":\"")
                && lines[0].contains("\"seq\":1,\"event\":\"stop\",\"reason\":\"one\"")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The sequence numbers of the records in `text`, in order.
    fn seqs(text: &str) -> Vec<u64> {
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
                v["seq"].as_u64().expect("seq")
            })
            .collect()
    }

    #[test]
    fn rotation_loses_no_record() {
        let dir = std::env::temp_dir().join(format!("qga-audit-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.log");
        let mut cfg = config(1 << 20);
        cfg.file = Some(path.clone());
        let mut a = Audit::open(&cfg).expect("open");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("read");
        let stop = |a: &mut Audit, n: u32| {
            a.record(Event::Stop { reason: format!("r{n}") });
            a.flush();
        };
        stop(&mut a, 1);
        stop(&mut a, 2);
        // logrotate with `nocreate`: rename, then the agent writes again.
        std::fs::rename(&path, dir.join("audit.log.1")).expect("rotate");
        stop(&mut a, 3);
        // Renamed while records are held (frozen): nothing is reopened
        // until the thaw, then the held records go to the new file.
        std::fs::rename(&path, dir.join("audit.log.2")).expect("rotate");
        a.hold(true);
        a.record(Event::Stop { reason: "held".into() });
        assert!(!path.exists(), "no file is created while held");
        a.hold(false);
        assert_eq!(seqs(&read("audit.log")), [4]);
        // Removed outright.
        std::fs::remove_file(&path).expect("remove");
        stop(&mut a, 5);
        // SIGHUP: reopened even though the path still names the same file.
        a.reopen();
        stop(&mut a, 6);

        assert_eq!(seqs(&read("audit.log.1")), [1, 2]);
        assert_eq!(seqs(&read("audit.log.2")), [3]);
        assert_eq!(seqs(&read("audit.log")), [5, 6]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn priorities() {
        assert_eq!(priority(&Event::Stop { reason: "x".into() }), 5);
        assert_eq!(priority(&Event::Overflow { refused: 1 }), 3);
        assert_eq!(priority(&Event::FrozenAtStart { mountpoints: vec![] }), 4);
    }

    #[test]
    fn journal_records_carry_their_priority() {
        let mut cfg = config(1 << 20);
        cfg.stderr = true;
        let mut a = Audit::open(&cfg).expect("open");
        a.journal = true;
        a.record(Event::Stop { reason: "a".into() });
        a.record(Event::Overflow { refused: 2 });
        assert_eq!(a.marks.len(), 2);
        let (first, second) = (a.marks[0], a.marks[1]);
        assert_eq!((first.1, second.1), (5, 3));
        assert!(a.pending[..first.0].ends_with(b"}\n"));
        assert_eq!(second.0, a.pending.len());
        a.flush();
        assert!(a.marks.is_empty() && a.pending.is_empty());
    }
}
