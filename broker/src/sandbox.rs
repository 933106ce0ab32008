//! Confinement as the broker sees it: which account the frontend drops to,
//! which capabilities the broker keeps, and checking what the frontend
//! reports about itself.

use caps::{CapSet, Capability, CapsHashSet};
use ipc::{Command, LandlockState, SandboxReport};
use nix::unistd::Uid;

use crate::log::{info, warning};

/// The account the frontend runs as unless `--frontend-user` says otherwise.
pub const DEFAULT_FRONTEND_USER: &str = "qga-warden";
/// The fallback when that account does not exist.
pub const FALLBACK_FRONTEND_USER: &str = "nobody";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("frontend user '{0}' does not exist")]
    NoSuchUser(String),
    #[error(
        "neither '{DEFAULT_FRONTEND_USER}' nor '{FALLBACK_FRONTEND_USER}' exists to run the frontend as"
    )]
    NoFallbackUser,
    #[error("frontend user '{0}' is root")]
    RootUser(String),
    #[error("cannot look up user '{0}'")]
    Lookup(String, #[source] nix::Error),
    #[error("cannot restrict the broker's capabilities: {0}")]
    Capabilities(String),
}

fn lookup(name: &str) -> Result<Option<Identity>, SandboxError> {
    let account =
        crate::accounts::lookup(name).map_err(|e| SandboxError::Lookup(name.to_owned(), e))?;
    Ok(account.map(|a| Identity { name: a.name, uid: a.uid, gid: a.gid }))
}

/// The account the frontend drops to: `None` when the broker is not root
/// (the frontend then keeps the broker's uid).
pub fn frontend_identity(setting: Option<&str>) -> Result<Option<Identity>, SandboxError> {
    if !Uid::effective().is_root() {
        if let Some(name) = setting {
            warning!("not running as root: the frontend keeps this uid, not '{name}'");
        }
        return Ok(None);
    }
    let identity = match setting {
        Some(name) => lookup(name)?.ok_or_else(|| SandboxError::NoSuchUser(name.to_owned()))?,
        None => match lookup(DEFAULT_FRONTEND_USER)? {
            Some(id) => id,
            None => {
                let id = lookup(FALLBACK_FRONTEND_USER)?.ok_or(SandboxError::NoFallbackUser)?;
                warning!(
                    "account '{DEFAULT_FRONTEND_USER}' does not exist; the frontend runs as \
                     '{FALLBACK_FRONTEND_USER}' (create the account, or set --frontend-user)"
                );
                id
            }
        },
    };
    if identity.uid == 0 {
        return Err(SandboxError::RootUser(identity.name));
    }
    Ok(Some(identity))
}

/// Capabilities the broker needs for each operation (in its effective set, and
/// so in its bounding set for the programs it runs). Commands not listed need
/// none: they read /proc or /sys, or only answer.
pub fn capabilities_for(command: Command) -> &'static [Capability] {
    use Capability::*;
    match command {
        // Children run as the account the policy names; the broker can stop them.
        Command::Exec => &[CAP_SETUID, CAP_SETGID, CAP_KILL],
        // Files of any owner, as root can read and write them.
        Command::FileOpen => &[CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH],
        // FIFREEZE, FITHAW and FITRIM are CAP_SYS_ADMIN ioctls, on mount
        // points of any owner and mode.
        Command::FsfreezeFreeze
        | Command::FsfreezeFreezeList
        | Command::FsfreezeThaw
        | Command::Fstrim => &[CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH],
        // chpasswd rewrites /etc/shadow (root:shadow) and writes an audit record.
        Command::SetUserPassword => &[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_AUDIT_WRITE],
        // Keys are written by a child that takes the account's identity.
        Command::SshGetAuthorizedKeys
        | Command::SshAddAuthorizedKeys
        | Command::SshRemoveAuthorizedKeys => &[CAP_SETUID, CAP_SETGID],
        // NVMe SMART data: an admin command (NVME_IOCTL_ADMIN_CMD).
        Command::GetDisks => &[CAP_SYS_ADMIN],
        // The system clock and the hardware clock.
        Command::SetTime => &[CAP_SYS_TIME],
        // halt/poweroff/reboot and suspend.
        Command::Shutdown | Command::SuspendDisk | Command::SuspendRam | Command::SuspendHybrid => {
            &[CAP_SYS_BOOT]
        }
        _ => &[],
    }
}

/// What the broker keeps whatever is enabled: CAP_KILL to stop a frontend
/// that runs as another user.
const BROKER_BASE: &[Capability] = &[Capability::CAP_KILL];
/// What stays in the bounding set for the frontend, which starts as root and
/// needs these to clear its own bounding set and change its user.
const FRONTEND_START: &[Capability] =
    &[Capability::CAP_SETPCAP, Capability::CAP_SETUID, Capability::CAP_SETGID];

/// The broker's capability sets for the enabled commands: (effective and
/// permitted, bounding).
pub fn capability_sets(enabled: impl IntoIterator<Item = Command>) -> (CapsHashSet, CapsHashSet) {
    let mut keep: CapsHashSet = BROKER_BASE.iter().copied().collect();
    for command in enabled {
        keep.extend(capabilities_for(command).iter().copied());
    }
    let mut bounding = keep.clone();
    bounding.extend(FRONTEND_START.iter().copied());
    (keep, bounding)
}

fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string().to_lowercase()).collect();
    v.sort();
    if v.is_empty() { "none".into() } else { v.join(" ") }
}

/// Drops every capability the enabled commands do not need, from every set
/// including the bounding set. Does nothing when not running as root.
pub fn restrict_broker(enabled: impl IntoIterator<Item = Command>) -> Result<(), SandboxError> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let (wanted, bounding) = capability_sets(enabled);
    let err = |e: caps::errors::CapsError| SandboxError::Capabilities(e.to_string());
    // A capability the broker was started without (a service manager's
    // CapabilityBoundingSet=, a container's bounding set) cannot be raised:
    // keep the rest, and say which commands will fail.
    let held = caps::read(None, CapSet::Permitted).map_err(err)?;
    let (keep, missing) = split_held(&wanted, &held);
    if !missing.is_empty() {
        warning!(
            "started without {}: commands that need {} will fail",
            names(&missing),
            if missing.len() == 1 { "it" } else { "them" }
        );
    }
    // The bounding set first, while CAP_SETPCAP is still effective.
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    caps::clear(None, CapSet::Inheritable).map_err(err)?;
    caps::set(None, CapSet::Effective, &keep).map_err(err)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err)?;
    info!("capabilities kept: {}; bounding set: {}", names(&keep), names(&bounding));
    Ok(())
}

/// The capabilities of `wanted` that are `held`, and those that are not.
fn split_held(wanted: &CapsHashSet, held: &CapsHashSet) -> (CapsHashSet, CapsHashSet) {
    let keep = wanted.intersection(held).copied().collect();
    let missing = wanted.difference(held).copied().collect();
    (keep, missing)
}

/// Logs what the frontend reports about its confinement and refuses a report
/// that is short of what was asked.
pub fn check_report(
    report: &SandboxReport,
    pid: u32,
    expected: Option<&Identity>,
    landlock_required: bool,
) -> Result<(), &'static str> {
    let landlock = match report.landlock {
        LandlockState::Full => format!("Landlock ABI {} fully enforced", report.landlock_abi),
        LandlockState::Partial => {
            format!("Landlock ABI {} partially enforced", report.landlock_abi)
        }
        LandlockState::Unavailable => "no Landlock".into(),
    };
    info!(
        "frontend (pid {pid}) confined: uid {}, gid {}, capabilities {}, no_new_privs {}, {landlock}, seccomp {}",
        report.uid,
        report.gid,
        if report.capabilities_cleared { "cleared" } else { "kept" },
        if report.no_new_privs { "on" } else { "off" },
        if report.seccomp { "on" } else { "off" },
    );
    if !(report.capabilities_cleared && report.no_new_privs && report.seccomp) {
        return Err("the frontend is not confined");
    }
    if let Some(id) = expected {
        if report.uid != id.uid || report.gid != id.gid {
            return Err("the frontend runs as the wrong user");
        }
    }
    if landlock_required && report.landlock != LandlockState::Full {
        return Err("Landlock is required but not fully enforced");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets_follow_the_enabled_commands() {
        let (keep, bounding) = capability_sets([Command::Ping, Command::Info]);
        assert_eq!(keep, [Capability::CAP_KILL].into_iter().collect());
        assert!(bounding.contains(&Capability::CAP_SETUID));
        assert!(!bounding.contains(&Capability::CAP_SYS_TIME));
        let (keep, _) = capability_sets([Command::SetTime]);
        assert!(keep.contains(&Capability::CAP_SYS_TIME));
        assert!(!keep.contains(&Capability::CAP_SYS_ADMIN));
    }

    /// Under a unit or a container that withholds a capability (systemd-nspawn
    /// gives no CAP_SYS_TIME), the broker keeps what it holds and names
    /// what it lacks, instead of failing to start.
    #[test]
    fn capabilities_not_held_are_reported_not_raised() {
        use Capability::*;
        let (wanted, _) = capability_sets([Command::SetTime, Command::Ping]);
        let held: CapsHashSet = [CAP_KILL, CAP_SYS_ADMIN].into_iter().collect();
        let (keep, missing) = split_held(&wanted, &held);
        assert_eq!(keep, [CAP_KILL].into_iter().collect());
        assert_eq!(missing, [CAP_SYS_TIME].into_iter().collect());
    }

    #[test]
    fn security_md_lists_every_capability() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../SECURITY.md"))
            .expect("SECURITY.md");
        let table = doc.split("### The broker's capabilities").nth(1).expect("table");
        for &command in Command::ALL {
            for cap in capabilities_for(command) {
                let name = format!("`{}`", cap.to_string().to_uppercase());
                assert!(table.contains(&name), "SECURITY.md does not list {name} for {command}");
            }
            if !capabilities_for(command).is_empty() {
                assert!(table.contains(command.name().trim_start_matches("guest-")), "{command}");
            }
        }
    }

    #[test]
    fn short_reports_are_refused() {
        let good = SandboxReport {
            uid: 65534,
            gid: 65534,
            capabilities_cleared: true,
            no_new_privs: true,
            landlock_abi: 6,
            landlock: LandlockState::Full,
            seccomp: true,
        };
        let id = Identity { name: "nobody".into(), uid: 65534, gid: 65534 };
        assert_eq!(check_report(&good, 1, Some(&id), true), Ok(()));
        let partial = SandboxReport { landlock: LandlockState::Partial, ..good };
        assert!(check_report(&partial, 1, Some(&id), false).is_ok());
        assert!(check_report(&partial, 1, Some(&id), true).is_err());
        let no_seccomp = SandboxReport { seccomp: false, ..good };
        assert!(check_report(&no_seccomp, 1, None, false).is_err());
        let other = SandboxReport { uid: 1000, ..good };
        assert!(check_report(&other, 1, Some(&id), false).is_err());
    }
}
