//! The policy: what the host may do inside the guest, down to the arguments.
//!
//! Pure: no I/O beyond reading the policy file. The broker loads a [`Policy`]
//! at start-up (a file, or the built-in default), narrows it with qemu-ga's
//! `-b`/`-a` lists, and asks [`Policy::decide`] about every request. A
//! decision either denies (naming the rule) or allows with a [`Grant`]: the
//! limits the operation must work within (the account a program runs as, the
//! directory a file is opened beneath, ...).

#![forbid(unsafe_code)]

pub mod audit;
mod file;
pub mod pattern;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use ipc::{Command, ExecRequest, FileMode, Request, ShutdownMode};

pub use file::{MAX_POLICY_BYTES, PolicyError, load, parse};
use pattern::{ArgPattern, Glob};

/// The built-in default policy, as a policy file.
pub const DEFAULT_POLICY: &str = include_str!("default.toml");

/// Where the broker looks for the policy file.
pub const DEFAULT_POLICY_PATH: &str = "/etc/qga-warden/policy.toml";

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, in hex.
    pub sha256: String,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandDefault {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRules {
    pub default: CommandDefault,
    pub allow: BTreeSet<Command>,
    pub deny: BTreeSet<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync after every record.
    Record,
    /// fsync once per batch (every loop iteration that wrote records).
    Batch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub stderr: bool,
    pub file: Option<PathBuf>,
    pub sync: SyncMode,
    /// Records held in memory while filesystems are frozen, at most.
    pub max_held_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecPolicy {
    pub run_as: String,
    pub timeout_seconds: Option<u64>,
    pub max_output_bytes: u64,
    pub allow_input: bool,
    pub env: Vec<Glob>,
    pub max_children: u32,
    pub programs: Vec<ProgramRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProgramRule {
    pub path: Glob,
    /// One pattern per argument position; `None`: no fixed arguments.
    pub args: Option<Vec<ArgPattern>>,
    /// Arguments after the fixed ones must each match this.
    pub more_args: Option<ArgPattern>,
    pub max_args: Option<usize>,
    pub env: Vec<Glob>,
    pub run_as: String,
    pub timeout_seconds: Option<u64>,
    pub max_output_bytes: u64,
    pub allow_input: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    pub create: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileRule {
    /// Files are resolved beneath this directory by the broker.
    pub dir: PathBuf,
    /// Matched against the path relative to `dir`.
    pub pattern: Glob,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilePolicy {
    pub max_handles: u32,
    pub rules: Vec<FileRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PasswordPolicy {
    pub accounts: Vec<Glob>,
    pub deny_accounts: Vec<Glob>,
    pub allow_plaintext: bool,
}

/// `[ssh]`: whose `authorized_keys` the host may manage, and with what keys.
#[derive(Debug, Clone, PartialEq)]
pub struct SshPolicy {
    pub accounts: Vec<Glob>,
    pub deny_accounts: Vec<Glob>,
    /// Key types accepted in guest-ssh-add-authorized-keys (`ssh-ed25519`, ...).
    pub key_types: Vec<String>,
    /// Whether an added key may carry options (`command="..."`, `from=...`).
    pub allow_options: bool,
    /// Keys one add or remove request may name.
    pub max_keys: usize,
}

/// The key types OpenSSH 9 accepts in `authorized_keys`, less DSA (removed
/// from OpenSSH) and its certificates.
pub const DEFAULT_SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ssh-rsa",
    "ssh-rsa-cert-v01@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-512",
];

#[derive(Debug, Clone, PartialEq)]
pub struct MountPolicy {
    pub mountpoints: Vec<Glob>,
}

/// `[fsfreeze]`: what may be frozen, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct FreezePolicy {
    pub mounts: MountPolicy,
    /// The broker thaws everything this long after a freeze if no thaw
    /// came; 0 disables the watchdog.
    pub max_frozen_seconds: u64,
    /// Thaw when the host closes the channel (or disconnects).
    pub thaw_on_disconnect: bool,
}

impl MountPolicy {
    pub fn allows(&self, mountpoint: &str) -> bool {
        self.mountpoints.iter().any(|g| g.matches(mountpoint))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSet {
    All,
    /// Inclusive ranges.
    Ranges(BTreeSet<(u64, u64)>),
}

impl IdSet {
    pub fn contains(&self, id: u64) -> bool {
        match self {
            IdSet::All => true,
            IdSet::Ranges(r) => r.iter().any(|&(a, b)| (a..=b).contains(&id)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuPolicy {
    pub min_online: u32,
    pub ids: IdSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PowerMode {
    Powerdown,
    Reboot,
    Halt,
    SuspendDisk,
    SuspendRam,
    SuspendHybrid,
}

impl PowerMode {
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "powerdown" => Self::Powerdown,
            "reboot" => Self::Reboot,
            "halt" => Self::Halt,
            "suspend-disk" => Self::SuspendDisk,
            "suspend-ram" => Self::SuspendRam,
            "suspend-hybrid" => Self::SuspendHybrid,
            _ => return None,
        })
    }
}

/// The rule that made a decision. Its text names a place in the policy and
/// says why, without repeating the policy's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// qemu-ga's `-b`/`--block-rpcs` (or `block-rpcs`).
    BlockRpcs,
    /// Not in qemu-ga's `-a`/`--allow-rpcs` (or `allow-rpcs`).
    AllowRpcs,
    /// In `[commands] deny`.
    CommandDenied,
    /// Not in `[commands] allow` under `default = "deny"`.
    CommandNotAllowed,
    ExecProgram,
    ExecArgs,
    ExecEnv,
    ExecInput,
    FilePath,
    FileAccess,
    PasswordAccount,
    PasswordPlaintext,
    FreezeMountpoint,
    VcpuIds,
    MemoryBlockIds,
    PowerMode,
    SshAccount,
    SshKeyCount,
}

impl Rule {
    /// Where the rule lives.
    pub fn name(self) -> &'static str {
        match self {
            Rule::BlockRpcs => "block-rpcs",
            Rule::AllowRpcs => "allow-rpcs",
            Rule::CommandDenied => "commands.deny",
            Rule::CommandNotAllowed => "commands.allow",
            Rule::ExecProgram => "exec.program",
            Rule::ExecArgs => "exec.program.args",
            Rule::ExecEnv => "exec.env",
            Rule::ExecInput => "exec.allow_input",
            Rule::FilePath => "files",
            Rule::FileAccess => "files.rule",
            Rule::PasswordAccount => "password.accounts",
            Rule::PasswordPlaintext => "password.allow_plaintext",
            Rule::FreezeMountpoint => "fsfreeze.mountpoints",
            Rule::VcpuIds => "vcpus.ids",
            Rule::MemoryBlockIds => "memory_blocks.ids",
            Rule::PowerMode => "power.modes",
            Rule::SshAccount => "ssh.accounts",
            Rule::SshKeyCount => "ssh.max_keys",
        }
    }

    /// Why, in terms of the request only.
    pub fn reason(self) -> &'static str {
        match self {
            Rule::BlockRpcs | Rule::AllowRpcs | Rule::CommandDenied | Rule::CommandNotAllowed => {
                "the command is disabled"
            }
            Rule::ExecProgram => "this program may not be run",
            Rule::ExecArgs => "these arguments are not allowed for this program",
            Rule::ExecEnv => "an environment variable is not allowed",
            Rule::ExecInput => "input-data is not allowed",
            Rule::FilePath => "the path must be absolute, without '..' or NUL",
            Rule::FileAccess => "no rule allows this access to this path",
            Rule::PasswordAccount => "this account's password may not be set",
            Rule::PasswordPlaintext => "only crypted passwords are accepted",
            Rule::FreezeMountpoint => "a mount point may not be frozen",
            Rule::VcpuIds => "a vCPU may not be changed",
            Rule::MemoryBlockIds => "a memory block may not be changed",
            Rule::PowerMode => "this mode is not allowed",
            Rule::SshAccount => "this account's keys may not be managed",
            Rule::SshKeyCount => "too many keys in one request",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.reason())
    }
}

/// What an allowed request may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// Nothing beyond the request itself.
    Plain,
    Exec(ExecGrant),
    FileOpen(FileGrant),
    /// Only mount points this policy allows are frozen or trimmed.
    Mounts(MountPolicy),
    Vcpus {
        min_online: u32,
    },
    SetTime {
        max_step_seconds: Option<u64>,
    },
    Ssh(SshGrant),
}

/// What guest-ssh-* may do for an allowed account; the broker checks each
/// key against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshGrant {
    pub key_types: Vec<String>,
    pub allow_options: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecGrant {
    pub run_as: String,
    pub timeout_seconds: Option<u64>,
    pub max_output_bytes: u64,
    pub max_children: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    /// The directory to resolve beneath (openat2 RESOLVE_BENEATH).
    pub base: PathBuf,
    /// The path below `base`: no `..`, no empty or `.` components.
    pub relative: PathBuf,
    /// The file may be created when it does not exist.
    pub may_create: bool,
    pub max_handles: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Grant),
    /// The whole command is disabled (qemu-ga's "has been disabled").
    DenyCommand(Rule),
    /// The command is allowed, these arguments are not.
    DenyArgument(Rule),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn rule(&self) -> Option<Rule> {
        match self {
            Decision::Allow(_) => None,
            Decision::DenyCommand(r) | Decision::DenyArgument(r) => Some(*r),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `None` for the built-in default.
    pub source: Option<Source>,
    pub commands: CommandRules,
    rpc_allow: Option<BTreeSet<Command>>,
    rpc_block: BTreeSet<Command>,
    pub audit: AuditConfig,
    pub exec: ExecPolicy,
    pub files: FilePolicy,
    pub password: PasswordPolicy,
    pub fsfreeze: FreezePolicy,
    pub fstrim: MountPolicy,
    pub vcpus: VcpuPolicy,
    pub memory_blocks: IdSet,
    pub power: BTreeSet<PowerMode>,
    pub max_time_step_seconds: Option<u64>,
    pub ssh: SshPolicy,
}

fn glob_all() -> Vec<Glob> {
    Glob::new("**").map(|g| vec![g]).unwrap_or_default()
}

impl Policy {
    /// The sections as the built-in default has them; a policy file's
    /// sections replace these one by one.
    pub(crate) fn built_in_sections() -> Policy {
        let file_and_exec = [
            Command::Exec,
            Command::ExecStatus,
            Command::FileOpen,
            Command::FileClose,
            Command::FileRead,
            Command::FileWrite,
            Command::FileSeek,
            Command::FileFlush,
        ];
        Policy {
            source: None,
            commands: CommandRules {
                default: CommandDefault::Allow,
                allow: BTreeSet::new(),
                deny: file_and_exec.into_iter().collect(),
            },
            rpc_allow: None,
            rpc_block: BTreeSet::new(),
            audit: AuditConfig {
                stderr: true,
                file: None,
                sync: SyncMode::Batch,
                max_held_bytes: 8 * 1024 * 1024,
            },
            exec: ExecPolicy {
                run_as: "nobody".into(),
                timeout_seconds: None,
                max_output_bytes: 16 * 1024 * 1024,
                allow_input: true,
                env: Vec::new(),
                max_children: 32,
                programs: Vec::new(),
            },
            files: FilePolicy { max_handles: 64, rules: Vec::new() },
            password: PasswordPolicy {
                accounts: Glob::new("*").map(|g| vec![g]).unwrap_or_default(),
                deny_accounts: Vec::new(),
                allow_plaintext: true,
            },
            fsfreeze: FreezePolicy {
                mounts: MountPolicy { mountpoints: glob_all() },
                max_frozen_seconds: 300,
                thaw_on_disconnect: false,
            },
            fstrim: MountPolicy { mountpoints: glob_all() },
            vcpus: VcpuPolicy { min_online: 1, ids: IdSet::All },
            memory_blocks: IdSet::All,
            power: [
                PowerMode::Powerdown,
                PowerMode::Reboot,
                PowerMode::Halt,
                PowerMode::SuspendDisk,
                PowerMode::SuspendRam,
                PowerMode::SuspendHybrid,
            ]
            .into_iter()
            .collect(),
            max_time_step_seconds: None,
            ssh: SshPolicy {
                accounts: Glob::new("*").map(|g| vec![g]).unwrap_or_default(),
                deny_accounts: Glob::new("root").map(|g| vec![g]).unwrap_or_default(),
                key_types: DEFAULT_SSH_KEY_TYPES.iter().map(|s| (*s).to_owned()).collect(),
                allow_options: false,
                max_keys: 64,
            },
        }
    }

    /// The built-in default (the policy used when there is no policy file).
    pub fn built_in() -> Policy {
        // DEFAULT_POLICY describes exactly these sections (a test checks it),
        // so the text is not parsed at start-up.
        Policy::built_in_sections()
    }

    /// Every command allowed with any arguments (as upstream qemu-ga).
    pub fn permissive() -> Policy {
        let mut p = Policy::built_in_sections();
        p.commands.deny.clear();
        p.ssh.deny_accounts.clear();
        p.ssh.allow_options = true;
        p.exec.env = glob_all();
        if let Ok(path) = Glob::new("**") {
            p.exec.programs.push(ProgramRule {
                path,
                args: None,
                more_args: ArgPattern::new(".*").ok(),
                max_args: None,
                env: glob_all(),
                run_as: "root".into(),
                timeout_seconds: None,
                max_output_bytes: 16 * 1024 * 1024,
                allow_input: true,
            });
        }
        p.files.rules.push(FileRule {
            dir: PathBuf::from("/"),
            pattern: Glob::new("**").unwrap_or_else(|_| unreachable!("a valid glob")),
            access: Access { read: true, write: true, append: true, create: true },
        });
        p
    }

    /// Loads the policy the broker runs with: `explicit` must exist; without
    /// it, `DEFAULT_POLICY_PATH` is used if it exists, else the built-in one.
    pub fn load_for_broker(explicit: Option<&Path>) -> Result<Policy, PolicyError> {
        match explicit {
            Some(p) => load(p),
            None if Path::new(DEFAULT_POLICY_PATH).exists() => load(Path::new(DEFAULT_POLICY_PATH)),
            None => Ok(Policy::built_in()),
        }
    }

    /// Narrows as qemu-ga's `-a/--allow-rpcs` does: commands not listed are
    /// disabled. Several calls intersect.
    pub fn restrict_to(&mut self, allowed: impl IntoIterator<Item = Command>) {
        let allowed: BTreeSet<Command> = allowed.into_iter().collect();
        self.rpc_allow = Some(match self.rpc_allow.take() {
            Some(prev) => prev.intersection(&allowed).copied().collect(),
            None => allowed,
        });
    }

    /// Narrows as qemu-ga's `-b/--block-rpcs` does.
    pub fn block(&mut self, blocked: impl IntoIterator<Item = Command>) {
        self.rpc_block.extend(blocked);
    }

    /// Whether `command` may run at all; the rule that disables it if not.
    pub fn command_rule(&self, command: Command) -> Option<Rule> {
        if self.rpc_block.contains(&command) {
            return Some(Rule::BlockRpcs);
        }
        if self.rpc_allow.as_ref().is_some_and(|a| !a.contains(&command)) {
            return Some(Rule::AllowRpcs);
        }
        if self.commands.deny.contains(&command) {
            return Some(Rule::CommandDenied);
        }
        if self.commands.default == CommandDefault::Deny && !self.commands.allow.contains(&command)
        {
            return Some(Rule::CommandNotAllowed);
        }
        None
    }

    pub fn command_enabled(&self, command: Command) -> bool {
        self.command_rule(command).is_none()
    }

    /// The commands disabled as a whole.
    pub fn disabled_commands(&self) -> Vec<Command> {
        Command::ALL.iter().copied().filter(|&c| !self.command_enabled(c)).collect()
    }

    /// The decision for one request. A request outside the policy is never
    /// allowed, whatever its contents.
    pub fn decide(&self, request: &Request) -> Decision {
        if let Some(rule) = self.command_rule(request.command()) {
            return Decision::DenyCommand(rule);
        }
        let checked = match request {
            Request::Exec(e) => self.decide_exec(e),
            Request::FileOpen { path, mode } => self.decide_file(path, *mode),
            Request::SetUserPassword { username, crypted, .. } => {
                let listed = |globs: &[Glob]| globs.iter().any(|g| g.matches(username));
                if listed(&self.password.deny_accounts) || !listed(&self.password.accounts) {
                    Err(Rule::PasswordAccount)
                } else if !crypted && !self.password.allow_plaintext {
                    Err(Rule::PasswordPlaintext)
                } else {
                    Ok(Grant::Plain)
                }
            }
            Request::FsfreezeFreezeList { mountpoints: Some(list) } => {
                if list.iter().all(|m| self.fsfreeze.mounts.allows(m)) {
                    Ok(Grant::Mounts(self.fsfreeze.mounts.clone()))
                } else {
                    Err(Rule::FreezeMountpoint)
                }
            }
            Request::FsfreezeFreeze | Request::FsfreezeFreezeList { mountpoints: None } => {
                Ok(Grant::Mounts(self.fsfreeze.mounts.clone()))
            }
            Request::Fstrim { .. } => Ok(Grant::Mounts(self.fstrim.clone())),
            Request::SetVcpus { vcpus } => {
                let ok = vcpus.iter().all(|v| {
                    u64::try_from(v.logical_id).is_ok_and(|id| self.vcpus.ids.contains(id))
                });
                if ok {
                    Ok(Grant::Vcpus { min_online: self.vcpus.min_online })
                } else {
                    Err(Rule::VcpuIds)
                }
            }
            Request::SetMemoryBlocks { blocks } => {
                if blocks.iter().all(|b| self.memory_blocks.contains(b.phys_index)) {
                    Ok(Grant::Plain)
                } else {
                    Err(Rule::MemoryBlockIds)
                }
            }
            Request::Shutdown { mode } => self.power_mode(match mode {
                ShutdownMode::Halt => PowerMode::Halt,
                ShutdownMode::Powerdown => PowerMode::Powerdown,
                ShutdownMode::Reboot => PowerMode::Reboot,
            }),
            Request::SuspendDisk => self.power_mode(PowerMode::SuspendDisk),
            Request::SuspendRam => self.power_mode(PowerMode::SuspendRam),
            Request::SuspendHybrid => self.power_mode(PowerMode::SuspendHybrid),
            Request::SshGetAuthorizedKeys { username } => self.decide_ssh(username, 0),
            Request::SshAddAuthorizedKeys { username, keys, .. }
            | Request::SshRemoveAuthorizedKeys { username, keys } => {
                self.decide_ssh(username, keys.len())
            }
            Request::SetTime { .. } => {
                Ok(Grant::SetTime { max_step_seconds: self.max_time_step_seconds })
            }
            _ => Ok(Grant::Plain),
        };
        match checked {
            Ok(grant) => Decision::Allow(grant),
            Err(rule) => Decision::DenyArgument(rule),
        }
    }

    fn decide_ssh(&self, username: &str, keys: usize) -> Result<Grant, Rule> {
        let listed = |globs: &[Glob]| globs.iter().any(|g| g.matches(username));
        if listed(&self.ssh.deny_accounts) || !listed(&self.ssh.accounts) {
            return Err(Rule::SshAccount);
        }
        if keys > self.ssh.max_keys {
            return Err(Rule::SshKeyCount);
        }
        Ok(Grant::Ssh(SshGrant {
            key_types: self.ssh.key_types.clone(),
            allow_options: self.ssh.allow_options,
        }))
    }

    fn power_mode(&self, mode: PowerMode) -> Result<Grant, Rule> {
        if self.power.contains(&mode) { Ok(Grant::Plain) } else { Err(Rule::PowerMode) }
    }

    fn decide_exec(&self, e: &ExecRequest) -> Result<Grant, Rule> {
        let lexically_normal = |p: &str| {
            p.starts_with('/')
                && !p.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == "..")
        };
        let program = self
            .exec
            .programs
            .iter()
            .find(|r| {
                r.path.matches(&e.path)
                    && (r.path.as_str() == "**"
                        || (lexically_normal(&e.path) && !e.path.contains('\0')))
            })
            .ok_or(Rule::ExecProgram)?;
        let fixed = program.args.as_deref().unwrap_or(&[]);
        if e.args.len() < fixed.len() {
            return Err(Rule::ExecArgs);
        }
        if !fixed.iter().zip(&e.args).all(|(p, a)| p.matches(a)) {
            return Err(Rule::ExecArgs);
        }
        let extra = &e.args[fixed.len()..];
        match &program.more_args {
            None if !extra.is_empty() => return Err(Rule::ExecArgs),
            Some(p) if !extra.iter().all(|a| p.matches(a)) => return Err(Rule::ExecArgs),
            _ => {}
        }
        if program.max_args.is_some_and(|m| e.args.len() > m) {
            return Err(Rule::ExecArgs);
        }
        for var in &e.env {
            let Some((name, _)) = var.split_once('=') else {
                return Err(Rule::ExecEnv);
            };
            if name.is_empty() || !program.env.iter().any(|g| g.matches(name)) {
                return Err(Rule::ExecEnv);
            }
        }
        if e.input.is_some() && !program.allow_input {
            return Err(Rule::ExecInput);
        }
        Ok(Grant::Exec(ExecGrant {
            run_as: program.run_as.clone(),
            timeout_seconds: program.timeout_seconds,
            max_output_bytes: program.max_output_bytes,
            max_children: self.exec.max_children,
        }))
    }

    fn decide_file(&self, path: &str, mode: FileMode) -> Result<Grant, Rule> {
        if !path.starts_with('/') || path.contains('\0') {
            return Err(Rule::FilePath);
        }
        let components: Vec<&str> =
            path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        if components.contains(&"..") {
            return Err(Rule::FilePath);
        }
        use FileMode::*;
        let (read, write, append) = match mode {
            R | Rb => (true, false, false),
            RPlus | RbPlus | RPlusB => (true, true, false),
            W | Wb => (false, true, false),
            WPlus | WbPlus | WPlusB => (true, true, false),
            A | Ab => (false, false, true),
            APlus | AbPlus | APlusB => (true, false, true),
        };
        for rule in &self.files.rules {
            let dir: Vec<&str> =
                rule.dir.to_str().unwrap_or("").split('/').filter(|c| !c.is_empty()).collect();
            // Component by component: "/var/log" never covers "/var/logs".
            if components.len() <= dir.len() || components[..dir.len()] != dir[..] {
                continue;
            }
            let relative = components[dir.len()..].join("/");
            if !rule.pattern.matches(&relative) {
                continue;
            }
            let a = rule.access;
            if (read && !a.read) || (write && !a.write) || (append && !(a.append || a.write)) {
                continue;
            }
            return Ok(Grant::FileOpen(FileGrant {
                base: rule.dir.clone(),
                relative: PathBuf::from(relative),
                may_create: a.create,
                max_handles: self.files.max_handles,
            }));
        }
        Err(Rule::FileAccess)
    }
}

#[cfg(test)]
mod tests;
