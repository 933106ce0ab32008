//! The command line, compatible with qemu-ga's where qemu-ga has the flag,
//! and its INI configuration file (`[general]` keys).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError};

pub const DEFAULT_VIRTIO_PATH: &str = "/dev/virtio-ports/org.qemu.guest_agent.0";
pub const DEFAULT_SERIAL_PATH: &str = "/dev/ttyS0";
pub const DEFAULT_PIDFILE: &str = "/run/qga-warden.pid";
pub const DEFAULT_STATEDIR: &str = "/run/qga-warden";
/// The hook `-F` runs when given no path: the package's
/// ([`FSFREEZE_HOOK`]) when it is installed, else qemu-ga's
/// ([`QEMU_GA_FSFREEZE_HOOK`]), so that `-F` keeps working where only
/// qemu-ga's hook exists.
pub const FSFREEZE_HOOK: &str = "/etc/qga-warden/fsfreeze-hook";
/// qemu-ga's default hook.
pub const QEMU_GA_FSFREEZE_HOOK: &str = "/etc/qemu/fsfreeze-hook";
/// Where qemu-ga reads its configuration; an existing file keeps working.
pub const DEFAULT_CONFIG: &str = "/etc/qemu/qemu-ga.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    UnixListen,
    VirtioSerial,
    IsaSerial,
    VsockListen,
}

impl Method {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "unix-listen" => Some(Method::UnixListen),
            "virtio-serial" => Some(Method::VirtioSerial),
            "isa-serial" => Some(Method::IsaSerial),
            "vsock-listen" => Some(Method::VsockListen),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::UnixListen => "unix-listen",
            Method::VirtioSerial => "virtio-serial",
            Method::IsaSerial => "isa-serial",
            Method::VsockListen => "vsock-listen",
        }
    }
}

/// Everything the agent is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub method: Method,
    /// The channel path; `None` until defaults are applied, which
    /// [`Settings::channel_path`] does.
    pub path: Option<String>,
    pub logfile: Option<PathBuf>,
    pub pidfile: PathBuf,
    /// The pid file was named explicitly (it is then written even without -d).
    pub pidfile_given: bool,
    pub fsfreeze_hook: Option<PathBuf>,
    pub statedir: PathBuf,
    pub verbose: bool,
    pub daemonize: bool,
    pub retry_path: bool,
    pub block_rpcs: Vec<String>,
    pub allow_rpcs: Option<Vec<String>>,
    pub frontend: Option<PathBuf>,
    /// The account the frontend drops to (default `qga-warden`, else `nobody`).
    pub frontend_user: Option<String>,
    /// Refuse to run unless the frontend's Landlock ruleset is fully enforced.
    pub require_landlock: bool,
    /// The policy file (default: `/etc/qga-warden/policy.toml` if it exists,
    /// else the built-in policy).
    pub policy: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            method: Method::VirtioSerial,
            path: None,
            logfile: None,
            pidfile: PathBuf::from(DEFAULT_PIDFILE),
            pidfile_given: false,
            fsfreeze_hook: None,
            statedir: PathBuf::from(DEFAULT_STATEDIR),
            verbose: false,
            daemonize: false,
            retry_path: false,
            block_rpcs: Vec::new(),
            allow_rpcs: None,
            frontend: None,
            frontend_user: None,
            require_landlock: false,
            policy: None,
        }
    }
}

impl Settings {
    /// The channel path, or the method's default.
    pub fn channel_path(&self) -> Result<String, CliError> {
        match (&self.path, self.method) {
            (Some(p), _) => Ok(p.clone()),
            (None, Method::VirtioSerial) => Ok(DEFAULT_VIRTIO_PATH.to_owned()),
            (None, Method::IsaSerial) => Ok(DEFAULT_SERIAL_PATH.to_owned()),
            (None, m) => Err(CliError::PathRequired(m.name())),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run(Settings),
    DumpConf(Settings),
    Help,
    Version,
    ListRpcs,
    /// `qga-warden policy check FILE`
    PolicyCheck(PathBuf),
    /// `qga-warden policy explain FILE REQUEST-JSON`
    PolicyExplain(PathBuf, String, Option<PathBuf>),
    /// `qga-warden policy show-default`
    PolicyShowDefault,
    /// `qga-warden thaw [-t STATEDIR] [--all] [MOUNTPOINT...]`
    Thaw {
        statedir: PathBuf,
        all: bool,
        mountpoints: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    UnknownOption(String),
    MissingArgument(String),
    UnexpectedArgument(String),
    NoArgumentAllowed(String),
    InvalidMethod(String),
    PathRequired(&'static str),
    InvalidVsockAddress(String),
    RelativeStatedir(String),
    Config(ConfigError),
    PolicyUsage,
    ThawUsage,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownOption(o) => write!(f, "unknown option '{o}'"),
            CliError::MissingArgument(o) => write!(f, "option '{o}' requires an argument"),
            CliError::UnexpectedArgument(a) => write!(f, "unexpected argument '{a}'"),
            CliError::NoArgumentAllowed(o) => write!(f, "option '{o}' takes no argument"),
            CliError::InvalidMethod(m) => write!(
                f,
                "invalid method '{m}' (valid: unix-listen, virtio-serial, isa-serial, vsock-listen)"
            ),
            CliError::PathRequired(m) => write!(f, "method {m} needs a path (-p)"),
            CliError::InvalidVsockAddress(a) => {
                write!(f, "invalid vsock address '{a}' (expected CID:PORT)")
            }
            CliError::RelativeStatedir(d) => {
                write!(f, "state directory '{d}' must be an absolute path")
            }
            CliError::Config(e) => write!(f, "{e}"),
            CliError::PolicyUsage => f.write_str(
                "usage: qga-warden policy check FILE | explain FILE REQUEST-JSON | show-default",
            ),
            CliError::ThawUsage => f.write_str(
                "usage: qga-warden thaw [-t STATEDIR] [--all] [MOUNTPOINT...] (mount points are absolute)",
            ),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Config(e)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    None,
    Required,
    /// Only attached: `-FPATH`, `--fsfreeze-hook=PATH` (as getopt's `F::`).
    Optional,
}

struct Opt {
    short: Option<char>,
    long: &'static str,
    arg: ArgKind,
}

#[rustfmt::skip]
const OPTIONS: &[Opt] = &[
    Opt { short: Some('h'), long: "help", arg: ArgKind::None },
    Opt { short: Some('V'), long: "version", arg: ArgKind::None },
    Opt { short: Some('v'), long: "verbose", arg: ArgKind::None },
    Opt { short: Some('d'), long: "daemonize", arg: ArgKind::None },
    Opt { short: Some('D'), long: "dump-conf", arg: ArgKind::None },
    Opt { short: Some('r'), long: "retry-path", arg: ArgKind::None },
    Opt { short: Some('m'), long: "method", arg: ArgKind::Required },
    Opt { short: Some('p'), long: "path", arg: ArgKind::Required },
    Opt { short: Some('l'), long: "logfile", arg: ArgKind::Required },
    Opt { short: Some('f'), long: "pidfile", arg: ArgKind::Required },
    Opt { short: Some('F'), long: "fsfreeze-hook", arg: ArgKind::Optional },
    Opt { short: Some('t'), long: "statedir", arg: ArgKind::Required },
    Opt { short: Some('b'), long: "block-rpcs", arg: ArgKind::Required },
    Opt { short: None, long: "blacklist", arg: ArgKind::Required },
    Opt { short: Some('a'), long: "allow-rpcs", arg: ArgKind::Required },
    Opt { short: Some('c'), long: "config", arg: ArgKind::Required },
    Opt { short: None, long: "frontend", arg: ArgKind::Required },
    Opt { short: None, long: "frontend-user", arg: ArgKind::Required },
    Opt { short: None, long: "require-landlock", arg: ArgKind::None },
    Opt { short: None, long: "policy", arg: ArgKind::Required },
];

/// Splits argv (without the program name) into (option long name, argument)
/// pairs, getopt-style: bundled short flags, attached or separate arguments,
/// `--name=value`, `--` ending options.
fn tokenize(args: &[String]) -> Result<Vec<(&'static str, Option<String>)>, CliError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(extra) = args.get(i) {
                return Err(CliError::UnexpectedArgument(extra.clone()));
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let opt = OPTIONS
                .iter()
                .find(|o| o.long == name)
                .ok_or_else(|| CliError::UnknownOption(arg.clone()))?;
            let value = match (opt.arg, attached) {
                (ArgKind::None, Some(_)) => {
                    return Err(CliError::NoArgumentAllowed(format!("--{name}")));
                }
                (ArgKind::None, None) => None,
                (ArgKind::Optional, v) => v,
                (ArgKind::Required, Some(v)) => Some(v),
                (ArgKind::Required, None) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| CliError::MissingArgument(format!("--{name}")))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            out.push((opt.long, value));
        } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = shorts.char_indices();
            for (pos, c) in chars.by_ref() {
                let opt = OPTIONS
                    .iter()
                    .find(|o| o.short == Some(c))
                    .ok_or_else(|| CliError::UnknownOption(format!("-{c}")))?;
                let rest = &shorts[pos + c.len_utf8()..];
                match opt.arg {
                    ArgKind::None => out.push((opt.long, None)),
                    ArgKind::Optional => {
                        out.push((opt.long, (!rest.is_empty()).then(|| rest.to_owned())));
                        break;
                    }
                    ArgKind::Required => {
                        let v = if !rest.is_empty() {
                            rest.to_owned()
                        } else {
                            let v = args
                                .get(i)
                                .ok_or_else(|| CliError::MissingArgument(format!("-{c}")))?;
                            i += 1;
                            v.clone()
                        };
                        out.push((opt.long, Some(v)));
                        break;
                    }
                }
            }
        } else {
            return Err(CliError::UnexpectedArgument(arg.clone()));
        }
    }
    Ok(out)
}

/// The hook `-F` without a path runs: ours if installed, else qemu-ga's.
pub fn default_fsfreeze_hook(exists: impl Fn(&Path) -> bool) -> PathBuf {
    if exists(Path::new(FSFREEZE_HOOK)) {
        PathBuf::from(FSFREEZE_HOOK)
    } else {
        PathBuf::from(QEMU_GA_FSFREEZE_HOOK)
    }
}

/// Splits qemu-ga's comma-separated RPC list.
pub fn split_rpcs(list: &str) -> Vec<String> {
    list.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Parses the command line. `env_config` is `$QGA_CONF`, honoured as qemu-ga
/// does when `-c` is not given.
pub fn parse(args: &[String], env_config: Option<&str>) -> Result<Action, CliError> {
    match args.first().map(String::as_str) {
        Some("policy") => return parse_policy_tool(&args[1..]),
        Some("thaw") => return parse_thaw(&args[1..]),
        _ => {}
    }
    let opts = tokenize(args)?;
    let mut settings = Settings::default();

    // The configuration file comes first; the command line overrides it.
    let explicit = opts.iter().rev().find(|(n, _)| *n == "config").and_then(|(_, v)| v.clone());
    match (&explicit, env_config) {
        (Some(path), _) => config::load(Path::new(path), &mut settings, true)?,
        (None, Some(path)) => config::load(Path::new(path), &mut settings, false)?,
        (None, None) => config::load(Path::new(DEFAULT_CONFIG), &mut settings, false)?,
    }

    let mut dump = false;
    let mut action = None;
    for (name, value) in opts {
        let v = value.unwrap_or_default();
        match name {
            "help" => action = action.or(Some(Action::Help)),
            "version" => action = action.or(Some(Action::Version)),
            "verbose" => settings.verbose = true,
            "daemonize" => settings.daemonize = true,
            "dump-conf" => dump = true,
            "retry-path" => settings.retry_path = true,
            "method" => {
                settings.method = Method::from_name(&v).ok_or(CliError::InvalidMethod(v))?;
            }
            "path" => settings.path = Some(v),
            "logfile" => settings.logfile = Some(PathBuf::from(v)),
            "pidfile" => {
                settings.pidfile = PathBuf::from(v);
                settings.pidfile_given = true;
            }
            "fsfreeze-hook" => {
                settings.fsfreeze_hook = Some(if v.is_empty() {
                    default_fsfreeze_hook(|p| p.exists())
                } else {
                    PathBuf::from(v)
                });
            }
            "statedir" => settings.statedir = PathBuf::from(v),
            "block-rpcs" | "blacklist" => {
                if v == "help" || v == "?" {
                    action = action.or(Some(Action::ListRpcs));
                }
                settings.block_rpcs.extend(split_rpcs(&v));
            }
            "allow-rpcs" => {
                if v == "help" || v == "?" {
                    action = action.or(Some(Action::ListRpcs));
                }
                settings.allow_rpcs.get_or_insert_with(Vec::new).extend(split_rpcs(&v));
            }
            "config" => {}
            "frontend" => settings.frontend = Some(PathBuf::from(v)),
            "frontend-user" => settings.frontend_user = Some(v),
            "require-landlock" => settings.require_landlock = true,
            "policy" => settings.policy = Some(PathBuf::from(v)),
            _ => unreachable!("every option in OPTIONS is handled"),
        }
    }
    if let Some(action) = action {
        return Ok(action);
    }
    validate(&settings)?;
    Ok(if dump { Action::DumpConf(settings) } else { Action::Run(settings) })
}

/// `qga-warden policy ...`: the operators' tools.
fn parse_policy_tool(args: &[String]) -> Result<Action, CliError> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["check", file] => Ok(Action::PolicyCheck(PathBuf::from(file))),
        ["explain", file, request] => {
            Ok(Action::PolicyExplain(PathBuf::from(file), (*request).to_owned(), None))
        }
        ["explain", file, request, "--frontend", fe] => Ok(Action::PolicyExplain(
            PathBuf::from(file),
            (*request).to_owned(),
            Some(PathBuf::from(fe)),
        )),
        ["show-default"] => Ok(Action::PolicyShowDefault),
        _ => Err(CliError::PolicyUsage),
    }
}

/// `qga-warden thaw`: for an operator, or systemd's `ExecStopPost=`.
fn parse_thaw(args: &[String]) -> Result<Action, CliError> {
    let mut statedir = PathBuf::from(DEFAULT_STATEDIR);
    let mut all = false;
    let mut mountpoints = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-t" | "--statedir" => {
                statedir = PathBuf::from(it.next().ok_or(CliError::ThawUsage)?);
            }
            "--all" => all = true,
            s if s.starts_with("--statedir=") => {
                statedir = PathBuf::from(&s["--statedir=".len()..]);
            }
            s if s.starts_with('/') => mountpoints.push(s.to_owned()),
            _ => return Err(CliError::ThawUsage),
        }
    }
    if !statedir.is_absolute() {
        return Err(CliError::RelativeStatedir(statedir.display().to_string()));
    }
    Ok(Action::Thaw { statedir, all, mountpoints })
}

fn validate(s: &Settings) -> Result<(), CliError> {
    let path = s.channel_path()?;
    if s.method == Method::VsockListen {
        parse_vsock(&path)?;
    }
    if !s.statedir.is_absolute() {
        return Err(CliError::RelativeStatedir(s.statedir.display().to_string()));
    }
    Ok(())
}

/// `CID:PORT` as qemu-ga writes vsock addresses.
pub fn parse_vsock(addr: &str) -> Result<(u32, u32), CliError> {
    let bad = || CliError::InvalidVsockAddress(addr.to_owned());
    let (cid, port) = addr.split_once(':').ok_or_else(bad)?;
    Ok((cid.parse().map_err(|_| bad())?, port.parse().map_err(|_| bad())?))
}

pub fn usage() -> String {
    format!(
        "Usage: qga-warden [-m <method> -p <path>] [<options>]
qga-warden {version}: a QEMU guest agent with privilege separation

  -m, --method      transport method: one of unix-listen, virtio-serial,
                    isa-serial, or vsock-listen (virtio-serial is the default)
  -p, --path        device/socket path (the default for virtio-serial is:
                    {virtio},
                    the default for isa-serial is:
                    {serial}).
                    Socket addresses for vsock-listen are written as
                    <cid>:<port>.
  -l, --logfile     set logfile path, logs to stderr by default
  -f, --pidfile     specify pidfile (default is {pidfile}; written when
                    daemonizing or when given)
  -F, --fsfreeze-hook
                    enable fsfreeze hook. Accepts an optional argument that
                    specifies script to run on freeze/thaw (default is
                    {hook} if it exists, else
                    {qemu_hook}); do not follow -F with a space
  -t, --statedir    specify dir to store state information (absolute paths
                    only, default is {statedir})
  -v, --verbose     log extra debugging information
  -V, --version     print version information and exit
  -d, --daemonize   become a daemon
  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,
                    use \"help\" to list available RPCs)
  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,
                    use \"help\" to list available RPCs)
  -c, --config      read configuration from this file (default is
                    $QGA_CONF, else {config} if it exists)
  -D, --dump-conf   dump a qemu-ga config file based on current config
                    options / command-line parameters to stdout
  -r, --retry-path  attempt re-opening path if it's unavailable or closed
      --frontend    path of qga-warden-frontend (default: {frontend})
      --frontend-user
                    account the frontend runs as when started as root
                    (default {fe_user}, else nobody with a warning)
      --require-landlock
                    refuse to serve unless the frontend's Landlock ruleset
                    is fully enforced (default: best effort)
      --policy      policy file (default {policy} if it exists,
                    else the built-in policy: qga-warden policy show-default)
  -h, --help        display this help and exit

Operators' tools:
  qga-warden policy check FILE      validate a policy file
  qga-warden policy explain FILE REQUEST-JSON
                                    the decision and rule for one request
  qga-warden policy show-default    print the built-in policy
  qga-warden thaw [-t STATEDIR] [--all] [MOUNTPOINT...]
                                    thaw what an agent that died left
                                    frozen (its state file in STATEDIR),
                                    the mount points named, or with --all
                                    every mounted filesystem
",
        version = env!("CARGO_PKG_VERSION"),
        virtio = DEFAULT_VIRTIO_PATH,
        serial = DEFAULT_SERIAL_PATH,
        pidfile = DEFAULT_PIDFILE,
        hook = FSFREEZE_HOOK,
        qemu_hook = QEMU_GA_FSFREEZE_HOOK,
        frontend = crate::supervisor::default_frontend_text(),
        statedir = DEFAULT_STATEDIR,
        config = DEFAULT_CONFIG,
        fe_user = crate::sandbox::DEFAULT_FRONTEND_USER,
        policy = policy::DEFAULT_POLICY_PATH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Action, CliError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args, Some("/nonexistent/qga-warden-test.conf"))
    }

    fn settings(args: &[&str]) -> Settings {
        match run(args) {
            Ok(Action::Run(s)) => s,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn qemu_ga_spellings() {
        let s = settings(&["-m", "unix-listen", "-p", "/tmp/x.sock"]);
        assert_eq!((s.method, s.path.as_deref()), (Method::UnixListen, Some("/tmp/x.sock")));
        let s = settings(&["-munix-listen", "-p/tmp/y", "-vd"]);
        assert_eq!(s.path.as_deref(), Some("/tmp/y"));
        assert!(s.verbose && s.daemonize);
        let s = settings(&["--method=vsock-listen", "--path", "3:1234"]);
        assert_eq!(s.method, Method::VsockListen);
        let s = settings(&["-F"]);
        assert_eq!(s.fsfreeze_hook, Some(default_fsfreeze_hook(|p| p.exists())));
        let s = settings(&["-F/x/hook", "-b", "guest-exec,guest-file-open", "--blacklist=a"]);
        assert_eq!(s.fsfreeze_hook, Some(PathBuf::from("/x/hook")));
        assert_eq!(s.block_rpcs, ["guest-exec", "guest-file-open", "a"]);
        let s = settings(&[]);
        assert_eq!(s.channel_path(), Ok(DEFAULT_VIRTIO_PATH.to_string()));
    }

    #[test]
    fn the_default_hook_is_ours_when_installed() {
        assert_eq!(default_fsfreeze_hook(|_| true), Path::new("/etc/qga-warden/fsfreeze-hook"));
        assert_eq!(default_fsfreeze_hook(|_| false), Path::new("/etc/qemu/fsfreeze-hook"));
        // Only -F without a path takes the default; a path is kept as given.
        let s = settings(&["--fsfreeze-hook=/etc/qemu/fsfreeze-hook"]);
        assert_eq!(s.fsfreeze_hook, Some(PathBuf::from("/etc/qemu/fsfreeze-hook")));
        assert_eq!(settings(&[]).fsfreeze_hook, None, "no hook unless asked for");
    }

    #[test]
    fn bad_command_lines() {
        assert_eq!(run(&["--nope"]), Err(CliError::UnknownOption("--nope".into())));
        assert_eq!(run(&["-x"]), Err(CliError::UnknownOption("-x".into())));
        assert_eq!(run(&["-m"]), Err(CliError::MissingArgument("-m".into())));
        assert_eq!(run(&["-m", "tcp"]), Err(CliError::InvalidMethod("tcp".into())));
        assert_eq!(run(&["-m", "unix-listen"]), Err(CliError::PathRequired("unix-listen")));
        assert!(matches!(
            run(&["-m", "vsock-listen", "-p", "x"]),
            Err(CliError::InvalidVsockAddress(_))
        ));
        assert!(matches!(run(&["-t", "rel/dir"]), Err(CliError::RelativeStatedir(_))));
        assert_eq!(run(&["--verbose=yes"]), Err(CliError::NoArgumentAllowed("--verbose".into())));
        assert_eq!(run(&["stray"]), Err(CliError::UnexpectedArgument("stray".into())));
        assert!(matches!(run(&["-c", "/nonexistent/x.conf"]), Err(CliError::Config(_))));
    }

    #[test]
    fn actions() {
        assert_eq!(run(&["-h"]), Ok(Action::Help));
        assert_eq!(run(&["-V", "-h"]), Ok(Action::Version));
        assert_eq!(run(&["-b", "help"]), Ok(Action::ListRpcs));
        assert!(matches!(run(&["-D", "-m", "unix-listen", "-p", "/x"]), Ok(Action::DumpConf(_))));
    }
}
