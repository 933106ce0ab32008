//! guest-get-time.

use ipc::{OpError, Response};
use nix::time::{ClockId, clock_gettime};

/// Nanoseconds since the epoch, from the system clock.
pub fn get_time() -> Result<Response, OpError> {
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(|e| OpError::CommandFailed {
        message: format!("failed to read the system clock: {}", e.desc()),
    })?;
    let ns = now
        .tv_sec()
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(now.tv_nsec()))
        .ok_or_else(|| OpError::CommandFailed { message: "system clock out of range".into() })?;
    Ok(Response::Int(ns))
}
