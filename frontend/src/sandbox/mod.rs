//! The frontend's confinement, entered before it reads a single byte from the
//! host: drop to an unprivileged account and clear every capability set, set
//! no_new_privs, restrict itself with Landlock (no filesystem at all, no TCP,
//! no abstract unix sockets, no signals outside itself where the kernel can
//! say so), then install a seccomp allowlist whose default is to kill the
//! process. The process is single-threaded, so each per-thread layer covers
//! it whole.
//!
//! Each layer is a public function so that the sandbox tests can apply them
//! one by one and show what each stops; [`enter`] applies them all, in order,
//! and is the only thing the frontend calls.

pub mod seccomp;

use std::fmt;

use caps::CapSet;
use ipc::{LandlockState, SandboxReport};
use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, Ruleset,
    RulesetAttr, RulesetStatus, Scope,
};
use nix::unistd::{Gid, Uid, getresuid, setgroups, setresgid, setresuid};

/// The highest Landlock ABI whose access rights this code handles.
const LANDLOCK_ABI: ABI = ABI::V6;

/// The account to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockPolicy {
    /// Use what the kernel offers and report what was enforced.
    BestEffort,
    /// Refuse to run unless every right this code handles is enforced.
    Required,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("running as root with no account to drop to")]
    RootWithoutIdentity,
    #[error("refusing to run as uid 0")]
    RootIdentity,
    #[error("cannot clear the {0} capability set: {1}")]
    Capabilities(&'static str, String),
    #[error("cannot change to uid {uid} gid {gid}")]
    SetId {
        uid: u32,
        gid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("capabilities remain after dropping them: {0}")]
    CapabilitiesRemain(String),
    #[error("cannot read /proc/self/status")]
    Status(#[source] std::io::Error),
    #[error("cannot set no_new_privs")]
    NoNewPrivs(#[source] nix::Error),
    #[error("Landlock")]
    Landlock(#[source] landlock::RulesetError),
    #[error("Landlock is required but {0}")]
    LandlockRequired(String),
    #[error("seccomp")]
    Seccomp(#[source] seccompiler::Error),
    #[error("unexpected descriptor {0} open at start-up ({1})")]
    StrayDescriptor(String, String),
}

impl fmt::Display for LandlockReportDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        match r.landlock {
            LandlockState::Full => write!(f, "Landlock ABI {} fully enforced", r.landlock_abi),
            LandlockState::Partial => write!(
                f,
                "Landlock ABI {} partially enforced (this code handles up to ABI {})",
                r.landlock_abi, LANDLOCK_ABI as i32
            ),
            LandlockState::Unavailable => f.write_str("Landlock unavailable"),
        }
    }
}

/// Formats the Landlock part of a report for the log.
pub struct LandlockReportDisplay<'a>(pub &'a SandboxReport);

/// Checks that only standard input, output and error are open: the broker
/// passes nothing else, and anything else would be an unmeant privilege.
pub fn check_descriptors() -> Result<(), SandboxError> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(SandboxError::Status)?;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "0" | "1" | "2") {
            continue;
        }
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        // The directory being listed is itself an open descriptor.
        if target.to_string_lossy().ends_with("/fd") {
            continue;
        }
        return Err(SandboxError::StrayDescriptor(name, target.display().to_string()));
    }
    Ok(())
}

/// Applies every layer, in order. Returns what was enforced.
pub fn enter(
    identity: Option<Identity>,
    landlock: LandlockPolicy,
) -> Result<SandboxReport, SandboxError> {
    let (uid, gid) = drop_privileges(identity)?;
    set_no_new_privs()?;
    let (landlock_abi, landlock) = restrict_landlock(landlock)?;
    seccomp::install(&seccomp::compile(seccomp::Conditions::Enforced)?)?;
    Ok(SandboxReport {
        uid,
        gid,
        capabilities_cleared: true,
        no_new_privs: true,
        landlock_abi,
        landlock,
        seccomp: true,
    })
}

fn caps_err(set: &'static str) -> impl Fn(caps::errors::CapsError) -> SandboxError {
    move |e| SandboxError::Capabilities(set, e.to_string())
}

/// Switches to `identity` (required when running as root) and clears every
/// capability set. Aborts the process if the switch could be undone.
/// Returns the uid and gid now in force.
pub fn drop_privileges(identity: Option<Identity>) -> Result<(u32, u32), SandboxError> {
    let root = Uid::effective().is_root() || Uid::current().is_root();
    match (root, identity) {
        (true, None) => return Err(SandboxError::RootWithoutIdentity),
        (_, Some(Identity { uid: 0, .. })) => return Err(SandboxError::RootIdentity),
        (true, Some(Identity { uid, gid })) => {
            // The bounding set can only be cleared while CAP_SETPCAP is held,
            // i.e. before leaving uid 0.
            caps::clear(None, CapSet::Bounding).map_err(caps_err("bounding"))?;
            caps::clear(None, CapSet::Ambient).map_err(caps_err("ambient"))?;
            caps::clear(None, CapSet::Inheritable).map_err(caps_err("inheritable"))?;
            let set_err = |source| SandboxError::SetId { uid, gid, source };
            setgroups(&[]).map_err(set_err)?;
            let g = Gid::from_raw(gid);
            setresgid(g, g, g).map_err(set_err)?;
            let u = Uid::from_raw(uid);
            setresuid(u, u, u).map_err(set_err)?;
            // Leaving uid 0 empties the permitted and effective sets; make sure.
            caps::clear(None, CapSet::Effective).map_err(caps_err("effective"))?;
            caps::clear(None, CapSet::Permitted).map_err(caps_err("permitted"))?;
            prove_irreversible();
        }
        (false, _) => {
            // Not root: keep the uid; clear whatever capabilities we have.
            caps::clear(None, CapSet::Ambient).map_err(caps_err("ambient"))?;
            caps::clear(None, CapSet::Inheritable).map_err(caps_err("inheritable"))?;
            caps::clear(None, CapSet::Effective).map_err(caps_err("effective"))?;
            caps::clear(None, CapSet::Permitted).map_err(caps_err("permitted"))?;
        }
    }
    verify_capabilities(root)?;
    let ids = getresuid().map_err(|source| SandboxError::SetId { uid: 0, gid: 0, source })?;
    Ok((ids.effective.as_raw(), Gid::effective().as_raw()))
}

/// After the switch, getting uid 0 back must fail; if it does not, nothing
/// else here can be trusted.
fn prove_irreversible() {
    let zero = Uid::from_raw(0);
    let back = setresuid(zero, zero, zero).is_ok()
        || nix::unistd::setuid(zero).is_ok()
        || nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).is_ok();
    if back {
        crate::log::line("error", format_args!("the uid drop could be undone; aborting"));
        std::process::abort();
    }
}

/// Reads the capability sets the kernel reports and requires them empty (the
/// bounding set too when we started as root).
fn verify_capabilities(with_bounding: bool) -> Result<(), SandboxError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(SandboxError::Status)?;
    let mut left = Vec::new();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let checked = matches!(key, "CapInh" | "CapPrm" | "CapEff" | "CapAmb")
            || (with_bounding && key == "CapBnd");
        if checked && u64::from_str_radix(value.trim(), 16) != Ok(0) {
            left.push(format!("{key}={}", value.trim()));
        }
    }
    if left.is_empty() { Ok(()) } else { Err(SandboxError::CapabilitiesRemain(left.join(" "))) }
}

pub fn set_no_new_privs() -> Result<(), SandboxError> {
    nix::sys::prctl::set_no_new_privs().map_err(SandboxError::NoNewPrivs)
}

/// Handles every filesystem right and allows none; where the kernel's ABI has
/// them, denies TCP bind and connect and scopes abstract unix sockets and
/// signals to the frontend itself. Returns the ABI and how much was enforced.
pub fn restrict_landlock(policy: LandlockPolicy) -> Result<(u8, LandlockState), SandboxError> {
    let level = match policy {
        LandlockPolicy::BestEffort => CompatLevel::BestEffort,
        LandlockPolicy::Required => CompatLevel::HardRequirement,
    };
    let status = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(LANDLOCK_ABI)))
        .and_then(|r| r.scope(Scope::from_all(LANDLOCK_ABI)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| match policy {
            LandlockPolicy::Required => SandboxError::LandlockRequired(e.to_string()),
            LandlockPolicy::BestEffort => SandboxError::Landlock(e),
        })?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as i32,
        _ => 0,
    };
    let state = match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockState::Full,
        RulesetStatus::PartiallyEnforced => LandlockState::Partial,
        RulesetStatus::NotEnforced => LandlockState::Unavailable,
    };
    if policy == LandlockPolicy::Required && state != LandlockState::Full {
        return Err(SandboxError::LandlockRequired(format!("the kernel offers ABI {abi}")));
    }
    Ok((u8::try_from(abi).unwrap_or(u8::MAX), state))
}
