//! guest-shutdown and guest-suspend-{disk,ram,hybrid}, by the means qemu-ga
//! uses: `/sbin/shutdown` for the first; for suspend, systemd if it offers
//! the mode, else pm-utils, else writing to /sys/power/state. Neither sends
//! a reply on success (qemu-ga's success-response is false).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc::{OpError, Response, ShutdownMode};

use crate::log::info;
use crate::spawn::{CHILD_PATH, Finished, HelperError, clean_command, run_helper};

const SHUTDOWN: &str = "/sbin/shutdown";
const SYS_POWER_STATE: &str = "/sys/power/state";
/// How long a helper may take (a suspend helper returns after the resume).
const HELPER_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendMode {
    Disk,
    Ram,
    Hybrid,
}

impl SuspendMode {
    fn systemd_unit(self) -> &'static str {
        match self {
            SuspendMode::Disk => "systemd-hibernate",
            SuspendMode::Ram => "systemd-suspend",
            SuspendMode::Hybrid => "systemd-hybrid-sleep",
        }
    }

    fn systemctl_verb(self) -> &'static str {
        match self {
            SuspendMode::Disk => "hibernate",
            SuspendMode::Ram => "suspend",
            SuspendMode::Hybrid => "hybrid-sleep",
        }
    }

    fn pm_is_supported_flag(self) -> &'static str {
        match self {
            SuspendMode::Disk => "--hibernate",
            SuspendMode::Ram => "--suspend",
            SuspendMode::Hybrid => "--suspend-hybrid",
        }
    }

    fn pm_program(self) -> &'static str {
        match self {
            SuspendMode::Disk => "pm-hibernate",
            SuspendMode::Ram => "pm-suspend",
            SuspendMode::Hybrid => "pm-suspend-hybrid",
        }
    }

    /// What /sys/power/state takes for it (hybrid: nothing).
    fn sysfs_word(self) -> Option<&'static str> {
        match self {
            SuspendMode::Disk => Some("disk"),
            SuspendMode::Ram => Some("mem"),
            SuspendMode::Hybrid => None,
        }
    }
}

/// guest-shutdown: `/sbin/shutdown -h -P|-H|-r +0 "hypervisor initiated
/// shutdown"`, as qemu-ga runs it.
pub fn shutdown(mode: ShutdownMode) -> Result<Response, OpError> {
    let flag = match mode {
        ShutdownMode::Powerdown => "-P",
        ShutdownMode::Halt => "-H",
        ShutdownMode::Reboot => "-r",
    };
    info!("guest-shutdown called, mode: {}", mode.name());
    let mut cmd = clean_command(Path::new(SHUTDOWN));
    cmd.args(["-h", flag, "+0", "hypervisor initiated shutdown"]);
    match run_helper(&mut cmd, None, HELPER_LIMIT) {
        Ok(Finished::Exited(0)) => Ok(Response::NoReply),
        // qemu-ga forks then execs: a missing program is an exit status too.
        Ok(Finished::Exited(_)) | Err(HelperError::Spawn(_)) => Err(OpError::ShutdownFailed),
        Ok(Finished::Signaled) => Err(OpError::ChildAbnormal),
        Err(HelperError::Input(e) | HelperError::Wait(e)) => {
            Err(OpError::ChildSpawn { errno: e.raw_os_error().unwrap_or(nix::libc::EIO) })
        }
    }
}

/// A program found in the children's PATH, as g_spawn's PATH search finds it.
fn find_program(name: &str) -> Option<PathBuf> {
    CHILD_PATH.split(':').map(|d| Path::new(d).join(name)).find(|p| {
        nix::unistd::access(p.as_path(), nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
    })
}

/// Runs a helper found in PATH: None when there is no such program (then
/// qemu-ga moves on to the next mechanism), else its exit status (-1 for a
/// signal).
fn run_found(name: &str, args: &[&str]) -> Result<Option<i32>, OpError> {
    let Some(path) = find_program(name) else {
        return Ok(None);
    };
    let mut cmd = clean_command(&path);
    cmd.args(args);
    match run_helper(&mut cmd, None, HELPER_LIMIT) {
        Ok(Finished::Exited(code)) => Ok(Some(code)),
        Ok(Finished::Signaled) => Ok(Some(-1)),
        Err(HelperError::Spawn(e) | HelperError::Input(e) | HelperError::Wait(e)) => {
            Err(OpError::SuspendFailed {
                message: format!("failed to create child process, error '{e}'"),
            })
        }
    }
}

fn systemd_supports(mode: SuspendMode) -> bool {
    // LSB status codes: 1..=3 is a unit that exists; 4 is an unknown unit.
    matches!(run_found("systemctl", &["status", mode.systemd_unit()]), Ok(Some(1..=3)))
}

fn systemd_suspend(mode: SuspendMode) -> Result<(), OpError> {
    let verb = mode.systemctl_verb();
    match run_found("systemctl", &[verb])? {
        Some(0) => Ok(()),
        None => Err(OpError::SuspendFailed {
            message: format!("the helper program 'systemctl {verb}' was not found"),
        }),
        Some(code) => Err(OpError::SuspendFailed {
            message: format!(
                "the helper program 'systemctl {verb}' returned an unexpected exit status code ({code})"
            ),
        }),
    }
}

fn pmutils_supports(mode: SuspendMode) -> bool {
    matches!(run_found("pm-is-supported", &[mode.pm_is_supported_flag()]), Ok(Some(0)))
}

fn pmutils_suspend(mode: SuspendMode) -> Result<(), OpError> {
    let program = mode.pm_program();
    match run_found(program, &[])? {
        Some(0) => Ok(()),
        None => Err(OpError::SuspendFailed {
            message: format!("the helper program '{program}' was not found"),
        }),
        Some(code) => Err(OpError::SuspendFailed {
            message: format!(
                "the helper program '{program}' returned an unexpected exit status code ({code})"
            ),
        }),
    }
}

fn sysfs_supports(mode: SuspendMode, state_file: &Path) -> bool {
    match (mode.sysfs_word(), std::fs::read_to_string(state_file)) {
        (Some(word), Ok(states)) => states.split_whitespace().any(|s| s == word),
        _ => false,
    }
}

fn sysfs_suspend(mode: SuspendMode, state_file: &Path) -> Result<(), OpError> {
    let failed =
        || OpError::SuspendFailed { message: "child process has failed to suspend".into() };
    let word = mode.sysfs_word().ok_or_else(failed)?;
    // Returns after the resume.
    std::fs::write(state_file, word).map_err(|_| failed())
}

/// guest-suspend-*: systemd, then pm-utils, then /sys/power/state, each
/// tried if it offers the mode, until one succeeds; the last failure is
/// the error, and "not supported" when none offers the mode. (This is
/// upstream qemu-ga's fixed order; Debian's 7.2 returns without suspending
/// when systemd is absent.)
pub fn suspend(mode: SuspendMode) -> Result<Response, OpError> {
    info!("guest-suspend called, mode: {}", mode.systemctl_verb());
    let state_file = Path::new(SYS_POWER_STATE);
    let mut last = None;
    if systemd_supports(mode) {
        match systemd_suspend(mode) {
            Ok(()) => return Ok(Response::NoReply),
            Err(e) => last = Some(e),
        }
    }
    if pmutils_supports(mode) {
        match pmutils_suspend(mode) {
            Ok(()) => return Ok(Response::NoReply),
            Err(e) => last = Some(e),
        }
    }
    if sysfs_supports(mode, state_file) {
        match sysfs_suspend(mode, state_file) {
            Ok(()) => return Ok(Response::NoReply),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(OpError::SuspendUnsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_modes_as_the_kernel_lists_them() {
        let dir = std::env::temp_dir().join(format!("qga-warden-power-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let state = dir.join("state");
        std::fs::write(&state, "freeze mem disk\n").expect("write");
        assert!(sysfs_supports(SuspendMode::Ram, &state));
        assert!(sysfs_supports(SuspendMode::Disk, &state));
        assert!(!sysfs_supports(SuspendMode::Hybrid, &state));
        std::fs::write(&state, "freeze\n").expect("write");
        assert!(!sysfs_supports(SuspendMode::Ram, &state));
        // Writing goes to the file given (a test file here, never /sys).
        std::fs::write(&state, "freeze mem\n").expect("write");
        sysfs_suspend(SuspendMode::Ram, &state).expect("write mem");
        assert_eq!(std::fs::read_to_string(&state).expect("read"), "mem");
        assert!(sysfs_suspend(SuspendMode::Hybrid, &state).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
