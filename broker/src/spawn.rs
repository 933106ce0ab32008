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
