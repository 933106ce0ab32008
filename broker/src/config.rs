//! qemu-ga's configuration file: GLib key-file syntax, `[general]` group.
//! Keys qemu-ga knows keep their meaning; `frontend`, `frontend-user`,
//! `require-landlock` and `policy` are ours. Unknown keys are reported and
//! ignored, so that a file written for a newer qemu-ga still starts the agent.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cli::{Method, Settings, split_rpcs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        }
    }
}

/// Loads `path` into `settings`. A missing file is an error only when it
/// was named explicitly.
pub fn load(path: &Path, settings: &mut Settings, must_exist: bool) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(()),
        Err(e) => {
            return Err(ConfigError { path: path.to_owned(), line: 0, message: e.to_string() });
        }
    };
    apply(&text, settings).map_err(|(line, message)| ConfigError {
        path: path.to_owned(),
        line,
        message,
    })
}

fn apply(text: &str, s: &mut Settings) -> Result<(), (usize, String)> {
    let mut in_general = false;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            let group =
                group.strip_suffix(']').ok_or((line_no, format!("invalid group line '{line}'")))?;
            in_general = group == "general";
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or((line_no, format!("line '{line}' is not a group, key=value or comment")))?;
        if !in_general {
            continue;
        }
        let key = key.trim();
        let value = unescape(value.trim()).map_err(|m| (line_no, m))?;
        let boolean = |v: &str| match v.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err((line_no, format!("key '{key}': '{v}' is not a boolean"))),
        };
        match key {
            "daemon" => s.daemonize = boolean(&value)?,
            "method" => {
                s.method = Method::from_name(&value)
                    .ok_or((line_no, format!("key 'method': invalid method '{value}'")))?;
            }
            "path" => s.path = Some(value),
            "logfile" => s.logfile = Some(PathBuf::from(value)),
            "pidfile" => s.pidfile = PathBuf::from(value),
            "fsfreeze-hook" => s.fsfreeze_hook = Some(PathBuf::from(value)),
            "statedir" => s.statedir = PathBuf::from(value),
            "verbose" => s.verbose = boolean(&value)?,
            "retry-path" => s.retry_path = boolean(&value)?,
            "block-rpcs" | "blacklist" => s.block_rpcs.extend(split_rpcs(&value)),
            "allow-rpcs" => s.allow_rpcs.get_or_insert_with(Vec::new).extend(split_rpcs(&value)),
            "frontend" => s.frontend = Some(PathBuf::from(value)),
            "frontend-user" => s.frontend_user = Some(value),
            "require-landlock" => s.require_landlock = boolean(&value)?,
            "policy" => s.policy = Some(PathBuf::from(value)),
            other => {
                // Before `-l` is applied: this goes to standard error.
                crate::log::warning!(
                    "configuration line {line_no}: ignoring unknown key '{other}'"
                );
            }
        }
    }
    Ok(())
}

/// GLib key-file string escapes.
fn unescape(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => return Err(format!("invalid escape '\\{other}' in value '{v}'")),
            None => return Err(format!("value '{v}' ends in a backslash")),
        }
    }
    Ok(out)
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// The configuration as a file `-c` would read back (qemu-ga's `-D`).
pub fn dump(s: &Settings) -> String {
    let mut out = String::from("[general]\n");
    let mut kv = |k: &str, v: &str| {
        out.push_str(k);
        out.push('=');
        out.push_str(&escape(v));
        out.push('\n');
    };
    kv("daemon", if s.daemonize { "true" } else { "false" });
    kv("method", s.method.name());
    if let Ok(path) = s.channel_path() {
        kv("path", &path);
    }
    if let Some(l) = &s.logfile {
        kv("logfile", &l.to_string_lossy());
    }
    kv("pidfile", &s.pidfile.to_string_lossy());
    if let Some(h) = &s.fsfreeze_hook {
        kv("fsfreeze-hook", &h.to_string_lossy());
    }
    kv("statedir", &s.statedir.to_string_lossy());
    kv("verbose", if s.verbose { "true" } else { "false" });
    kv("retry-path", if s.retry_path { "true" } else { "false" });
    kv("block-rpcs", &s.block_rpcs.join(","));
    if let Some(a) = &s.allow_rpcs {
        kv("allow-rpcs", &a.join(","));
    }
    if let Some(f) = &s.frontend {
        kv("frontend", &f.to_string_lossy());
    }
    if let Some(u) = &s.frontend_user {
        kv("frontend-user", u);
    }
    kv("require-landlock", if s.require_landlock { "true" } else { "false" });
    if let Some(p) = &s.policy {
        kv("policy", &p.to_string_lossy());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qemu_ga_conf() {
        let mut s = Settings::default();
        apply(
            "# qemu-ga.conf\n[general]\ndaemon = false\nmethod=unix-listen\npath=/run/qga\\s1.sock\n\
             verbose=true\nblock-rpcs=guest-exec,guest-file-open\n[other]\nmethod=bogus\n",
            &mut s,
        )
        .expect("valid");
        assert_eq!(s.method, Method::UnixListen);
        assert_eq!(s.path.as_deref(), Some("/run/qga 1.sock"));
        assert!(s.verbose);
        assert_eq!(s.block_rpcs, ["guest-exec", "guest-file-open"]);
    }

    #[test]
    fn bad_values_name_the_line() {
        let mut s = Settings::default();
        assert_eq!(apply("[general]\n\ndaemon=maybe\n", &mut s).map_err(|e| e.0), Err(3));
        assert!(apply("[general]\nmethod=tcp\n", &mut s).is_err());
        assert!(apply("[general\n", &mut s).is_err());
        assert!(apply("[general]\njunk\n", &mut s).is_err());
    }

    #[test]
    fn dump_reads_back() {
        let s = Settings {
            method: Method::UnixListen,
            path: Some(" /tmp/a b".into()),
            block_rpcs: vec!["guest-exec".into()],
            verbose: true,
            ..Settings::default()
        };
        let text = dump(&s);
        let mut back = Settings::default();
        apply(&text, &mut back).expect("reads back");
        assert_eq!(back.path, s.path);
        assert_eq!(back.block_rpcs, s.block_rpcs);
        assert!(back.verbose);
        assert!(text.starts_with("[general]\ndaemon=false\nmethod=unix-listen\n"));
    }
}
