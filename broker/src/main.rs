//! qga-warden: the privileged half of qga-warden, and the program operators
//! start. It opens the channel to the host, starts the unprivileged frontend
//! (`qga-warden-frontend`) that parses everything the host sends, and runs
//! the typed requests the frontend passes on after checking them against the
//! policy.

mod accounts;
mod audit;
mod channel;
mod cli;
mod config;
mod daemon;
mod log;
mod ops;
mod policy_tool;
mod sandbox;
mod server;
mod spawn;
mod supervisor;

use std::process::ExitCode;
use std::time::Duration;

use ipc::Command;
use policy::Policy;

use crate::cli::{Action, Settings};
use crate::log::{error, info, warning};

/// How long to wait before trying a missing channel again with `-r`.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    log::detect_journal();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env_config = std::env::var("QGA_CONF").ok();
    let action = match cli::parse(&args, env_config.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}qga-warden: {e}", log::stderr_prefix(log::Level::Error.priority()));
            eprintln!("Try 'qga-warden --help' for more information.");
            return ExitCode::from(1);
        }
    };
    match action {
        Action::Help => print!("{}", cli::usage()),
        Action::Version => println!("qga-warden {}", ops::VERSION),
        Action::ListRpcs => {
            for c in Command::ALL {
                println!("{c}");
            }
        }
        Action::DumpConf(s) => print!("{}", config::dump(&s)),
        Action::PolicyCheck(file) => return policy_tool::check(&file),
        Action::PolicyExplain(file, request, frontend) => {
            return policy_tool::explain(&file, &request, frontend.as_deref());
        }
        Action::PolicyShowDefault => print!("{}", policy::DEFAULT_POLICY),
        Action::Thaw { statedir, all, mountpoints } => {
            return ops::fsfreeze::thaw_tool(&statedir, all, &mountpoints);
        }
        Action::Run(s) => return run(s),
    }
    ExitCode::SUCCESS
}

/// The policy file (or the built-in one), narrowed by qemu-ga's `-b`/`-a`
/// lists, which can only ever narrow it. Names in those lists the agent does
/// not know are reported and skipped (a configuration written for a newer
/// qemu-ga must still start).
fn policy_from(s: &Settings) -> Result<Policy, policy::PolicyError> {
    let known = |names: &[String], what: &str| -> Vec<Command> {
        names
            .iter()
            .filter_map(|n| {
                let c = Command::from_name(n);
                if c.is_none() {
                    warning!("{what}: unknown command '{n}' ignored");
                }
                c
            })
            .collect()
    };
    let mut policy = Policy::load_for_broker(s.policy.as_deref())?;
    policy.block(known(&s.block_rpcs, "block-rpcs"));
    if let Some(allow) = &s.allow_rpcs {
        policy.restrict_to(known(allow, "allow-rpcs"));
    }
    Ok(policy)
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("frontend program {} not found", .0.display())]
    NoFrontend(std::path::PathBuf),
    #[error("cannot locate the frontend program")]
    LocateFrontend(#[source] std::io::Error),
    #[error("cannot open log file {}", .0.display())]
    LogFile(std::path::PathBuf, #[source] std::io::Error),
}

fn run(s: Settings) -> ExitCode {
    match serve(s) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", error_chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

fn serve(mut s: Settings) -> Result<(), Box<dyn std::error::Error>> {
    mark_inherited_descriptors_cloexec();
    log::set_verbose(s.verbose);

    let frontend = supervisor::locate(s.frontend.as_deref()).map_err(StartError::LocateFrontend)?;
    if !frontend.is_file() {
        return Err(StartError::NoFrontend(frontend).into());
    }
    let policy = policy_from(&s)?;
    let identity = sandbox::frontend_identity(s.frontend_user.as_deref())?;
    let mut audit = audit::Audit::open(&policy.audit)?;

    let source = match channel::from_activation()? {
        Some((method, source)) => {
            s.method = method;
            source
        }
        None => loop {
            match channel::open_source(&s) {
                Ok(source) => break source,
                Err(e) if s.retry_path => {
                    warning!("{}; waiting for channel path...", error_chain(&e));
                    std::thread::sleep(RETRY_INTERVAL);
                }
                Err(e) => return Err(e.into()),
            }
        },
    };

    if s.daemonize {
        daemon::daemonize()?;
        log::detect_journal();
    }
    if let Some(path) = &s.logfile {
        let f = log::open_file(path).map_err(|e| StartError::LogFile(path.clone(), e))?;
        log::set_file(path, f);
    }
    let _pidfile = match s.daemonize || s.pidfile_given {
        true => Some(daemon::PidFile::create(&s.pidfile)?),
        false => None,
    };
    // Everything privileged the broker needs at start-up is done: keep only
    // the capabilities of the operations that can be asked for.
    let enabled =
        Command::ALL.iter().copied().filter(|&c| ops::implemented(c) && policy.command_enabled(c));
    sandbox::restrict_broker(enabled)?;
    let signals = server::signal_fd()?;

    let channel = s.channel_path().unwrap_or_else(|_| "(socket activation)".into());
    info!("qga-warden {} started ({} {channel})", ops::VERSION, s.method.name());
    match &policy.source {
        Some(src) => info!("policy {} (sha256 {})", src.path.display(), src.sha256),
        None => info!("built-in policy (qga-warden policy show-default)"),
    }
    audit.record(policy::audit::Event::Start {
        version: ops::VERSION.into(),
        pid: std::process::id(),
        channel: format!("{} {channel}", s.method.name()),
    });
    audit.record(policy::audit::Event::Policy {
        path: policy.source.as_ref().map(|src| src.path.display().to_string()),
        sha256: policy.source.as_ref().map(|src| src.sha256.clone()),
        disabled: policy.disabled_commands().iter().map(|c| c.name().to_owned()).collect(),
    });
    let confinement = supervisor::Confinement { identity, require_landlock: s.require_landlock };
    let mut ops = ops::Ops::new(policy, &s.statedir, s.fsfreeze_hook.clone());
    let frozen = ops.freezer.recover();
    if !frozen.is_empty() {
        audit.record(policy::audit::Event::FrozenAtStart { mountpoints: frozen });
        audit.hold(true);
    }
    let mut broker =
        server::Broker::new(frontend, confinement, s.verbose, ops, audit, source, signals);
    release_startup_pages();
    broker.run()?;
    Ok(())
}

/// Start-up (reading and compiling the policy, checking the frontend) runs
/// code the event loop never runs again, and the kernel maps code around
/// every page touched (fault-around: 64 KiB at a time); all of it would stay
/// resident for the agent's whole life. Once, before serving, the broker
/// drops its code pages (its own and its libraries') and asks for no
/// read-around on them, so the kernel maps back only the pages the loop
/// touches (from the page cache, on first touch): an idle agent's resident
/// memory is what it needs to serve.
fn release_startup_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else { continue };
        // Code mapped from a file only: read-only data includes pages the
        // loader wrote (relocations, then write-protected), which must stay.
        let file = f.nth(3).unwrap_or("");
        if perms != "r-xp" || !file.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        #[allow(unsafe_code)]
        // SAFETY: [a, b) is a private, read-and-execute mapping of a file
        // (our code or a library's), read from /proc/self/maps in this thread
        // (the broker is single-threaded, so nothing maps or unmaps
        // meanwhile). Code pages are never written (no text relocations on
        // x86-64 PIE and shared objects), so MADV_DONTNEED only drops
        // page-table entries for exact copies of the file, read back from it
        // on the next access; MADV_RANDOM only changes read-ahead.
        unsafe {
            let addr = a as *mut nix::libc::c_void;
            nix::libc::madvise(addr, b - a, nix::libc::MADV_DONTNEED);
            nix::libc::madvise(addr, b - a, nix::libc::MADV_RANDOM);
        }
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Descriptors inherited from whoever started us (beyond standard input,
/// output and error) must not reach the frontend or any child.
fn mark_inherited_descriptors_cloexec() {
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    #[allow(unsafe_code)]
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on the
    // descriptors in the range; it touches no memory.
    let r = unsafe {
        nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC)
    };
    if r == 0 {
        return;
    }
    // Kernels before 5.11: walk the descriptor table.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        #[allow(unsafe_code)]
        // SAFETY: F_SETFD takes an integer argument and no memory; a number
        // that is not (or no longer) open just fails with EBADF.
        unsafe {
            nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC)
        };
    }
}
