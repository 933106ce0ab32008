//! guest-fsfreeze-* and guest-fstrim.
//!
//! Which filesystems: the mounts of `mounts::read` (block devices only) that
//! the policy's `[fsfreeze]`/`[fstrim]` mount points allow. Freezing goes in
//! reverse mount-table order (a filesystem before the one it is mounted
//! on), one FIFREEZE per device, as qemu-ga does; thawing goes in the
//! opposite order, over what this broker froze. Any failure part-way thaws
//! what was frozen before the error is returned.
//!
//! What is frozen is written to the state directory before the first
//! FIFREEZE, so that a broker that dies frozen is noticed by the next one
//! (which starts frozen, as qemu-ga does) and by `qga-warden thaw`. The log
//! is held in memory from the first FIFREEZE to the last FITHAW; the audit
//! trail is held by the server for the same span.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ipc::{FreezeStatus, OpError, TrimResult, errno_text};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use policy::{FreezePolicy, MountPolicy};

use super::mounts::{self, Mount};
use crate::log::{self, debug, info, warning};

// FIFREEZE, FITHAW and FITRIM (linux/fs.h): _IOWR('X', 119/120/121, ...).
nix::ioctl_readwrite!(fifreeze, b'X', 119, nix::libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, nix::libc::c_int);
nix::ioctl_readwrite!(fitrim, b'X', 121, FstrimRange);

/// `struct fstrim_range` (linux/fs.h).
#[repr(C)]
#[derive(Debug, Default)]
pub struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

/// The state file, in the state directory (qemu-ga's is `qga.state.isfrozen`).
pub const STATE_FILE: &str = "qga-warden.frozen";
/// The hook's output kept for the log, per stream.
const HOOK_OUTPUT_MAX: usize = 64 * 1024;
/// How long the hook may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens a mount point for an fsfreeze ioctl, as qemu-ga does.
fn open_dir(dir: &str) -> Result<OwnedFd, Errno> {
    open(Path::new(dir), OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY, Mode::empty())
}

fn freeze_fd(fd: &OwnedFd) -> Result<(), Errno> {
    let mut unused: nix::libc::c_int = 0;
    #[allow(unsafe_code)]
    // SAFETY: FIFREEZE takes no argument (the kernel ignores the pointer,
    // which points at a live local anyway); `fd` is an open descriptor.
    unsafe { fifreeze(fd.as_raw_fd(), &mut unused) }.map(drop)
}

fn thaw_fd(fd: &OwnedFd) -> Result<(), Errno> {
    let mut unused: nix::libc::c_int = 0;
    #[allow(unsafe_code)]
    // SAFETY: as for FIFREEZE: no argument is read or written.
    unsafe { fithaw(fd.as_raw_fd(), &mut unused) }.map(drop)
}

/// FITHAW until it fails, as qemu-ga does (each FIFREEZE needs its own
/// FITHAW); true if the first one succeeded, i.e. the filesystem was frozen.
pub fn thaw_dir(dir: &str) -> bool {
    let Ok(fd) = open_dir(dir) else {
        return false;
    };
    let mut thawed = false;
    while thaw_fd(&fd).is_ok() {
        thawed = true;
    }
    thawed
}

pub struct Freezer {
    /// The mount points this broker froze, in the order it froze them.
    frozen: Vec<String>,
    since: Option<Instant>,
    state_file: PathBuf,
    hook: Option<PathBuf>,
    max_frozen: Option<Duration>,
}

impl Freezer {
    pub fn new(statedir: &Path, hook: Option<PathBuf>, policy: &FreezePolicy) -> Freezer {
        let max_frozen =
            (policy.max_frozen_seconds > 0).then(|| Duration::from_secs(policy.max_frozen_seconds));
        Freezer {
            frozen: Vec::new(),
            since: None,
            state_file: statedir.join(STATE_FILE),
            hook,
            max_frozen,
        }
    }

    /// Takes over what a previous broker left frozen, from its state file.
    /// Returns those mount points (empty when there were none).
    pub fn recover(&mut self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(&self.state_file) else {
            return Vec::new();
        };
        let dirs: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
        if dirs.is_empty() {
            let _ = std::fs::remove_file(&self.state_file);
            return dirs;
        }
        warning!(
            "a previous instance exited with filesystems frozen ({}); starting frozen until guest-fsfreeze-thaw{}",
            dirs.join(", "),
            match self.max_frozen {
                Some(d) => format!(" or {} s from now", d.as_secs()),
                None => String::new(),
            }
        );
        self.frozen = dirs.clone();
        self.since = Some(Instant::now());
        log::hold(true);
        dirs
    }

    pub fn is_frozen(&self) -> bool {
        !self.frozen.is_empty()
    }

    pub fn status(&self) -> FreezeStatus {
        if self.is_frozen() { FreezeStatus::Frozen } else { FreezeStatus::Thawed }
    }

    /// The mount points currently frozen, in freeze order.
    pub fn frozen(&self) -> &[String] {
        &self.frozen
    }

    /// When the watchdog is due, while frozen.
    pub fn deadline(&self) -> Option<Instant> {
        Some(self.since? + self.max_frozen?)
    }

    /// guest-fsfreeze-freeze (`list` None) and -freeze-list.
    pub fn freeze(
        &mut self,
        list: Option<&[String]>,
        allowed: &MountPolicy,
    ) -> Result<i64, OpError> {
        let table = mounts::read().map_err(|e| OpError::MountTable { errno: io_errno(&e) })?;
        let plan = plan(&table, list, allowed)?;
        self.run_hook("freeze")?;
        self.write_state(&plan);
        // From here until the last thaw nothing may be written to disk.
        log::hold(true);
        self.since = Some(Instant::now());
        for mount in &plan {
            let result = open_dir(&mount.dir)
                .map_err(|e| OpError::MountOpen { path: mount.dir.clone(), errno: e as i32 })
                .and_then(|fd| match freeze_fd(&fd) {
                    Ok(()) => Ok(true),
                    // Not freezable (qemu-ga skips these), or already frozen
                    // by someone else: not counted, and not ours to thaw.
                    Err(Errno::EOPNOTSUPP | Errno::EBUSY) if list.is_none() => Ok(false),
                    Err(Errno::EOPNOTSUPP) => {
                        Err(OpError::NotFreezable { path: mount.dir.clone() })
                    }
                    Err(e) => Err(OpError::Freeze { path: mount.dir.clone(), errno: e as i32 }),
                });
            match result {
                Ok(true) => self.frozen.push(mount.dir.clone()),
                Ok(false) => {}
                Err(e) => {
                    // Nothing stays frozen after a failed freeze.
                    let _ = self.thaw();
                    return Err(e);
                }
            }
        }
        let count = self.frozen.len() as i64;
        if count == 0 {
            self.since = None;
            log::hold(false);
            self.remove_state();
        } else {
            info!("froze {count} filesystems: {}", self.frozen.join(", "));
        }
        Ok(count)
    }

    /// guest-fsfreeze-thaw: thaws what this broker froze, in reverse order,
    /// then runs the hook. Returns how many were thawed (a filesystem that
    /// someone else thawed meanwhile is not counted).
    pub fn thaw(&mut self) -> Result<i64, OpError> {
        let (thawed, hook) = self.thaw_all();
        hook.map(|()| thawed)
    }

    /// Thaws, and says how many were thawed and how the hook went.
    pub fn thaw_all(&mut self) -> (i64, Result<(), OpError>) {
        let mut thawed = 0;
        for dir in self.frozen.iter().rev() {
            if thaw_dir(dir) {
                thawed += 1;
            } else {
                warning!("{dir} was not frozen any more at thaw");
            }
        }
        let was = std::mem::take(&mut self.frozen);
        self.since = None;
        log::hold(false);
        if !was.is_empty() {
            info!("thawed {thawed} filesystems: {}", was.join(", "));
        }
        self.remove_state();
        (thawed, self.run_hook("thaw"))
    }

    fn write_state(&self, plan: &[&Mount]) {
        let text: String = plan.iter().map(|m| format!("{}\n", m.dir)).collect();
        let tmp = self.state_file.with_extension("frozen.tmp");
        if let Err(e) =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.state_file))
        {
            warning!(
                "cannot record the freeze in {} ({e}); a broker that dies frozen will not be noticed",
                self.state_file.display()
            );
        }
    }

    fn remove_state(&self) {
        match std::fs::remove_file(&self.state_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warning!("cannot remove {}: {e}", self.state_file.display()),
        }
    }

    /// Runs the fsfreeze hook, if one is configured, with `arg` ("freeze"
    /// or "thaw"), as qemu-ga does: it must be executable; a non-zero exit
    /// or a signal is an error. Unlike qemu-ga, its output is logged, and it
    /// is killed after HOOK_TIMEOUT.
    fn run_hook(&self, arg: &str) -> Result<(), OpError> {
        let Some(hook) = &self.hook else {
            return Ok(());
        };
        let path = hook.display().to_string();
        nix::unistd::access(hook, nix::unistd::AccessFlags::X_OK)
            .map_err(|e| OpError::HookAccess { path: path.clone(), errno: e as i32 })?;
        info!("executing fsfreeze hook with arg '{arg}'");
        let status = run_bounded(hook, arg).map_err(|e| {
            warning!("fsfreeze hook {path}: {e}");
            OpError::HookAbnormal
        })?;
        match status.code() {
            Some(0) => Ok(()),
            Some(status) => Err(OpError::HookFailed { status }),
            None => Err(OpError::HookAbnormal),
        }
    }
}

/// Runs `hook arg` in its own process group with no input, logging its
/// output (up to HOOK_OUTPUT_MAX per stream), killing it and its group
/// after HOOK_TIMEOUT. The broker waits for it, as qemu-ga does.
fn run_bounded(hook: &Path, arg: &str) -> std::io::Result<std::process::ExitStatus> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;

    let mut cmd = crate::spawn::clean_command(hook);
    cmd.arg(arg).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn()?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut streams: Vec<(&str, Option<OwnedFd>, Vec<u8>)> = vec![
        ("stdout", child.stdout.take().map(OwnedFd::from), Vec::new()),
        ("stderr", child.stderr.take().map(OwnedFd::from), Vec::new()),
    ];
    for (_, fd, _) in &streams {
        if let Some(fd) = fd {
            let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
            let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        }
    }
    let deadline = Instant::now() + HOOK_TIMEOUT;
    let mut status = None;
    // Until it has exited and both pipes are closed (or time is up).
    while status.is_none() || streams.iter().any(|s| s.1.is_some()) {
        let now = Instant::now();
        if now >= deadline {
            warning!(
                "fsfreeze hook {} did not finish in {} s; killing it",
                hook.display(),
                HOOK_TIMEOUT.as_secs()
            );
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            if status.is_none() {
                status = Some(child.wait()?);
            }
            break;
        }
        let open: Vec<usize> = (0..streams.len()).filter(|&i| streams[i].1.is_some()).collect();
        let mut fds: Vec<PollFd> = open
            .iter()
            .filter_map(|&i| {
                streams[i].1.as_ref().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            })
            .collect();
        // Short waits: the exit of a hook whose pipes stay open (a
        // daemon it started) is noticed too.
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> =
            fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        for (&i, ready) in open.iter().zip(ready) {
            if ready {
                drain(&mut streams[i]);
            }
        }
        if status.is_none() {
            status = child.try_wait()?;
            if status.is_some() {
                // What it wrote before exiting is read; pipes that
                // something it started keeps open are not waited for.
                for s in &mut streams {
                    drain(s);
                    s.1 = None;
                }
            }
        }
    }
    for (name, _, data) in &streams {
        for line in String::from_utf8_lossy(data).lines() {
            info!("fsfreeze hook {name}: {line}");
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    debug!("fsfreeze hook {} {arg}: {status}", hook.display());
    Ok(status)
}

/// Reads what a hook's pipe holds now (it is non-blocking); closes it at end
/// of file or error.
fn drain((_, fd, data): &mut (&str, Option<OwnedFd>, Vec<u8>)) {
    use std::os::fd::AsFd;
    let mut chunk = [0u8; 4096];
    while let Some(f) = fd.as_ref() {
        match nix::unistd::read(f.as_fd(), &mut chunk) {
            Ok(0) => *fd = None,
            Ok(n) => {
                let room = HOOK_OUTPUT_MAX.saturating_sub(data.len());
                data.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return,
            Err(_) => *fd = None,
        }
    }
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(nix::libc::EIO)
}

/// `qga-warden thaw`: thaws what the state file in `statedir` records (an
/// agent that died frozen), the mount points named, or with `all` every
/// mount in the table, in mount-table order; prints what it thawed. Exit
/// status 1 when a mount point to thaw could not be opened or the table not
/// read.
pub fn thaw_tool(statedir: &Path, all: bool, named: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let state_file = statedir.join(STATE_FILE);
    let recorded: Vec<String> = std::fs::read_to_string(&state_file)
        .map(|t| t.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let mut targets: Vec<String> = if all {
        match mounts::read() {
            Ok(table) => table.into_iter().map(|m| m.dir).collect(),
            Err(e) => {
                eprintln!("qga-warden thaw: cannot read {}: {e}", mounts::MOUNTINFO);
                return ExitCode::from(1);
            }
        }
    } else {
        // Recorded in freeze order; thawed in the opposite one.
        recorded.iter().rev().cloned().collect()
    };
    for n in named {
        if !targets.contains(n) {
            targets.push(n.clone());
        }
    }
    let mut failed = false;
    let mut thawed = 0;
    for dir in &targets {
        match open_dir(dir) {
            Ok(fd) => {
                let mut was_frozen = false;
                while thaw_fd(&fd).is_ok() {
                    was_frozen = true;
                }
                if was_frozen {
                    println!("thawed {dir}");
                    thawed += 1;
                }
            }
            Err(e) => {
                eprintln!("qga-warden thaw: cannot open {dir}: {}", errno_text(e as i32));
                failed = true;
            }
        }
    }
    if !recorded.is_empty() && !failed {
        if let Err(e) = std::fs::remove_file(&state_file) {
            eprintln!("qga-warden thaw: cannot remove {}: {e}", state_file.display());
        }
    }
    println!("{thawed} filesystems thawed");
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// What a freeze will freeze, in order: the table's mounts the policy allows
/// (those in `list` only, when given), last mounted first, one per device.
/// A listed mount point that is not such a mount is an error, before
/// anything is frozen.
pub fn plan<'a>(
    table: &'a [Mount],
    list: Option<&[String]>,
    allowed: &MountPolicy,
) -> Result<Vec<&'a Mount>, OpError> {
    let candidates: Vec<&Mount> = table.iter().filter(|m| allowed.allows(&m.dir)).collect();
    if let Some(list) = list {
        if let Some(missing) = list.iter().find(|d| !candidates.iter().any(|m| &m.dir == *d)) {
            return Err(OpError::NotFreezable { path: missing.clone() });
        }
    }
    let mut seen = Vec::new();
    let mut plan = Vec::new();
    for m in candidates.into_iter().rev() {
        if list.is_some_and(|l| !l.contains(&m.dir)) || seen.contains(&m.device()) {
            continue;
        }
        seen.push(m.device());
        plan.push(m);
    }
    Ok(plan)
}

/// guest-fstrim: every mount the policy allows, with qemu-ga's per-path
/// results (in qemu-ga's order, the reverse of the mount table).
pub fn fstrim(minimum: Option<i64>, allowed: &MountPolicy) -> Result<Vec<TrimResult>, OpError> {
    let table = mounts::read().map_err(|e| OpError::MountTable { errno: io_errno(&e) })?;
    let mut results = Vec::new();
    for m in table.iter().filter(|m| allowed.allows(&m.dir)) {
        results.push(trim_one(&m.dir, minimum));
    }
    results.reverse();
    Ok(results)
}

fn trim_one(dir: &str, minimum: Option<i64>) -> TrimResult {
    let mut result = TrimResult { path: dir.to_owned(), trimmed: None, minimum: None, error: None };
    let fd = match open_dir(dir) {
        Ok(fd) => fd,
        Err(e) => {
            result.error = Some(format!("failed to open: {}", errno_text(e as i32)));
            return result;
        }
    };
    // qemu-ga passes the host's minimum through as an unsigned length.
    let mut range = FstrimRange { start: 0, len: u64::MAX, minlen: minimum.unwrap_or(0) as u64 };
    #[allow(unsafe_code)]
    // SAFETY: FITRIM reads and writes one `struct fstrim_range`, which
    // `range` is (repr(C), three u64) and outlives the call.
    let r = unsafe { fitrim(fd.as_raw_fd(), &mut range) };
    match r {
        Ok(_) => {
            result.minimum = Some(range.minlen as i64);
            result.trimmed = Some(range.len as i64);
        }
        Err(Errno::ENOTTY | Errno::EOPNOTSUPP) => result.error = Some("trim not supported".into()),
        Err(e) => result.error = Some(format!("failed to trim: {}", errno_text(e as i32))),
    }
    debug!("fstrim {dir}: {result:?}");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(dir: &str, dev: (u32, u32)) -> Mount {
        Mount {
            dir: dir.into(),
            fstype: "ext4".into(),
            source: "/dev/x".into(),
            major: dev.0,
            minor: dev.1,
        }
    }

    fn allow(globs: &[&str]) -> MountPolicy {
        MountPolicy {
            mountpoints: globs
                .iter()
                .map(|g| policy::pattern::Glob::new(g).expect("glob"))
                .collect(),
        }
    }

    fn dirs(plan: &[&Mount]) -> Vec<String> {
        plan.iter().map(|m| m.dir.clone()).collect()
    }

    #[test]
    fn plans_in_reverse_mount_order_once_per_device() {
        let table = [
            mount("/", (254, 0)),
            mount("/srv", (254, 16)),
            mount("/srv/data", (7, 0)),
            mount("/srv/bind", (254, 16)),
            mount("/home", (254, 32)),
        ];
        let all = plan(&table, None, &allow(&["**"])).expect("plan");
        assert_eq!(dirs(&all), ["/home", "/srv/bind", "/srv/data", "/"]);
        let srv = plan(&table, None, &allow(&["/srv/**"])).expect("plan");
        assert_eq!(dirs(&srv), ["/srv/bind", "/srv/data"]);
        let list = ["/srv/data".to_owned(), "/".to_owned()];
        let listed = plan(&table, Some(&list), &allow(&["**"])).expect("plan");
        assert_eq!(dirs(&listed), ["/srv/data", "/"]);
    }

    #[test]
    fn a_listed_mount_point_must_be_a_freezable_mount() {
        let table = [mount("/", (254, 0)), mount("/srv/data", (7, 0))];
        for missing in ["/proc", "/srv/dat", "/srv/data/", "/nowhere"] {
            let list = ["/srv/data".to_owned(), missing.to_owned()];
            assert_eq!(
                plan(&table, Some(&list), &allow(&["**"])),
                Err(OpError::NotFreezable { path: missing.into() })
            );
        }
        // Outside the policy counts as not there (the policy check itself
        // refuses such a list earlier, naming its rule).
        let list = ["/".to_owned()];
        assert!(plan(&table, Some(&list), &allow(&["/srv/**"])).is_err());
    }

    #[test]
    fn the_watchdog_deadline_follows_the_policy() {
        let dir = std::env::temp_dir();
        let mut p = FreezePolicy {
            mounts: allow(&["**"]),
            max_frozen_seconds: 0,
            thaw_on_disconnect: false,
        };
        let mut f = Freezer::new(&dir, None, &p);
        f.since = Some(Instant::now());
        assert_eq!(f.deadline(), None, "0 disables it");
        p.max_frozen_seconds = 30;
        let mut f = Freezer::new(&dir, None, &p);
        assert_eq!(f.deadline(), None, "not frozen");
        let t = Instant::now();
        f.since = Some(t);
        assert_eq!(f.deadline(), Some(t + Duration::from_secs(30)));
    }
}
