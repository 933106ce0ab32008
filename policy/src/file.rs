//! The policy file: TOML, read with serde into the shape below (unknown keys
//! and wrong types are errors), then checked value by value; every error
//! carries the line and column it is about.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use ipc::Command;
use serde::Deserialize;
use toml::Spanned;

use crate::pattern::{ArgPattern, Glob};
use crate::{
    CommandDefault, FileRule, IdSet, MountPolicy, Policy, PowerMode, ProgramRule, SyncMode,
};

/// Largest policy file read, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// An error in a policy file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

impl std::error::Error for PolicyError {}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn locate(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, PolicyError> {
        let (line, column) = locate(self.text, span.start);
        Err(PolicyError { file: self.file.to_owned(), line, column, message: message.into() })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: Option<Spanned<i64>>,
    commands: Option<CommandsSection>,
    audit: Option<AuditSection>,
    exec: Option<ExecSection>,
    files: Option<FilesSection>,
    password: Option<PasswordSection>,
    fsfreeze: Option<FreezeSection>,
    fstrim: Option<MountsSection>,
    vcpus: Option<VcpusSection>,
    memory_blocks: Option<BlocksSection>,
    power: Option<PowerSection>,
    time: Option<TimeSection>,
    ssh: Option<SshSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SshSection {
    accounts: Option<Vec<Spanned<String>>>,
    deny_accounts: Option<Vec<Spanned<String>>>,
    key_types: Option<Vec<Spanned<String>>>,
    allow_options: Option<bool>,
    max_keys: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandsSection {
    default: Option<Spanned<String>>,
    allow: Option<Vec<Spanned<String>>>,
    deny: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    stderr: Option<bool>,
    file: Option<Spanned<String>>,
    sync: Option<Spanned<String>>,
    max_held_bytes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecSection {
    run_as: Option<Spanned<String>>,
    timeout_seconds: Option<Spanned<i64>>,
    max_output_bytes: Option<Spanned<i64>>,
    allow_input: Option<bool>,
    env: Option<Vec<Spanned<String>>>,
    max_children: Option<Spanned<i64>>,
    program: Option<Vec<ProgramSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramSection {
    path: Spanned<String>,
    args: Option<Vec<Spanned<String>>>,
    more_args: Option<Spanned<String>>,
    max_args: Option<Spanned<i64>>,
    env: Option<Vec<Spanned<String>>>,
    run_as: Option<Spanned<String>>,
    timeout_seconds: Option<Spanned<i64>>,
    max_output_bytes: Option<Spanned<i64>>,
    allow_input: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesSection {
    max_handles: Option<Spanned<i64>>,
    rule: Option<Vec<FileRuleSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRuleSection {
    dir: Spanned<String>,
    pattern: Option<Spanned<String>>,
    access: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordSection {
    accounts: Option<Vec<Spanned<String>>>,
    deny_accounts: Option<Vec<Spanned<String>>>,
    allow_plaintext: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MountsSection {
    mountpoints: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeSection {
    mountpoints: Option<Vec<Spanned<String>>>,
    max_frozen_seconds: Option<Spanned<i64>>,
    thaw_on_disconnect: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VcpusSection {
    min_online: Option<Spanned<i64>>,
    ids: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlocksSection {
    ids: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerSection {
    modes: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeSection {
    max_step_seconds: Option<Spanned<i64>>,
}

/// Reads and checks a policy file.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let file = path.display().to_string();
    let io_err = |message: String| PolicyError { file: file.clone(), line: 0, column: 0, message };
    let meta = std::fs::metadata(path).map_err(|e| io_err(e.to_string()))?;
    if meta.len() > MAX_POLICY_BYTES as u64 {
        return Err(io_err(format!("larger than {MAX_POLICY_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let (line, column) = {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            locate(&String::from_utf8_lossy(valid), valid.len())
        };
        PolicyError { file: file.clone(), line, column, message: "not valid UTF-8".into() }
    })?;
    let mut policy = parse(&text, &file)?;
    policy.source =
        Some(crate::Source { path: path.to_owned(), sha256: crate::sha256_hex(text.as_bytes()) });
    Ok(policy)
}

/// Parses policy text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
    let ctx = Ctx { file, text };
    let raw: PolicyFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| locate(text, s.start));
        PolicyError { file: file.to_owned(), line, column, message: e.message().trim().to_owned() }
    })?;
    build(&ctx, raw)
}

fn nonneg(ctx: &Ctx<'_>, v: &Spanned<i64>, what: &str) -> Result<u64, PolicyError> {
    u64::try_from(*v.get_ref())
        .or_else(|_| ctx.err(v.span(), format!("{what} must not be negative")))
}

fn command(ctx: &Ctx<'_>, name: &Spanned<String>) -> Result<Command, PolicyError> {
    Command::from_name(name.get_ref())
        .map_or_else(|| ctx.err(name.span(), format!("unknown command '{}'", name.get_ref())), Ok)
}

fn glob(ctx: &Ctx<'_>, p: &Spanned<String>) -> Result<Glob, PolicyError> {
    Glob::new(p.get_ref()).or_else(|e| ctx.err(p.span(), e))
}

fn globs(ctx: &Ctx<'_>, v: &[Spanned<String>]) -> Result<Vec<Glob>, PolicyError> {
    v.iter().map(|p| glob(ctx, p)).collect()
}

fn account(ctx: &Ctx<'_>, name: &Spanned<String>) -> Result<String, PolicyError> {
    let n = name.get_ref();
    if n.is_empty() || n.contains([':', '\n', '/', '\0']) {
        return ctx.err(name.span(), format!("'{n}' is not an account name"));
    }
    Ok(n.clone())
}

fn absolute(ctx: &Ctx<'_>, p: &Spanned<String>, what: &str) -> Result<PathBuf, PolicyError> {
    let s = p.get_ref();
    if !s.starts_with('/') || s.contains('\0') {
        return ctx.err(p.span(), format!("{what} must be an absolute path"));
    }
    if s.split('/').any(|c| c == "..") {
        return ctx.err(p.span(), format!("{what} must not contain '..'"));
    }
    Ok(PathBuf::from(s))
}

fn ids(ctx: &Ctx<'_>, v: &Spanned<toml::Value>) -> Result<IdSet, PolicyError> {
    match v.get_ref() {
        toml::Value::String(s) if s == "all" => Ok(IdSet::All),
        toml::Value::Array(items) => {
            let mut set = BTreeSet::new();
            for item in items {
                match item {
                    toml::Value::Integer(i) if *i >= 0 => {
                        set.insert((*i as u64, *i as u64));
                    }
                    toml::Value::String(r) => {
                        let parsed = r.split_once('-').and_then(|(a, b)| {
                            Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
                        });
                        match parsed {
                            Some((a, b)) if a <= b => {
                                set.insert((a, b));
                            }
                            _ => {
                                return ctx
                                    .err(v.span(), format!("'{r}' is not a range like \"4-7\""));
                            }
                        }
                    }
                    _ => {
                        return ctx
                            .err(v.span(), "ids are non-negative integers or \"N-M\" ranges");
                    }
                }
            }
            Ok(IdSet::Ranges(set))
        }
        _ => ctx.err(v.span(), "ids must be \"all\" or a list"),
    }
}

fn build(ctx: &Ctx<'_>, raw: PolicyFile) -> Result<Policy, PolicyError> {
    if let Some(v) = &raw.version {
        if *v.get_ref() != 1 {
            return ctx.err(
                v.span(),
                format!("unsupported policy version {} (this agent reads version 1)", v.get_ref()),
            );
        }
    }
    let mut p = Policy::built_in_sections();

    if let Some(c) = raw.commands {
        if let Some(d) = &c.default {
            p.commands.default = match d.get_ref().as_str() {
                "allow" => CommandDefault::Allow,
                "deny" => CommandDefault::Deny,
                other => {
                    return ctx.err(
                        d.span(),
                        format!("default must be \"allow\" or \"deny\", not \"{other}\""),
                    );
                }
            };
        }
        p.commands.allow.clear();
        p.commands.deny.clear();
        for name in c.allow.iter().flatten() {
            p.commands.allow.insert(command(ctx, name)?);
        }
        for name in c.deny.iter().flatten() {
            let cmd = command(ctx, name)?;
            if p.commands.allow.contains(&cmd) {
                return ctx.err(name.span(), format!("'{cmd}' is both allowed and denied"));
            }
            p.commands.deny.insert(cmd);
        }
    }

    if let Some(a) = raw.audit {
        if let Some(s) = a.stderr {
            p.audit.stderr = s;
        }
        if let Some(f) = &a.file {
            p.audit.file = Some(absolute(ctx, f, "the audit file")?);
        }
        if let Some(s) = &a.sync {
            p.audit.sync = match s.get_ref().as_str() {
                "record" => SyncMode::Record,
                "batch" => SyncMode::Batch,
                other => {
                    return ctx.err(
                        s.span(),
                        format!("sync must be \"record\" or \"batch\", not \"{other}\""),
                    );
                }
            };
        }
        if let Some(m) = &a.max_held_bytes {
            p.audit.max_held_bytes = nonneg(ctx, m, "max_held_bytes")?;
        }
        if !p.audit.stderr && p.audit.file.is_none() {
            return ctx.err(0..0, "[audit] sends records nowhere: set stderr = true or a file");
        }
    }

    if let Some(e) = raw.exec {
        let defaults = &mut p.exec;
        if let Some(r) = &e.run_as {
            defaults.run_as = account(ctx, r)?;
        }
        if let Some(t) = &e.timeout_seconds {
            defaults.timeout_seconds = Some(nonneg(ctx, t, "timeout_seconds")?);
        }
        if let Some(m) = &e.max_output_bytes {
            defaults.max_output_bytes = nonneg(ctx, m, "max_output_bytes")?;
        }
        if let Some(i) = e.allow_input {
            defaults.allow_input = i;
        }
        if let Some(env) = &e.env {
            defaults.env = globs(ctx, env)?;
        }
        if let Some(m) = &e.max_children {
            defaults.max_children = nonneg(ctx, m, "max_children")? as u32;
        }
        let base = defaults.clone();
        for prog in e.program.iter().flatten() {
            let path =
                if prog.path.get_ref().starts_with('/') || prog.path.get_ref().starts_with('*') {
                    glob(ctx, &prog.path)?
                } else {
                    return ctx.err(
                        prog.path.span(),
                        "program path must be absolute (or a glob such as \"**\")",
                    );
                };
            let args = match &prog.args {
                None => None,
                Some(v) => Some(
                    v.iter()
                        .map(|a| ArgPattern::new(a.get_ref()).or_else(|e| ctx.err(a.span(), e)))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let more_args = match &prog.more_args {
                None => None,
                Some(a) => Some(ArgPattern::new(a.get_ref()).or_else(|e| ctx.err(a.span(), e))?),
            };
            let max_args = match &prog.max_args {
                None => None,
                Some(m) => Some(nonneg(ctx, m, "max_args")? as usize),
            };
            p.exec.programs.push(ProgramRule {
                path,
                args,
                more_args,
                max_args,
                env: match &prog.env {
                    Some(env) => globs(ctx, env)?,
                    None => base.env.clone(),
                },
                run_as: match &prog.run_as {
                    Some(r) => account(ctx, r)?,
                    None => base.run_as.clone(),
                },
                timeout_seconds: match &prog.timeout_seconds {
                    Some(t) => Some(nonneg(ctx, t, "timeout_seconds")?),
                    None => base.timeout_seconds,
                },
                max_output_bytes: match &prog.max_output_bytes {
                    Some(m) => nonneg(ctx, m, "max_output_bytes")?,
                    None => base.max_output_bytes,
                },
                allow_input: prog.allow_input.unwrap_or(base.allow_input),
            });
        }
    }

    if let Some(f) = raw.files {
        if let Some(m) = &f.max_handles {
            p.files.max_handles = nonneg(ctx, m, "max_handles")? as u32;
        }
        for rule in f.rule.iter().flatten() {
            let dir = absolute(ctx, &rule.dir, "dir")?;
            let pattern = match &rule.pattern {
                Some(pat) => {
                    if pat.get_ref().starts_with('/') {
                        return ctx.err(
                            pat.span(),
                            "pattern is relative to dir: it must not start with '/'",
                        );
                    }
                    glob(ctx, pat)?
                }
                None => Glob::new("**").or_else(|e| ctx.err(rule.dir.span(), e))?,
            };
            let mut access = crate::Access::default();
            if rule.access.get_ref().is_empty() {
                return ctx.err(rule.access.span(), "access lists nothing");
            }
            for a in rule.access.get_ref() {
                match a.get_ref().as_str() {
                    "read" => access.read = true,
                    "write" => access.write = true,
                    "append" => access.append = true,
                    "create" => access.create = true,
                    other => {
                        return ctx.err(
                            a.span(),
                            format!("unknown access '{other}' (read, write, append, create)"),
                        );
                    }
                }
            }
            p.files.rules.push(FileRule { dir, pattern, access });
        }
    }

    if let Some(pw) = raw.password {
        if let Some(a) = &pw.accounts {
            p.password.accounts = globs(ctx, a)?;
        }
        if let Some(d) = &pw.deny_accounts {
            p.password.deny_accounts = globs(ctx, d)?;
        }
        if let Some(pt) = pw.allow_plaintext {
            p.password.allow_plaintext = pt;
        }
    }

    if let Some(f) = raw.fsfreeze {
        if let Some(m) = &f.mountpoints {
            p.fsfreeze.mounts = MountPolicy { mountpoints: globs(ctx, m)? };
        }
        if let Some(s) = &f.max_frozen_seconds {
            p.fsfreeze.max_frozen_seconds = nonneg(ctx, s, "max_frozen_seconds")?;
        }
        if let Some(t) = f.thaw_on_disconnect {
            p.fsfreeze.thaw_on_disconnect = t;
        }
    }
    if let Some(m) = raw.fstrim {
        p.fstrim = MountPolicy { mountpoints: globs(ctx, &m.mountpoints)? };
    }
    if let Some(v) = raw.vcpus {
        if let Some(m) = &v.min_online {
            p.vcpus.min_online = nonneg(ctx, m, "min_online")? as u32;
        }
        if let Some(i) = &v.ids {
            p.vcpus.ids = ids(ctx, i)?;
        }
    }
    if let Some(b) = raw.memory_blocks {
        if let Some(i) = &b.ids {
            p.memory_blocks = ids(ctx, i)?;
        }
    }
    if let Some(pw) = raw.power {
        p.power.clear();
        for m in &pw.modes {
            let mode = PowerMode::from_name(m.get_ref()).map_or_else(
                || ctx.err(m.span(), format!("unknown power mode '{}'", m.get_ref())),
                Ok,
            )?;
            p.power.insert(mode);
        }
    }
    if let Some(s) = raw.ssh {
        if let Some(a) = &s.accounts {
            p.ssh.accounts = globs(ctx, a)?;
        }
        if let Some(d) = &s.deny_accounts {
            p.ssh.deny_accounts = globs(ctx, d)?;
        }
        if let Some(t) = &s.key_types {
            p.ssh.key_types.clear();
            for k in t {
                let name = k.get_ref();
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-@.".contains(&b));
                if !valid {
                    return ctx.err(k.span(), format!("'{name}' is not an SSH key type name"));
                }
                p.ssh.key_types.push(name.clone());
            }
        }
        if let Some(o) = s.allow_options {
            p.ssh.allow_options = o;
        }
        if let Some(m) = &s.max_keys {
            p.ssh.max_keys = nonneg(ctx, m, "max_keys")? as usize;
        }
    }
    if let Some(t) = raw.time {
        if let Some(m) = &t.max_step_seconds {
            p.max_time_step_seconds = Some(nonneg(ctx, m, "max_step_seconds")?);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, "p.toml") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn errors_are_located() {
        assert_eq!(
            err("[commands]\ndeny = [\"guest-nope\"]\n"),
            "p.toml:2:9: unknown command 'guest-nope'"
        );
        assert!(err("[commands]\nbogus = 1\n").starts_with("p.toml:2:1: unknown field `bogus`"));
        assert!(err("[nope]\n").starts_with("p.toml:1:"), "{}", err("[nope]\n"));
        assert!(err("[vcpus]\nmin_online = \"x\"\n").starts_with("p.toml:2:14:"));
        assert_eq!(
            err("[[files.rule]]\ndir = \"/var\"\naccess = [\"read\", \"exec\"]\n"),
            "p.toml:3:19: unknown access 'exec' (read, write, append, create)"
        );
        assert_eq!(
            err("[[files.rule]]\ndir = \"var\"\naccess = [\"read\"]\n"),
            "p.toml:2:7: dir must be an absolute path"
        );
        assert_eq!(
            err("[[files.rule]]\ndir = \"/var/../etc\"\naccess = [\"read\"]\n"),
            "p.toml:2:7: dir must not contain '..'"
        );
        assert!(
            err("[[exec.program]]\npath = \"/bin/x\"\nargs = [\"(\"]\n")
                .starts_with("p.toml:3:9: bad pattern '('")
        );
        assert!(
            err("[fsfreeze]\nmountpoints = [\"/[x\"]\n").starts_with("p.toml:2:16: unclosed '['")
        );
        assert_eq!(
            err("version = 2\n"),
            "p.toml:1:11: unsupported policy version 2 (this agent reads version 1)"
        );
        assert_eq!(
            err("[commands]\nallow = [\"guest-ping\"]\ndeny = [\"guest-ping\"]\n"),
            "p.toml:3:9: 'guest-ping' is both allowed and denied"
        );
        assert_eq!(
            err("[power]\nmodes = [\"explode\"]\n"),
            "p.toml:2:10: unknown power mode 'explode'"
        );
        assert_eq!(
            err("[exec]\ntimeout_seconds = -1\n"),
            "p.toml:2:19: timeout_seconds must not be negative"
        );
        assert_eq!(
            err("[vcpus]\nids = [\"3-1\"]\n"),
            "p.toml:2:7: '3-1' is not a range like \"4-7\""
        );
        assert!(err("[commands]\ndeny = \"guest-exec\"\n").starts_with("p.toml:2:8:"));
    }

    #[test]
    fn huge_patterns_are_refused() {
        let text = format!("[fsfreeze]\nmountpoints = [\"{}\"]\n", "a".repeat(100_000));
        assert!(err(&text).contains("pattern longer than"));
    }

    #[test]
    fn locate_counts_characters() {
        assert_eq!(locate("ab\ncé d", 7), (2, 4));
        assert_eq!(locate("x", 0), (1, 1));
    }
}
