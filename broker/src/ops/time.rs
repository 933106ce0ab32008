//! guest-get-time and guest-set-time.

use std::path::Path;
use std::time::Duration;

use ipc::{OpError, Response};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime, clock_settime};

use crate::spawn::{Finished, HelperError, clean_command, run_helper};

/// qemu-ga's hardware-clock program; without it guest-set-time is not supported.
pub const HWCLOCK: &str = "/sbin/hwclock";
/// The RTC's time, read to know the step of a set-from-RTC under a limit.
const RTC_SINCE_EPOCH: &str = "/sys/class/rtc/rtc0/since_epoch";
/// How long hwclock may take.
const HWCLOCK_LIMIT: Duration = Duration::from_secs(60);

const NANOS: i64 = 1_000_000_000;

fn now_ns() -> Result<i64, OpError> {
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(|e| OpError::CommandFailed {
        message: format!("failed to read the system clock: {}", e.desc()),
    })?;
    now.tv_sec()
        .checked_mul(NANOS)
        .and_then(|s| s.checked_add(now.tv_nsec()))
        .ok_or_else(|| OpError::CommandFailed { message: "system clock out of range".into() })
}

/// Nanoseconds since the epoch, from the system clock.
pub fn get_time() -> Result<Response, OpError> {
    now_ns().map(Response::Int)
}

/// The civil year of a time in seconds since the epoch (UTC).
fn year_of(secs: i64) -> i64 {
    // Days to civil date (Howard Hinnant's algorithm), year only.
    let days = secs.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// guest-set-time as qemu-ga does it: without `/sbin/hwclock` not
/// supported; with a time, the system clock is set to it (between 1970 and
/// 2070) and then the hardware clock from it (`hwclock -w`); without, the
/// system clock from the hardware clock (`hwclock -s`). `max_step` is the
/// policy's largest allowed step in seconds.
pub fn set_time(time: Option<i64>, max_step: Option<u64>) -> Result<Response, OpError> {
    if nix::unistd::access(Path::new(HWCLOCK), nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(OpError::Unsupported);
    }
    if let Some(max) = max_step {
        let target = match time {
            Some(t) => t,
            // The step of a set-from-RTC is what the RTC says now.
            None => rtc_ns().ok_or(OpError::TimeStepTooLarge { max_seconds: max })?,
        };
        let step = target.abs_diff(now_ns()?) / NANOS.unsigned_abs();
        if step > max {
            return Err(OpError::TimeStepTooLarge { max_seconds: max });
        }
    }
    if let Some(t) = time {
        let secs = t / NANOS;
        let year = year_of(secs);
        if !(1970..2070).contains(&year) {
            // qemu-ga appends the text of whatever errno held: 0, as nothing
            // had failed, so none.
            return Err(OpError::InvalidTime { errno: 0 });
        }
        let micros = (t % NANOS) / 1000;
        let ts = TimeSpec::new(secs, micros * 1000);
        clock_settime(ClockId::CLOCK_REALTIME, ts)
            .map_err(|e| OpError::SetTimeFailed { errno: e as i32 })?;
    }
    let mut cmd = clean_command(Path::new(HWCLOCK));
    cmd.arg(if time.is_some() { "-w" } else { "-s" });
    match run_helper(&mut cmd, None, HWCLOCK_LIMIT) {
        Ok(Finished::Exited(0)) => Ok(Response::Empty),
        // qemu-ga forks then execs: a failed exec is an exit status too.
        Ok(Finished::Exited(_)) | Err(HelperError::Spawn(_)) => Err(OpError::HwclockFailed),
        Ok(Finished::Signaled) => Err(OpError::ChildAbnormal),
        Err(HelperError::Input(e) | HelperError::Wait(e)) => {
            Err(OpError::ChildSpawn { errno: e.raw_os_error().unwrap_or(nix::libc::EIO) })
        }
    }
}

fn rtc_ns() -> Option<i64> {
    let secs: i64 = std::fs::read_to_string(RTC_SINCE_EPOCH).ok()?.trim().parse().ok()?;
    secs.checked_mul(NANOS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_as_the_calendar_has_them() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(-1), 1969);
        assert_eq!(year_of(951_782_400), 2000); // 2000-02-29
        assert_eq!(year_of(3_155_759_999), 2069); // 2069-12-31T23:59:59
        assert_eq!(year_of(3_155_760_000), 2070);
        assert_eq!(year_of(1_795_651_200), 2026);
    }
}
