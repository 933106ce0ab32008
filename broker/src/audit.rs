//! Writing the audit trail: one JSON line per record, to a file (created
//! 0600, appended, fsync'ed per record or per batch) and/or standard error.
//!
//! While filesystems are frozen the trail is held in memory (a write to a
//! frozen filesystem would block the agent) and written after the thaw. The
//! memory it may take is bounded by the policy; when it is full, requests are
//! refused (except the thaw) rather than run unrecorded, and the number
//! refused is recorded once the trail can be written again.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

use policy::audit::{Event, Record, rfc3339};
use policy::{AuditConfig, SyncMode};

use crate::log::error;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit file {}", .0.display())]
    Open(std::path::PathBuf, #[source] io::Error),
}

pub struct Audit {
    config: AuditConfig,
    file: Option<File>,
    seq: u64,
    /// Encoded records not yet written.
    pending: Vec<u8>,
    held: bool,
    refused: u64,
}

impl Audit {
    pub fn open(config: &AuditConfig) -> Result<Audit, AuditError> {
        let file = match &config.file {
            None => None,
            Some(path) => Some(open_file(path).map_err(|e| AuditError::Open(path.clone(), e))?),
        };
        Ok(Audit {
            config: config.clone(),
            file,
            seq: 0,
            pending: Vec::new(),
            held: false,
            refused: 0,
        })
    }

    /// Adds a record. Written at the next [`Audit::flush`], or at once when
    /// the policy asks for an fsync per record.
    pub fn record(&mut self, event: Event) {
        self.seq += 1;
        let record = Record { time: rfc3339(SystemTime::now()), seq: self.seq, event };
        match serde_json::to_writer(&mut self.pending, &record) {
            Ok(()) => self.pending.push(b'\n'),
            Err(e) => error!("audit record {} could not be encoded: {e}", self.seq),
        }
        if self.config.sync == SyncMode::Record {
            self.flush();
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
            let record = Record {
                time: rfc3339(SystemTime::now()),
                seq: self.seq,
                event: Event::Overflow { refused },
            };
            if serde_json::to_writer(&mut self.pending, &record).is_ok() {
                self.pending.push(b'\n');
            }
        }
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_all(&self.pending).and_then(|()| f.sync_data()) {
                // The records are not lost: they still reach standard error.
                error!("writing the audit file failed: {e}");
                let _ = io::stderr().write_all(&self.pending);
            }
        }
        if self.config.stderr {
            let _ = io::stderr().write_all(&self.pending);
        }
        self.pending.clear();
        if self.pending.capacity() > 1 << 20 {
            self.pending = Vec::new();
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
        assert!(
            lines[0].starts_with("{\"time\":\"")
                && lines[0].contains("\"seq\":1,\"event\":\"stop\",\"reason\":\"one\"")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
