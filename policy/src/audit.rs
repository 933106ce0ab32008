//! The audit record: one per request the broker receives, and one per
//! lifecycle event (start, policy load, frontend start and end, stop).
//! Arguments are recorded with secrets and bulk data replaced by their
//! lengths: never a password, file contents or exec input.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ipc::{CaptureOutput, Request, SshKey};
use serde::Serialize;

/// One argument value as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
    List(Vec<String>),
    Ints(Vec<i64>),
}

/// The recorded arguments of a request.
pub type Args = BTreeMap<&'static str, Value>;

/// Arguments of `request` fit for the audit trail.
pub fn redact(request: &Request) -> Args {
    let mut a = Args::new();
    let len = |n: usize| Value::UInt(n as u64);
    match request {
        Request::Sync { id, .. } => {
            a.insert("id", Value::Int(*id));
        }
        Request::SetTime { time: Some(t) } => {
            a.insert("time", Value::Int(*t));
        }
        Request::Shutdown { mode } => {
            a.insert("mode", Value::Str(mode.name().into()));
        }
        Request::FileOpen { path, mode } => {
            a.insert("path", Value::Str(path.clone()));
            a.insert("mode", Value::Str(mode.name().into()));
        }
        Request::FileClose { handle } | Request::FileFlush { handle } => {
            a.insert("handle", Value::Int(*handle));
        }
        Request::FileRead { handle, count } => {
            a.insert("handle", Value::Int(*handle));
            if let Some(c) = count {
                a.insert("count", Value::Int(*c));
            }
        }
        Request::FileWrite { handle, data, count } => {
            a.insert("handle", Value::Int(*handle));
            a.insert("data_len", len(data.0.len()));
            if let Some(c) = count {
                a.insert("count", Value::Int(*c));
            }
        }
        Request::FileSeek { handle, offset, whence } => {
            a.insert("handle", Value::Int(*handle));
            a.insert("offset", Value::Int(*offset));
            a.insert("whence", Value::Int(*whence));
        }
        Request::FsfreezeFreezeList { mountpoints: Some(m) } => {
            a.insert("mountpoints", Value::List(m.clone()));
        }
        Request::Fstrim { minimum: Some(m) } => {
            a.insert("minimum", Value::Int(*m));
        }
        Request::SetVcpus { vcpus } => {
            let (on, off): (Vec<&ipc::LogicalProcessor>, Vec<_>) =
                vcpus.iter().partition(|v| v.online);
            a.insert("online", Value::Ints(on.iter().map(|v| v.logical_id).collect()));
            a.insert("offline", Value::Ints(off.iter().map(|v| v.logical_id).collect()));
        }
        Request::SetMemoryBlocks { blocks } => {
            let ids = |online: bool| {
                Value::List(
                    blocks
                        .iter()
                        .filter(|b| b.online == online)
                        .map(|b| b.phys_index.to_string())
                        .collect(),
                )
            };
            a.insert("online", ids(true));
            a.insert("offline", ids(false));
        }
        Request::SetUserPassword { username, password, crypted } => {
            a.insert("username", Value::Str(username.clone()));
            a.insert("password_len", len(password.expose().len()));
            a.insert("crypted", Value::Bool(*crypted));
        }
        Request::ExecStatus { pid } => {
            a.insert("pid", Value::Int(*pid));
        }
        Request::Exec(e) => {
            a.insert("path", Value::Str(e.path.clone()));
            a.insert("arg", Value::List(e.args.clone()));
            // Variable names only: values can be secrets.
            a.insert(
                "env",
                Value::List(
                    e.env.iter().map(|v| v.split('=').next().unwrap_or("").to_owned()).collect(),
                ),
            );
            if let Some(input) = &e.input {
                a.insert("input_len", len(input.0.len()));
            }
            let capture = match e.capture {
                CaptureOutput::None => "none",
                CaptureOutput::Stdout => "stdout",
                CaptureOutput::Stderr => "stderr",
                CaptureOutput::Separated => "separated",
                CaptureOutput::Merged => "merged",
            };
            a.insert("capture", Value::Str(capture.into()));
        }
        Request::SshGetAuthorizedKeys { username } => {
            a.insert("username", Value::Str(username.clone()));
        }
        Request::SshAddAuthorizedKeys { username, keys, reset } => {
            a.insert("username", Value::Str(username.clone()));
            a.insert("keys", Value::List(keys.iter().map(ssh_fingerprint).collect()));
            a.insert("reset", Value::Bool(*reset));
        }
        Request::SshRemoveAuthorizedKeys { username, keys } => {
            a.insert("username", Value::Str(username.clone()));
            a.insert("keys", Value::List(keys.iter().map(ssh_fingerprint).collect()));
        }
        _ => {}
    }
    a
}

/// A key of an `authorized_keys` request as OpenSSH fingerprints it
/// (`SHA256:` and the unpadded base64 of the SHA-256 of the key blob), when
/// the blob the frontend decoded is the line's key (checked by encoding it,
/// as the broker checks it). A line without one is recorded by the SHA-256
/// of its text (`line-sha256:` and hex), so the record still identifies it
/// without copying what the host sent.
pub fn ssh_fingerprint(key: &SshKey) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use sha2::Digest;
    if let Some(blob) = &key.blob {
        let encoded = STANDARD.encode(&blob.0);
        let is_key = |key_type: &str, body: &str| {
            body == encoded && ipc::ssh_key::blob_names(&blob.0, key_type)
        };
        if ipc::ssh_key::split(&key.line, is_key).is_some() {
            return format!("SHA256:{}", STANDARD_NO_PAD.encode(sha2::Sha256::digest(&blob.0)));
        }
    }
    format!("line-sha256:{}", crate::sha256_hex(key.line.as_bytes()))
}

/// What happened, for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Start {
        version: String,
        pid: u32,
        channel: String,
    },
    Policy {
        /// Absent for the built-in default.
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// Commands disabled as a whole, after `-b`/`-a`.
        disabled: Vec<String>,
    },
    Frontend {
        pid: u32,
        uid: u32,
        gid: u32,
        capabilities_cleared: bool,
        no_new_privs: bool,
        landlock: String,
        seccomp: bool,
    },
    FrontendExit {
        pid: u32,
        how: String,
    },
    Request {
        command: String,
        decision: Verdict,
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        outcome: Outcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_class: Option<String>,
        duration_us: u64,
        args: Args,
    },
    Stop {
        reason: String,
    },
    /// The broker thawed filesystems without a guest-fsfreeze-thaw: its
    /// watchdog, the host disconnecting, or the broker stopping.
    Thaw {
        reason: String,
        mountpoints: Vec<String>,
        thawed: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The broker started and found filesystems a previous instance froze:
    /// it starts frozen (as qemu-ga does) until a thaw or its watchdog.
    FrozenAtStart {
        mountpoints: Vec<String>,
    },
    /// Records were refused while held in memory (filesystems frozen and the
    /// buffer full); the requests they were for were refused too.
    Overflow {
        refused: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// Counts every record this broker wrote, from 1.
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// `t` as RFC 3339 in UTC with microseconds, e.g. `2026-11-25T23:10:00.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::{Bytes, ExecRequest, Secret};
    use std::time::Duration;

    #[test]
    fn ssh_keys_are_recorded_by_fingerprint() {
        // The key and fingerprint as ssh-keygen made and printed them.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIIkpnHIoGT8CbE92RDb0j0ey9oPJUKfPyt++VBFvj1 test@host";
        let want = "SHA256:QaU0kUPmBGlCgbLYLZMI8y5Qx25Aubc8SNRXYJJmPbs";
        // As the frontend sends a key: the line, and the blob it decoded.
        let sent = |line: &str| {
            use base64::Engine;
            let decode = |body: &str| base64::engine::general_purpose::STANDARD.decode(body).ok();
            SshKey {
                line: line.into(),
                blob: ipc::ssh_key::decoded_blob(line, decode).map(ipc::Bytes),
            }
        };
        assert_eq!(ssh_fingerprint(&sent(key)), want);
        assert_eq!(ssh_fingerprint(&sent(&format!("command=\"/bin/x\",no-pty {key}"))), want);
        let junk = ssh_fingerprint(&sent("ssh-ed25519 not-base64 secret comment"));
        assert!(junk.starts_with("line-sha256:") && !junk.contains("secret"), "{junk}");
        // A blob that is not the line's key (a lying frontend) is not
        // recorded as the key's fingerprint.
        let lie = SshKey { line: "ssh-ed25519 AAAA x".into(), blob: sent(key).blob };
        assert!(ssh_fingerprint(&lie).starts_with("line-sha256:"));
        let args = redact(&Request::SshAddAuthorizedKeys {
            username: "alice".into(),
            keys: vec![sent(key)],
            reset: true,
        });
        assert_eq!(args.get("keys"), Some(&Value::List(vec![want.into()])));
        assert_eq!(args.get("username"), Some(&Value::Str("alice".into())));
        assert_eq!(args.get("reset"), Some(&Value::Bool(true)));
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_647_475_815_214);
        assert_eq!(rfc3339(t), "2026-11-25T22:57:55.815214Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn secrets_and_data_are_lengths() {
        let pw = Request::SetUserPassword {
            username: "bob".into(),
            password: Secret::new(zeroize::Zeroizing::new(b"hunter2".to_vec())),
            crypted: false,
        };
        let a = redact(&pw);
        assert_eq!(a.get("password_len"), Some(&Value::UInt(7)));
        assert!(!format!("{a:?}").contains("hunter2"));
        let w =
            Request::FileWrite { handle: 1000, data: Bytes(b"secret data".to_vec()), count: None };
        assert_eq!(redact(&w).get("data_len"), Some(&Value::UInt(11)));
        let e = Request::Exec(ExecRequest {
            path: "/bin/sh".into(),
            args: vec!["-c".into()],
            env: vec!["TOKEN=abc123".into()],
            input: Some(Bytes(b"input".to_vec())),
            capture: CaptureOutput::Separated,
        });
        let a = redact(&e);
        assert_eq!(a.get("env"), Some(&Value::List(vec!["TOKEN".into()])));
        assert_eq!(a.get("input_len"), Some(&Value::UInt(5)));
        assert!(!format!("{a:?}").contains("abc123"));
    }
}
