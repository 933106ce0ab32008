//! qga-warden: the privileged half of qga-warden, and the program operators
//! start. It opens the channel to the host, starts the unprivileged frontend
//! (`qga-warden-frontend`) that parses everything the host sends, and runs
//! the typed requests the frontend passes on after checking them against the
//! policy.

mod channel;
mod cli;
mod config;
mod daemon;
mod log;
mod ops;
mod sandbox;
mod server;
mod spawn;
mod supervisor;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::time::Duration;

use ipc::Command;
use policy::Policy;

use crate::cli::{Action, Settings};
use crate::log::{error, info, warning};

/// How long to wait before trying a missing channel again with `-r`.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env_config = std::env::var("QGA_CONF").ok();
    let action = match cli::parse(&args, env_config.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("qga-warden: {e}");
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
        Action::Run(s) => return run(s),
    }
    ExitCode::SUCCESS
}

/// qemu-ga's `-b`/`-a` lists as a policy: they only ever narrow it. Names the
/// agent does not know are reported and skipped (a configuration written for
/// a newer qemu-ga must still start).
fn policy_from(s: &Settings) -> Policy {
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
    let mut policy = Policy::allow_all();
    policy.block(known(&s.block_rpcs, "block-rpcs"));
    if let Some(allow) = &s.allow_rpcs {
        policy.restrict_to(known(allow, "allow-rpcs"));
    }
    policy
}

fn run(mut s: Settings) -> ExitCode {
    mark_inherited_descriptors_cloexec();
    log::set_verbose(s.verbose);

    let frontend = match supervisor::locate(s.frontend.as_deref()) {
        Ok(p) if p.is_file() => p,
        Ok(p) => {
            error!("frontend program {} not found", p.display());
            return ExitCode::from(1);
        }
        Err(e) => {
            error!("cannot locate the frontend program: {e}");
            return ExitCode::from(1);
        }
    };
    let policy = policy_from(&s);
    let identity = match sandbox::frontend_identity(s.frontend_user.as_deref()) {
        Ok(id) => id,
        Err(e) => {
            error!("{}", error_chain(&e));
            return ExitCode::from(1);
        }
    };

    let source = match channel::from_activation() {
        Ok(Some((method, source))) => {
            s.method = method;
            source
        }
        Ok(None) => loop {
            match channel::open_source(&s) {
                Ok(source) => break source,
                Err(e) if s.retry_path => {
                    warning!("{}; waiting for channel path...", error_chain(&e));
                    std::thread::sleep(RETRY_INTERVAL);
                }
                Err(e) => {
                    error!("{}", error_chain(&e));
                    return ExitCode::from(1);
                }
            }
        },
        Err(e) => {
            error!("{}", error_chain(&e));
            return ExitCode::from(1);
        }
    };

    if s.daemonize {
        if let Err(e) = daemon::daemonize() {
            error!("{}", error_chain(&e));
            return ExitCode::from(1);
        }
    }
    if let Some(path) = &s.logfile {
        match OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
        {
            Ok(f) => log::set_file(f),
            Err(e) => {
                error!("cannot open log file {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    let _pidfile = if s.daemonize || s.pidfile_given {
        match daemon::PidFile::create(&s.pidfile) {
            Ok(p) => Some(p),
            Err(e) => {
                error!("{}", error_chain(&e));
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    // Everything privileged the broker needs at start-up is done: keep only
    // the capabilities of the operations that can be asked for.
    let enabled = Command::ALL
        .iter()
        .copied()
        .filter(|&c| ops::implemented(c) && policy.command_enabled(c));
    if let Err(e) = sandbox::restrict_broker(enabled) {
        error!("{}", error_chain(&e));
        return ExitCode::from(1);
    }
    let signals = match server::signal_fd() {
        Ok(sfd) => sfd,
        Err(e) => {
            error!("{}", error_chain(&e));
            return ExitCode::from(1);
        }
    };

    info!(
        "qga-warden {} started ({} {})",
        ops::VERSION,
        s.method.name(),
        s.channel_path()
            .unwrap_or_else(|_| "(socket activation)".into())
    );
    let confinement = supervisor::Confinement {
        identity,
        require_landlock: s.require_landlock,
    };
    let mut broker = server::Broker::new(
        frontend,
        confinement,
        s.verbose,
        ops::Ops::new(policy),
        source,
        signals,
    );
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", error_chain(&e));
            ExitCode::from(1)
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
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
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
