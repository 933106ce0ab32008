//! guest-set-user-password: `chpasswd` (with `-e` for a crypted password)
//! is given `user:password\n` on a pipe, never on its command line; the
//! line is built in a buffer that is wiped when dropped, and chpasswd's
//! output (which could echo it) is discarded, as qemu-ga discards it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc::{OpError, Response, Secret};
use zeroize::Zeroizing;

use crate::accounts;
use crate::log::info;
use crate::spawn::{CHILD_PATH, Finished, HelperError, clean_command, run_helper};

const CHPASSWD_LIMIT: Duration = Duration::from_secs(60);

fn chpasswd() -> Option<PathBuf> {
    CHILD_PATH.split(':').map(|d| Path::new(d).join("chpasswd")).find(|p| p.is_file())
}

/// The checks qemu-ga makes, in its order, before anything is run: no
/// newline in the password (it would start another chpasswd line), no
/// newline or colon in the username (it would end the name early).
pub fn validate(username: &str, password: &[u8]) -> Result<(), OpError> {
    if password.contains(&b'\n') {
        return Err(OpError::PasswordForbidden);
    }
    if username.contains(['\n', ':']) {
        return Err(OpError::UsernameForbidden);
    }
    Ok(())
}

pub fn set_user_password(
    username: &str,
    password: &Secret,
    crypted: bool,
) -> Result<Response, OpError> {
    validate(username, password.expose())?;
    // An unknown account is named as such (qemu-ga lets chpasswd fail).
    match accounts::lookup(username) {
        Ok(Some(_)) => {}
        _ => return Err(OpError::NoSuchAccount(username.to_owned())),
    }
    let program = chpasswd().ok_or(OpError::NoChpasswd)?;
    let mut line = Zeroizing::new(Vec::with_capacity(username.len() + password.expose().len() + 2));
    line.extend_from_slice(username.as_bytes());
    line.push(b':');
    line.extend_from_slice(password.expose());
    line.push(b'\n');
    let mut cmd = clean_command(&program);
    if crypted {
        cmd.arg("-e");
    }
    info!("guest-set-user-password: setting the password of '{username}'");
    match run_helper(&mut cmd, Some(&line), CHPASSWD_LIMIT) {
        Ok(Finished::Exited(0)) => Ok(Response::Empty),
        Ok(Finished::Exited(_)) => Err(OpError::PasswordFailed),
        Ok(Finished::Signaled) => Err(OpError::ChildAbnormal),
        Err(HelperError::Input(e)) => {
            Err(OpError::PasswordWrite { errno: e.raw_os_error().unwrap_or(nix::libc::EIO) })
        }
        Err(HelperError::Spawn(e) | HelperError::Wait(e)) => {
            Err(OpError::ChildSpawn { errno: e.raw_os_error().unwrap_or(nix::libc::EIO) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_attempts_are_refused_in_qemu_gas_order() {
        assert_eq!(validate("alice", b"secret"), Ok(()));
        assert_eq!(validate("alice", b"x\nroot:y"), Err(OpError::PasswordForbidden));
        assert_eq!(validate("root:0", b"x"), Err(OpError::UsernameForbidden));
        assert_eq!(validate("a\nroot", b"x"), Err(OpError::UsernameForbidden));
        // The password is looked at first.
        assert_eq!(validate("a:b", b"x\n"), Err(OpError::PasswordForbidden));
        // A colon in a password is chpasswd's business (it splits at the first).
        assert_eq!(validate("alice", b"a:b"), Ok(()));
    }
}
