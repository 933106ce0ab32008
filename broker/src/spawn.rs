//! Starting programs: never through a shell, with an explicit argv, an empty
//! environment (plus a fixed PATH), `/` as working directory, standard
//! input on /dev/null unless the caller says otherwise, and default signal
//! handling. Every descriptor the broker holds is close-on-exec, so a child
//! gets its standard streams and nothing else.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The PATH programs the broker starts see.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", CHILD_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    reset_signals(&mut cmd);
    cmd
}

/// Makes the child start with an empty signal mask and no ignored signals.
/// Both survive exec: without this a child would inherit the signals the
/// broker blocks to read them from its signalfd (SIGTERM, SIGCHLD, ...), and
/// whatever its own parent told it to ignore, and `kill -TERM` would not
/// end it.
fn reset_signals(cmd: &mut Command) {
    use nix::libc;
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called: it calls sigemptyset,
    // sigprocmask and the rt_sigaction system call on stack values (the
    // zeroed array is at least the kernel's 32-byte struct sigaction, and 8
    // is its sigset size on every Linux architecture we build for), and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The kernel's struct sigaction, all zero: SIG_DFL, no flags, no
            // mask. The raw system call reaches the signals the C library
            // keeps for itself (32 and 33), which can arrive ignored too.
            let default = [0u64; 4];
            for signal in 1..=64 {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    // Fails only for signals that cannot be changed.
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        signal,
                        default.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8usize,
                    );
                }
            }
            Ok(())
        });
    }
}

/// How a helper program run to completion ended.
#[derive(Debug)]
pub enum Finished {
    Exited(i32),
    /// Killed by a signal (or by us at the time limit).
    Signaled,
}

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start it")]
    Spawn(#[source] std::io::Error),
    #[error("cannot give it its input")]
    Input(#[source] std::io::Error),
    #[error("cannot wait for it")]
    Wait(#[source] std::io::Error),
}

/// Runs `cmd` (from [`clean_command`]) to completion, as qemu-ga runs its
/// helpers (shutdown, hwclock, chpasswd): `input` written to its standard
/// input, which is then closed; its output discarded; killed, with its
/// process group, after `limit`. The broker waits, as qemu-ga does.
pub fn run_helper(
    cmd: &mut Command,
    input: Option<&[u8]>,
    limit: std::time::Duration,
) -> Result<Finished, HelperError> {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Instant;

    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().map_err(HelperError::Spawn)?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let kill = || {
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    };
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small (a password line): the pipe takes it whole.
        if let Err(e) = stdin.write_all(data) {
            kill();
            let _ = child.wait();
            return Err(HelperError::Input(e));
        }
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill();
                break child.wait().map_err(HelperError::Wait)?;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => return Err(HelperError::Wait(e)),
        }
    };
    Ok(match status.code() {
        Some(code) if status.signal().is_none() => Finished::Exited(code),
        _ => Finished::Signaled,
    })
}
