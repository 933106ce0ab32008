//! guest-ssh-get-authorized-keys, guest-ssh-add-authorized-keys and
//! guest-ssh-remove-authorized-keys, as qemu-ga 7.2 does them, hardened:
//!
//! - every key to add is checked: qemu-ga's check (not a comment, one line),
//!   then a public key line of at most `MAX_KEY_LEN` bytes whose key type the
//!   policy accepts and whose base64 blob names that type, with options in
//!   front only where the policy allows them;
//! - the files are touched by a child process running as the account (its
//!   groups, gid and uid), so the broker's privileges never reach into a home
//!   directory; it reports back on a pipe and is killed after `CHILD_LIMIT`,
//!   so a hung home directory cannot hold the broker;
//! - `.ssh` and `authorized_keys` are opened relative to the home directory
//!   without following symbolic links, and only a regular file of bounded
//!   size is read;
//! - a new `authorized_keys` is written to a temporary file in `.ssh`, synced
//!   and renamed over the old one, so a crash leaves one or the other.
//!
//! Lines are kept byte for byte and each is written with its newline
//! (qemu-ga joins lines with newlines, so the file it writes after reading
//! one that ended with a newline holds an empty line, and its last line has
//! no newline). A request that changes nothing leaves the file alone.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ipc::limits::{MAX_AUTHORIZED_KEYS, MAX_AUTHORIZED_KEYS_FILE, MAX_KEY_LEN};
use ipc::ssh_key::{blob_names, split};
use ipc::{OpError, Response, SshKey};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, UnlinkatFlags, fsync, unlinkat};
use policy::SshGrant;

use crate::accounts::{self, Account};
use crate::log::{info, warning};

/// How long the child that does the file work may take.
const CHILD_LIMIT: Duration = Duration::from_secs(10);
/// How long a child that has been killed (or has answered) is waited for.
const REAP_GRACE: Duration = Duration::from_secs(1);
/// Characters of a refused key quoted in the error.
const ERROR_KEY_CHARS: usize = 256;
/// The largest reply the child may send: every byte of the largest file
/// read could become a 3-byte U+FFFD, plus the encoding around the strings.
const MAX_REPLY: usize = 3 * MAX_AUTHORIZED_KEYS_FILE as usize + 64 * 1024;

const SSH_DIR: &str = ".ssh";
const AUTHORIZED_KEYS: &str = "authorized_keys";

/// Children killed that had not ended when last waited for: reaped later.
static LEFTOVERS: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

pub fn get_authorized_keys(username: &str) -> Result<Response, OpError> {
    let account = find(username)?;
    get_keys(&account, CHILD_LIMIT).map(Response::AuthorizedKeys)
}

pub fn add_authorized_keys(
    username: &str,
    keys: &[SshKey],
    reset: bool,
    grant: &SshGrant,
) -> Result<Response, OpError> {
    // As qemu-ga: every key is checked before the account is looked up.
    for key in keys {
        check_key_to_add(key, grant)?;
    }
    let keys: Vec<String> = keys.iter().map(|k| k.line.clone()).collect();
    let account = find(username)?;
    info!(
        "guest-ssh-add-authorized-keys: {} key(s) for '{}'{}",
        keys.len(),
        account.name,
        if reset { ", replacing the others" } else { "" }
    );
    add_keys(&account, &keys, reset, CHILD_LIMIT).map(|()| Response::Empty)
}

pub fn remove_authorized_keys(
    username: &str,
    keys: &[SshKey],
    _grant: &SshGrant,
) -> Result<Response, OpError> {
    for key in keys {
        check_key_to_remove(&key.line)?;
    }
    let keys: Vec<String> = keys.iter().map(|k| k.line.clone()).collect();
    let account = find(username)?;
    info!("guest-ssh-remove-authorized-keys: {} key(s) for '{}'", keys.len(), account.name);
    remove_keys(&account, &keys, CHILD_LIMIT).map(|()| Response::Empty)
}

fn find(username: &str) -> Result<Account, OpError> {
    match accounts::lookup(username) {
        Ok(Some(account)) => Ok(account),
        _ => Err(OpError::SshNoUser { username: username.to_owned() }),
    }
}

/// `~/.ssh` as qemu-ga names it in errors (g_build_filename).
fn ssh_path(account: &Account) -> String {
    format!("{}/{SSH_DIR}", account.home.trim_end_matches('/'))
}

/// `~/.ssh/authorized_keys` as qemu-ga names it in errors.
fn keys_path(account: &Account) -> String {
    format!("{}/{AUTHORIZED_KEYS}", ssh_path(account))
}

// ---------------------------------------------------------------------------
// Checking the keys of a request.

fn invalid(key: &str) -> OpError {
    OpError::SshInvalidKey { key: key.chars().take(ERROR_KEY_CHARS).collect() }
}

/// qemu-ga's check (not a comment, no newline), and a line sshd could read
/// (no NUL, not longer than sshd reads): enough to name any line to remove.
fn check_key_to_remove(key: &str) -> Result<(), OpError> {
    if key.starts_with('#') || key.contains(['\n', '\0']) || key.len() > MAX_KEY_LEN {
        return Err(invalid(key));
    }
    Ok(())
}

/// [`check_key_to_remove`], then: a whole public key line (no CR either) of
/// a type the policy accepts, with options only if the policy allows them.
///
/// The line's key is the blob the frontend decoded, if the line has it as
/// the base64 body after a key type the blob names: the broker encodes the
/// blob and compares, it never decodes what the host sent.
fn check_key_to_add(key: &SshKey, grant: &SshGrant) -> Result<(), OpError> {
    let line = key.line.as_str();
    check_key_to_remove(line)?;
    if line.contains('\r') {
        return Err(invalid(line));
    }
    let blob = key.blob.as_ref().ok_or_else(|| invalid(line))?;
    let encoded = STANDARD.encode(&blob.0);
    let is_key = |key_type: &str, body: &str| body == encoded && blob_names(&blob.0, key_type);
    let parsed = split(line, is_key).ok_or_else(|| invalid(line))?;
    if !grant.key_types.iter().any(|t| t == parsed.key_type) {
        return Err(OpError::Denied {
            rule: "ssh.key_types: this key type is not accepted".into(),
        });
    }
    if parsed.options.is_some() && !grant.allow_options {
        return Err(OpError::Denied {
            rule: "ssh.allow_options: key options are not accepted".into(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What the file becomes.

/// The lines of a file, without their newlines (a last line may lack one).
fn lines(content: &[u8]) -> Vec<&[u8]> {
    if content.is_empty() {
        return Vec::new();
    }
    content.strip_suffix(b"\n").unwrap_or(content).split(|&b| b == b'\n').collect()
}

/// Lines back into a file, each with its newline.
fn joined(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// The file after adding `keys` (those not already a line of it, in order)
/// to `old` (to nothing when resetting); None when it does not change.
fn with_added(old: Option<&[u8]>, keys: &[String], reset: bool) -> Option<Vec<u8>> {
    let mut all = if reset { Vec::new() } else { old.map(lines).unwrap_or_default() };
    let before = all.len();
    let mut present: HashSet<&[u8]> = all.iter().copied().collect();
    for key in keys {
        if present.insert(key.as_bytes()) {
            all.push(key.as_bytes());
        }
    }
    (reset || all.len() > before).then(|| joined(&all))
}

/// The file without the lines that are exactly one of `keys`; None when
/// there are none.
fn with_removed(old: &[u8], keys: &[String]) -> Option<Vec<u8>> {
    let remove: HashSet<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let all = lines(old);
    let kept: Vec<&[u8]> = all.iter().copied().filter(|l| !remove.contains(l)).collect();
    (kept.len() != all.len()).then(|| joined(&kept))
}

/// C's isspace in the C locale, which g_strstrip uses (Rust's ASCII
/// whitespace lacks the vertical tab).
fn is_c_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The keys guest-ssh-get-authorized-keys lists: each line trimmed, blank
/// lines and comments left out, last line first (qemu-ga prepends), at most
/// `MAX_AUTHORIZED_KEYS` of them.
fn listed(content: &[u8]) -> Vec<String> {
    let mut keys = Vec::new();
    for line in content.split(|&b| b == b'\n').rev() {
        let start = line.iter().position(|b| !is_c_space(b)).unwrap_or(line.len());
        let end = line.iter().rposition(|b| !is_c_space(b)).map_or(start, |e| e + 1);
        let line = &line[start..end];
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if keys.len() == MAX_AUTHORIZED_KEYS {
            break;
        }
        keys.push(String::from_utf8_lossy(line).into_owned());
    }
    keys
}

// ---------------------------------------------------------------------------
// The file work, done as the account.

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

fn open_home(account: &Account) -> Result<OwnedFd, Errno> {
    if !account.home.starts_with('/') {
        return Err(Errno::ENOENT);
    }
    // Symbolic links on the way (/home -> /usr/home) are the system's and
    // are followed; the account can only reach what it may reach.
    nix::fcntl::open(
        account.home.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
}

/// `.ssh`, not through a symbolic link (ELOOP or ENOTDIR if it is one).
fn open_ssh_dir(home: &OwnedFd) -> Result<OwnedFd, Errno> {
    openat(
        home,
        SSH_DIR,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `.ssh`, made (0700) if missing.
fn open_or_make_ssh_dir(home: &OwnedFd) -> Result<OwnedFd, Errno> {
    match open_ssh_dir(home) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let made = match mkdirat(home, SSH_DIR, Mode::S_IRWXU) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(e),
    };
    let dir = open_ssh_dir(home)?;
    if made {
        // Whatever the umask took away.
        fchmod(&dir, Mode::S_IRWXU)?;
    }
    Ok(dir)
}

/// Only a regular file is read or replaced.
fn check_kind(st: &FileStat) -> Result<(), Errno> {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Ok(()),
        SFlag::S_IFDIR => Err(Errno::EISDIR),
        SFlag::S_IFLNK => Err(Errno::ELOOP),
        _ => Err(Errno::EINVAL),
    }
}

/// `authorized_keys` in `ssh`, None if there is none: not through a
/// symbolic link, a regular file, at most `MAX_AUTHORIZED_KEYS_FILE` bytes.
fn read_keys_file(ssh: &OwnedFd) -> Result<Option<Vec<u8>>, Errno> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    let fd = match openat(ssh, AUTHORIZED_KEYS, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(&fd)?;
    check_kind(&st)?;
    if u64::try_from(st.st_size).unwrap_or(u64::MAX) > MAX_AUTHORIZED_KEYS_FILE {
        return Err(Errno::EFBIG);
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_AUTHORIZED_KEYS_FILE + 1)
        .read_to_end(&mut data)
        .map_err(io_errno)?;
    if data.len() as u64 > MAX_AUTHORIZED_KEYS_FILE {
        return Err(Errno::EFBIG);
    }
    Ok(Some(data))
}

/// Whether `authorized_keys` in `ssh` may be replaced without being read:
/// missing, or a regular file.
fn check_replaceable(ssh: &OwnedFd) -> Result<(), Errno> {
    match fstatat(ssh, AUTHORIZED_KEYS, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => check_kind(&st),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new file in `ssh` (0600, O_EXCL) with a name no one else uses.
fn create_temp(ssh: &OwnedFd) -> Result<(String, OwnedFd), Errno> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(".{AUTHORIZED_KEYS}.{}.{nanos:08x}{n:x}.tmp", std::process::id());
        match openat(ssh, name.as_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(fd) => return Ok((name, fd)),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EEXIST)
}

/// Replaces `authorized_keys` in `ssh` with `content`: a temporary file
/// written, synced and renamed over it, then the directory synced. The
/// temporary file is removed on failure.
fn replace_keys_file(ssh: &OwnedFd, content: &[u8]) -> Result<(), Errno> {
    let (name, fd) = create_temp(ssh)?;
    let write = || -> Result<(), Errno> {
        fchmod(&fd, Mode::S_IRUSR | Mode::S_IWUSR)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(content).map_err(io_errno)?;
        file.sync_all().map_err(io_errno)?;
        drop(file);
        renameat(ssh, name.as_str(), ssh, AUTHORIZED_KEYS)
    };
    if let Err(e) = write() {
        let _ = unlinkat(ssh, name.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    match fsync(ssh) {
        // A filesystem that cannot sync a directory.
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e),
    }
}

/// guest-ssh-get-authorized-keys, as the account.
fn read_listed(account: &Account) -> Result<Vec<String>, OpError> {
    let err = |errno: Errno| OpError::SshRead { path: keys_path(account), errno: errno as i32 };
    let home = open_home(account).map_err(err)?;
    let ssh = open_ssh_dir(&home).map_err(err)?;
    let content = read_keys_file(&ssh).map_err(err)?.ok_or_else(|| err(Errno::ENOENT))?;
    Ok(listed(&content))
}

/// guest-ssh-add-authorized-keys, as the account.
fn write_added(account: &Account, keys: &[String], reset: bool) -> Result<(), OpError> {
    let mkdir_err =
        |errno: Errno| OpError::SshMkdir { path: ssh_path(account), errno: errno as i32 };
    let read_err =
        |errno: Errno| OpError::SshRead { path: keys_path(account), errno: errno as i32 };
    let write_err =
        |errno: Errno| OpError::SshWrite { path: keys_path(account), errno: errno as i32 };
    // A missing home directory fails where qemu-ga fails: making `.ssh`.
    let home = open_home(account).map_err(mkdir_err)?;
    let ssh = open_or_make_ssh_dir(&home).map_err(mkdir_err)?;
    let old = if reset {
        // qemu-ga does not read the file it replaces; a link is still refused.
        check_replaceable(&ssh).map_err(write_err)?;
        None
    } else {
        read_keys_file(&ssh).map_err(read_err)?
    };
    match with_added(old.as_deref(), keys, reset) {
        Some(content) => replace_keys_file(&ssh, &content).map_err(write_err),
        None => Ok(()),
    }
}

/// guest-ssh-remove-authorized-keys, as the account: nothing to do when
/// there is no file.
fn write_removed(account: &Account, keys: &[String]) -> Result<(), OpError> {
    let read_err =
        |errno: Errno| OpError::SshRead { path: keys_path(account), errno: errno as i32 };
    let write_err =
        |errno: Errno| OpError::SshWrite { path: keys_path(account), errno: errno as i32 };
    let missing_is_none = |r: Result<OwnedFd, Errno>| match r {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(read_err(e)),
    };
    let Some(home) = missing_is_none(open_home(account))? else { return Ok(()) };
    let Some(ssh) = missing_is_none(open_ssh_dir(&home))? else { return Ok(()) };
    let Some(old) = read_keys_file(&ssh).map_err(read_err)? else { return Ok(()) };
    match with_removed(&old, keys) {
        Some(content) => replace_keys_file(&ssh, &content).map_err(write_err),
        None => Ok(()),
    }
}

fn get_keys(account: &Account, limit: Duration) -> Result<Vec<String>, OpError> {
    let timeout = OpError::SshRead { path: keys_path(account), errno: Errno::ETIMEDOUT as i32 };
    as_user(account, limit, timeout, || read_listed(account))
}

fn add_keys(
    account: &Account,
    keys: &[String],
    reset: bool,
    limit: Duration,
) -> Result<(), OpError> {
    let timeout = OpError::SshWrite { path: keys_path(account), errno: Errno::ETIMEDOUT as i32 };
    as_user(account, limit, timeout, || write_added(account, keys, reset).map(|()| Vec::new()))
        .map(drop)
}

fn remove_keys(account: &Account, keys: &[String], limit: Duration) -> Result<(), OpError> {
    let timeout = OpError::SshWrite { path: keys_path(account), errno: Errno::ETIMEDOUT as i32 };
    as_user(account, limit, timeout, || write_removed(account, keys).map(|()| Vec::new())).map(drop)
}

// ---------------------------------------------------------------------------
// The child process.

/// Runs `work` in a child process that has become `account`, and returns
/// what it returned. The child is killed after `limit` (the error is then
/// `on_timeout`); one that dies or answers nonsense is `ChildAbnormal`.
fn as_user(
    account: &Account,
    limit: Duration,
    on_timeout: OpError,
    work: impl FnOnce() -> Result<Vec<String>, OpError>,
) -> Result<Vec<String>, OpError> {
    reap_leftovers();
    // NSS (getgrouplist) runs here, not in the child.
    let groups: Vec<Gid> = accounts::groups(account).into_iter().map(Gid::from_raw).collect();
    let spawn_err = |e: Errno| OpError::ChildSpawn { errno: e as i32 };
    let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(spawn_err)?;
    #[allow(unsafe_code)]
    // SAFETY: the broker is single-threaded, so the child is a copy of a
    // process with one thread, holding no lock another thread could have
    // taken, and may allocate. It never returns into the broker's code:
    // `child` ends with _exit. (Unit tests fork from a threaded harness:
    // glibc keeps malloc usable in the child of fork, and the child takes
    // no other lock but to report a panic.)
    let forked = unsafe { nix::unistd::fork() }.map_err(spawn_err)?;
    match forked {
        ForkResult::Child => {
            drop(reader);
            child(account, &groups, writer, work)
        }
        ForkResult::Parent { child } => {
            drop(writer);
            collect(child, reader, limit, on_timeout)
        }
    }
}

/// The child: becomes the account, does the work, writes its result to
/// `writer` and exits.
fn child(
    account: &Account,
    groups: &[Gid],
    writer: OwnedFd,
    work: impl FnOnce() -> Result<Vec<String>, OpError>,
) -> ! {
    let keep = writer.as_raw_fd();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        become_account(account, groups, keep)?;
        work()
    }));
    let mut status = 1;
    if let Ok(result) = result {
        let mut reply = Vec::new();
        if ipc::codec::encode(&result, &mut reply).is_ok()
            && std::fs::File::from(writer).write_all(&reply).is_ok()
        {
            status = 0;
        }
    }
    #[allow(unsafe_code)]
    // SAFETY: _exit ends the child at once, without running the atexit
    // handlers or flushing the buffers it holds copies of from the broker.
    unsafe {
        nix::libc::_exit(status)
    }
}

/// Leaves the child with only its standard streams and `keep` open, the
/// account's groups, gid and uid (real, effective and saved), and not
/// dumpable (not ptrace-able by the account).
fn become_account(account: &Account, groups: &[Gid], keep: RawFd) -> Result<(), OpError> {
    let err = |e: Errno| OpError::ChildSpawn { errno: e as i32 };
    close_descriptors_but(keep);
    nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    let (uid, gid) = (Uid::from_raw(account.uid), Gid::from_raw(account.gid));
    let already = Uid::current() == uid
        && Uid::effective() == uid
        && Gid::current() == gid
        && Gid::effective() == gid;
    if !already {
        nix::unistd::setgroups(groups).map_err(err)?;
        nix::unistd::setresgid(gid, gid, gid).map_err(err)?;
        nix::unistd::setresuid(uid, uid, uid).map_err(err)?;
    }
    nix::sys::prctl::set_dumpable(false).map_err(err)?;
    Ok(())
}

/// Closes every descriptor from 3 up but `keep`, so that none the broker
/// holds (the channel, the audit trail, guest-file handles) is left in a
/// process the account owns. Best effort: close_range is Linux 5.9.
fn close_descriptors_but(keep: RawFd) {
    use nix::libc::{SYS_close_range, c_uint, syscall};
    const NO_FLAGS: c_uint = 0;
    let close_range = |first: c_uint, last: c_uint| {
        #[allow(unsafe_code)]
        // SAFETY: close_range only closes descriptors. Those of the broker's
        // objects are never used again: the child runs its work, which opens
        // its own, and exits without dropping anything it inherited.
        unsafe {
            syscall(SYS_close_range, first, last, NO_FLAGS);
        }
    };
    match c_uint::try_from(keep) {
        Ok(keep) if keep >= 3 => {
            if keep > 3 {
                close_range(3, keep - 1);
            }
            close_range(keep + 1, c_uint::MAX);
        }
        _ => close_range(3, c_uint::MAX),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    TimedOut,
    Failed,
}

/// Reads the child's reply until it closes the pipe (by exiting), at most
/// `MAX_REPLY` bytes and until `limit`; kills it otherwise; reaps it.
fn collect(
    pid: Pid,
    reader: OwnedFd,
    limit: Duration,
    on_timeout: OpError,
) -> Result<Vec<String>, OpError> {
    let deadline = Instant::now() + limit;
    let mut reply = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Outcome::TimedOut;
        }
        // Rounded up, so that the last milliseconds are not a busy loop.
        let timeout =
            PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break Outcome::Failed,
        }
        match nix::unistd::read(reader.as_fd(), &mut chunk) {
            Ok(0) => break Outcome::Done,
            Ok(n) if reply.len() + n > MAX_REPLY => break Outcome::Failed,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => break Outcome::Failed,
        }
    };
    drop(reader);
    if outcome != Outcome::Done {
        let _ = kill(pid, Signal::SIGKILL);
    }
    reap(pid);
    match outcome {
        Outcome::TimedOut => {
            warning!("ssh: the child working as the account (pid {pid}) timed out; killed it");
            Err(on_timeout)
        }
        Outcome::Failed => Err(OpError::ChildAbnormal),
        Outcome::Done => ipc::codec::decode::<Result<Vec<String>, OpError>>(&reply)
            .unwrap_or(Err(OpError::ChildAbnormal)),
    }
}

/// Waits a little for `pid` to end (it has answered, or been killed); one
/// that does not (stuck in the kernel) is killed and left for later.
fn reap(pid: Pid) {
    let deadline = Instant::now() + REAP_GRACE;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(_) => {}
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            if let Ok(mut pids) = LEFTOVERS.lock() {
                pids.push(pid);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reaps the children [`reap`] left behind that have ended since.
fn reap_leftovers() {
    if let Ok(mut pids) = LEFTOVERS.lock() {
        pids.retain(|&pid| {
            matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    // Generated with ssh-keygen; fingerprints from `ssh-keygen -lf`.
    const ED1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINe4UxVgFKJlrgYYpr5lLwnPQtcnV7pCJrIS19CARuss test@example";
    const ED1_FP: &str = "SHA256:YbsQQCMalapVWXYFhmvK8lTuSxLsAm8GuDzjcBwQgIw";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIQLybXMuNzXxW//BQadSP/qE3Vxsru8Z213KBF0x7Hq second";
    const ED2_FP: &str = "SHA256:QhR+KMCbmAcy1Wtg6wQk06QU5TzRGVo8WSvsOqkU+UY";
    const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFxLId2Lcixd/+f3C4QWjBe2j6vwVhLLR0gBnkbDjePh7yY9AzQUtsPgaAxiJPQVeDZ/OVty4eWbPaeOS32xWwc= ec@example";
    const EC_FP: &str = "SHA256:BEYSz/dgYogPcoTGC6iqwrr/IhBhneDxJPvpl3CIv4U";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCibMOO+ZSrjifev/c9hJWn7VLh+yD1glpUX2M7P3V9P79CjkywRA/xHpRmY6vz8uVnIC9Wg77joG2bUfdon3SeC4nUpCjE1uWgGXgW77jB5z9bFVPf7boxrVMvtr35vcI+vv6sj05EiPiF1Nhrf6Y2+Jlncs6fx1mHCaWfOoEHgw== rsa";
    const RSA_FP: &str = "SHA256:mrGdjGBaaNyvy3oJnbw1jMi7eyJPMyai1kBK0CAh92g";

    const NOBODY: u32 = 65534;

    fn grant() -> SshGrant {
        SshGrant {
            key_types: policy::DEFAULT_SSH_KEY_TYPES.iter().map(|s| (*s).to_owned()).collect(),
            allow_options: false,
        }
    }

    fn strings(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    /// A key as the frontend sends it: the line, and the blob it decoded.
    fn sent(line: &str) -> SshKey {
        let blob = ipc::ssh_key::decoded_blob(line, |body| STANDARD.decode(body).ok());
        SshKey { line: line.to_owned(), blob: blob.map(ipc::Bytes) }
    }

    fn sent_all(lines: &[&str]) -> Vec<SshKey> {
        lines.iter().map(|l| sent(l)).collect()
    }

    /// A temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "qga-warden-ssh-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir(&path).expect("temp dir");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A temporary home (`<tmp>/home`) for an account; owned by it when
    /// `uid` is not ours.
    fn home(dir: &TempDir, uid: u32, gid: u32) -> Account {
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home");
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown");
        Account { name: "nobody".into(), uid, gid, home: home.to_string_lossy().into_owned() }
    }

    fn our_account(dir: &TempDir) -> Account {
        home(dir, Uid::effective().as_raw(), Gid::effective().as_raw())
    }

    /// A throwaway account, when the tests can become it.
    fn nobody(dir: &TempDir) -> Option<Account> {
        if !Uid::effective().is_root() {
            eprintln!("not root: skipping the part run as uid {NOBODY}");
            return None;
        }
        Some(home(dir, NOBODY, NOBODY))
    }

    fn keys_file(account: &Account) -> PathBuf {
        Path::new(&account.home).join(".ssh/authorized_keys")
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).expect("read")
    }

    fn errno(e: &OpError) -> i32 {
        match e {
            OpError::SshRead { errno, .. }
            | OpError::SshWrite { errno, .. }
            | OpError::SshMkdir { errno, .. } => *errno,
            other => panic!("not a file error: {other:?}"),
        }
    }

    fn temp_files(account: &Account) -> Vec<String> {
        std::fs::read_dir(Path::new(&account.home).join(".ssh"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    }

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn ssh_add_makes_dir_and_file_as_the_user_and_edits_in_place() {
        let dir = TempDir::new("add");
        let Some(acct) = nobody(&dir) else { return };
        let file = keys_file(&acct);

        add_keys(&acct, &strings(&[ED1]), false, LIMIT).expect("add");
        let ssh = std::fs::metadata(Path::new(&acct.home).join(".ssh")).expect("stat .ssh");
        assert!(ssh.is_dir());
        assert_eq!((ssh.mode() & 0o7777, ssh.uid(), ssh.gid()), (0o700, NOBODY, NOBODY));
        let meta = std::fs::symlink_metadata(&file).expect("stat file");
        assert!(meta.is_file());
        assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o600, NOBODY, NOBODY));
        assert_eq!(read(&file), format!("{ED1}\n").into_bytes());

        // Present already: the file is not even rewritten.
        add_keys(&acct, &strings(&[ED1]), false, LIMIT).expect("add again");
        let again = std::fs::symlink_metadata(&file).expect("stat");
        assert_eq!((again.ino(), read(&file)), (meta.ino(), format!("{ED1}\n").into_bytes()));

        add_keys(&acct, &strings(&[ED2, ED1, ED2]), false, LIMIT).expect("add more");
        assert_eq!(read(&file), format!("{ED1}\n{ED2}\n").into_bytes());
        assert_eq!(get_keys(&acct, LIMIT), Ok(strings(&[ED2, ED1])));

        remove_keys(&acct, &strings(&[ED1]), LIMIT).expect("remove");
        assert_eq!(read(&file), format!("{ED2}\n").into_bytes());

        add_keys(&acct, &strings(&[EC, RSA]), true, LIMIT).expect("reset");
        assert_eq!(read(&file), format!("{EC}\n{RSA}\n").into_bytes());
        let meta = std::fs::symlink_metadata(&file).expect("stat");
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o600, NOBODY));
        assert!(temp_files(&acct).is_empty());
    }

    #[test]
    fn ssh_missing_files() {
        let dir = TempDir::new("missing");
        let Some(acct) = nobody(&dir) else { return };
        let path = keys_file(&acct).to_string_lossy().into_owned();
        let enoent = OpError::SshRead { path: path.clone(), errno: nix::libc::ENOENT };
        assert_eq!(get_keys(&acct, LIMIT), Err(enoent.clone()));
        // Removing from no file: done, nothing made.
        assert_eq!(remove_keys(&acct, &strings(&[ED1]), LIMIT), Ok(()));
        assert!(!Path::new(&acct.home).join(".ssh").exists());
        std::fs::create_dir(Path::new(&acct.home).join(".ssh")).expect("mkdir");
        assert_eq!(get_keys(&acct, LIMIT), Err(enoent));
        assert_eq!(remove_keys(&acct, &strings(&[ED1]), LIMIT), Ok(()));
        // No home: qemu-ga's errors.
        let gone = Account { home: format!("{}/nowhere", acct.home), ..acct };
        let e = add_keys(&gone, &strings(&[ED1]), false, LIMIT).expect_err("no home");
        assert_eq!(
            e,
            OpError::SshMkdir { path: format!("{}/.ssh", gone.home), errno: nix::libc::ENOENT }
        );
        assert_eq!(remove_keys(&gone, &strings(&[ED1]), LIMIT), Ok(()));
    }

    #[test]
    fn ssh_symlinks_out_of_the_home_are_refused() {
        let dir = TempDir::new("links");
        let Some(acct) = nobody(&dir) else { return };
        // Somewhere the account could write, so that only the refusal to
        // follow links keeps it unchanged.
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::os::unix::fs::chown(&outside, Some(NOBODY), Some(NOBODY)).expect("chown");
        let target = outside.join("authorized_keys");
        std::fs::write(&target, b"outside\n").expect("write");
        std::os::unix::fs::chown(&target, Some(NOBODY), Some(NOBODY)).expect("chown");
        let unchanged = || {
            assert_eq!(read(&target), b"outside\n");
            let names: Vec<_> = std::fs::read_dir(&outside).expect("ls").collect();
            assert_eq!(names.len(), 1, "files appeared outside the home");
        };
        let is_link_error = |r: Result<(), OpError>| {
            let e = r.expect_err("followed a link");
            assert!([nix::libc::ELOOP, nix::libc::ENOTDIR].contains(&errno(&e)), "{e:?}");
        };
        let ssh = Path::new(&acct.home).join(".ssh");

        // ~/.ssh -> outside
        std::os::unix::fs::symlink(&outside, &ssh).expect("symlink");
        is_link_error(get_keys(&acct, LIMIT).map(drop));
        is_link_error(add_keys(&acct, &strings(&[ED1]), false, LIMIT));
        is_link_error(add_keys(&acct, &strings(&[ED1]), true, LIMIT));
        is_link_error(remove_keys(&acct, &strings(&["outside"]), LIMIT));
        unchanged();

        // ~/.ssh/authorized_keys -> outside/authorized_keys
        std::fs::remove_file(&ssh).expect("rm");
        std::fs::create_dir(&ssh).expect("mkdir");
        std::os::unix::fs::chown(&ssh, Some(NOBODY), Some(NOBODY)).expect("chown");
        std::os::unix::fs::symlink(&target, ssh.join("authorized_keys")).expect("symlink");
        is_link_error(get_keys(&acct, LIMIT).map(drop));
        is_link_error(add_keys(&acct, &strings(&[ED1]), false, LIMIT));
        is_link_error(add_keys(&acct, &strings(&[ED1]), true, LIMIT));
        is_link_error(remove_keys(&acct, &strings(&["outside"]), LIMIT));
        unchanged();
        assert!(temp_files(&acct).is_empty());
        assert!(std::fs::symlink_metadata(ssh.join("authorized_keys")).expect("stat").is_symlink());
    }

    #[test]
    fn ssh_child_runs_as_the_account_and_is_bounded() {
        let dir = TempDir::new("child");
        let Some(acct) = nobody(&dir) else { return };
        let ids = as_user(&acct, LIMIT, OpError::ChildAbnormal, || {
            let r = nix::unistd::getresuid().map_err(|_| OpError::ChildAbnormal)?;
            let g = nix::unistd::getresgid().map_err(|_| OpError::ChildAbnormal)?;
            let groups = nix::unistd::getgroups().map_err(|_| OpError::ChildAbnormal)?;
            let dumpable = nix::sys::prctl::get_dumpable().map_err(|_| OpError::ChildAbnormal)?;
            Ok(vec![
                format!("{} {} {}", r.real, r.effective, r.saved),
                format!("{} {} {}", g.real, g.effective, g.saved),
                format!("{:?}", groups.iter().map(|g| g.as_raw()).collect::<Vec<_>>()),
                format!("{dumpable}"),
            ])
        });
        assert_eq!(
            ids,
            Ok(strings(&["65534 65534 65534", "65534 65534 65534", "[65534]", "false"]))
        );
        // A child that hangs is killed at the limit.
        let started = Instant::now();
        let timeout = OpError::SshRead { path: "x".into(), errno: nix::libc::ETIMEDOUT };
        let r = as_user(&acct, Duration::from_millis(200), timeout.clone(), || {
            std::thread::sleep(Duration::from_secs(30));
            Ok(Vec::new())
        });
        assert_eq!(r, Err(timeout));
        assert!(started.elapsed() < Duration::from_secs(5));
        // A child that panics is abnormal.
        let r = as_user(&acct, LIMIT, OpError::ChildAbnormal, || panic!("boom"));
        assert_eq!(r, Err(OpError::ChildAbnormal));
    }

    #[test]
    fn ssh_core_preserves_lines_and_refuses_odd_files() {
        // Without forking, as ourselves, on a private temporary home.
        let dir = TempDir::new("core");
        let acct = our_account(&dir);
        let ssh = Path::new(&acct.home).join(".ssh");
        std::fs::create_dir(&ssh).expect("mkdir");
        let file = ssh.join("authorized_keys");
        let original = format!("# comment\n\ncommand=\"x\" {ED1}\n  {ED2}  \r\n{EC}");
        std::fs::write(&file, &original).expect("write");

        assert_eq!(read_listed(&acct), Ok(strings(&[EC, ED2, &format!("command=\"x\" {ED1}")])));
        write_added(&acct, &strings(&[ED1]), false).expect("add");
        assert_eq!(read(&file), format!("{original}\n{ED1}\n").into_bytes());
        write_removed(&acct, &strings(&[ED1, EC])).expect("remove");
        assert_eq!(
            read(&file),
            format!("# comment\n\ncommand=\"x\" {ED1}\n  {ED2}  \r\n").into_bytes()
        );
        // Nothing to remove: the file stays as it is.
        let ino = std::fs::metadata(&file).expect("stat").ino();
        write_removed(&acct, &strings(&[RSA])).expect("remove nothing");
        assert_eq!(std::fs::metadata(&file).expect("stat").ino(), ino);
        write_added(&acct, &[], true).expect("reset to nothing");
        assert_eq!(read(&file), b"");
        assert_eq!(read_listed(&acct), Ok(vec![]));

        // Too large.
        let big = vec![b'#'; MAX_AUTHORIZED_KEYS_FILE as usize + 1];
        std::fs::write(&file, &big).expect("write");
        let efbig = nix::libc::EFBIG;
        assert_eq!(read_listed(&acct).map_err(|e| errno(&e)), Err(efbig));
        assert_eq!(write_added(&acct, &strings(&[ED1]), false).map_err(|e| errno(&e)), Err(efbig));
        assert_eq!(write_removed(&acct, &strings(&[ED1])).map_err(|e| errno(&e)), Err(efbig));
        // Reset does not read it: that is how such a file is replaced.
        write_added(&acct, &strings(&[ED1]), true).expect("reset");
        assert_eq!(read(&file), format!("{ED1}\n").into_bytes());

        // Not a regular file.
        std::fs::remove_file(&file).expect("rm");
        nix::unistd::mkfifo(&file, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
        let einval = nix::libc::EINVAL;
        assert_eq!(read_listed(&acct).map_err(|e| errno(&e)), Err(einval));
        assert_eq!(write_added(&acct, &strings(&[ED1]), true).map_err(|e| errno(&e)), Err(einval));
        std::fs::remove_file(&file).expect("rm");
        std::fs::create_dir(&file).expect("mkdir");
        assert_eq!(read_listed(&acct).map_err(|e| errno(&e)), Err(nix::libc::EISDIR));
        assert!(temp_files(&acct).is_empty());

        // Many keys: the last ones, up to the limit.
        std::fs::remove_dir(&file).expect("rmdir");
        let many: String = (0..MAX_AUTHORIZED_KEYS + 10).map(|i| format!("k{i}\n")).collect();
        std::fs::write(&file, many).expect("write");
        let listed = read_listed(&acct).expect("list");
        assert_eq!(listed.len(), MAX_AUTHORIZED_KEYS);
        assert_eq!(listed[0], format!("k{}", MAX_AUTHORIZED_KEYS + 9));
    }

    #[test]
    fn ssh_file_edits() {
        let k = |v: &[&str]| strings(v);
        // Added after the lines there, in order, once each.
        assert_eq!(with_added(None, &k(&["a", "b", "a"]), false), Some(b"a\nb\n".to_vec()));
        assert_eq!(with_added(Some(&b"x\ny"[..]), &k(&["a"]), false), Some(b"x\ny\na\n".to_vec()));
        assert_eq!(with_added(Some(&b"x\n\n"[..]), &k(&["a"]), false), Some(b"x\n\na\n".to_vec()));
        assert_eq!(with_added(Some(&b"a\nb\n"[..]), &k(&["b", "a"]), false), None);
        assert_eq!(with_added(Some(&b"a\n"[..]), &k(&[]), false), None);
        assert_eq!(with_added(None, &k(&[]), false), None);
        // Reset: the given keys only.
        assert_eq!(with_added(Some(&b"x\n"[..]), &k(&["a", "a"]), true), Some(b"a\n".to_vec()));
        assert_eq!(with_added(Some(&b"a\n"[..]), &k(&["a"]), true), Some(b"a\n".to_vec()));
        assert_eq!(with_added(Some(&b"x\n"[..]), &k(&[]), true), Some(Vec::new()));
        // Removed: exact lines only; the rest kept as it was.
        let file = b"# c\n\nfrom=\"h\" a\na\n a\nb\r\nb\na\n";
        assert_eq!(
            with_removed(file, &k(&["a", "b"])),
            Some(b"# c\n\nfrom=\"h\" a\n a\nb\r\n".to_vec())
        );
        assert_eq!(with_removed(file, &k(&["z"])), None);
        assert_eq!(with_removed(b"a\nb", &k(&["a"])), Some(b"b\n".to_vec()));
        assert_eq!(with_removed(b"a\n", &k(&["a"])), Some(Vec::new()));
        // Listed: trimmed, no blank lines or comments, last first.
        assert_eq!(listed(b"a\n# b\n\n \t\x0b\n  #c\n\td e \r\n\nf"), strings(&["f", "d e", "a"]));
        assert_eq!(listed(b""), Vec::<String>::new());
        assert_eq!(listed(b"\xffk\n"), strings(&["\u{fffd}k"]));
    }

    #[test]
    fn ssh_keys_to_add_are_checked() {
        let g = grant();
        let ok = |key: &str| check_key_to_add(&sent(key), &g);
        let invalid = |key: &str| OpError::SshInvalidKey { key: key.to_owned() };
        for key in [
            ED1,
            ED2,
            EC,
            RSA,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIQLybXMuNzXxW//BQadSP/qE3Vxsru8Z213KBF0x7Hq",
            "  ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAIIQLybXMuNzXxW//BQadSP/qE3Vxsru8Z213KBF0x7Hq  a b c",
        ] {
            assert_eq!(ok(key), Ok(()), "{key}");
        }
        // The RSA signature names are read as RSA keys.
        let rsa_body = RSA.split(' ').nth(1).expect("body");
        assert_eq!(ok(&format!("rsa-sha2-512 {rsa_body}")), Ok(()));

        let ed_body = ED1.split(' ').nth(1).expect("body");
        let malformed = [
            String::new(),
            "   ".into(),
            "ssh-ed25519".into(),
            "ssh-ed25519 ".into(),
            format!("# {ED1}"),
            format!("{ED1}\n{ED2}"),
            format!("{ED1}\r"),
            format!("{ED1}\0"),
            format!("ssh-ed25519 {}", &ed_body[1..]),
            "ssh-ed25519 AAAA!!!!".into(),
            format!("ssh-ed25519 {ed_body}x"),
            // The type and the blob disagree.
            format!("ssh-rsa {ed_body}"),
            format!("ecdsa-sha2-nistp256 {rsa_body}"),
            // The blob is only the type.
            format!("ssh-ed25519 {}", STANDARD.encode(b"\0\0\0\x0bssh-ed25519")),
            "hello world".into(),
            format!("command=\"unterminated {ED1}"),
        ];
        for key in &malformed {
            assert_eq!(ok(key), Err(invalid(key)), "{key:?}");
        }
        // Too long; the error quotes the beginning only.
        let long = format!("{ED1} {}", "c".repeat(MAX_KEY_LEN));
        assert_eq!(ok(&long), Err(invalid(&long[..ERROR_KEY_CHARS])));
        let e_acute = format!("# {}", "é".repeat(300));
        assert_eq!(ok(&e_acute), Err(invalid(&e_acute.chars().take(256).collect::<String>())));

        // Options: refused unless the policy allows them.
        let options =
            OpError::Denied { rule: "ssh.allow_options: key options are not accepted".into() };
        let with_options = [
            format!("command=\"echo hi there\" {ED1}"),
            format!("no-pty,from=\"10.0.0.0/8\" {ED1}"),
            format!("command=\"a \\\" b\" {ED1}"),
        ];
        let allowing = SshGrant { allow_options: true, ..grant() };
        for key in &with_options {
            assert_eq!(ok(key), Err(options.clone()), "{key}");
            assert_eq!(check_key_to_add(&sent(key), &allowing), Ok(()), "{key}");
        }

        // Types the policy does not list.
        let types = OpError::Denied { rule: "ssh.key_types: this key type is not accepted".into() };
        let only_ed = SshGrant { key_types: vec!["ssh-ed25519".into()], allow_options: true };
        assert_eq!(check_key_to_add(&sent(RSA), &only_ed), Err(types.clone()));
        assert_eq!(
            check_key_to_add(&sent(&format!("from=\"x\" {EC}")), &only_ed),
            Err(types.clone())
        );
        let blob = [&b"\0\0\0\x07ssh-dss"[..], &[1, 2, 3]].concat();
        assert_eq!(ok(&format!("ssh-dss {}", STANDARD.encode(blob))), Err(types.clone()));
        let blob = [&b"\0\0\0\x0dssh-foo@x.org"[..], &[1]].concat();
        assert_eq!(ok(&format!("ssh-foo@x.org {} c", STANDARD.encode(blob))), Err(types));

        // A frontend that sends no blob, or another key's, gets the line
        // refused: the broker checks the blob against the line.
        let lying = |blob: Option<ipc::Bytes>| SshKey { line: ED1.into(), blob };
        assert_eq!(check_key_to_add(&lying(None), &g), Err(invalid(ED1)));
        assert_eq!(check_key_to_add(&lying(sent(ED2).blob), &g), Err(invalid(ED1)));
    }

    #[test]
    fn ssh_keys_to_remove_are_checked_as_qemu_ga_does() {
        for key in ["", "a", "from=\"x\" junk", "line\r", " # not a comment"] {
            assert_eq!(check_key_to_remove(key), Ok(()), "{key:?}");
        }
        for key in ["#", "# a", "a\nb", "a\0b", &"a".repeat(MAX_KEY_LEN + 1)] {
            assert!(matches!(check_key_to_remove(key), Err(OpError::SshInvalidKey { .. })));
        }
    }

    #[test]
    fn ssh_requests_check_keys_before_the_account() {
        let user = "qga-warden-no-such-user";
        let no_user = Err(OpError::SshNoUser { username: user.into() });
        assert_eq!(
            add_authorized_keys(user, &sent_all(&[ED1, "#x"]), false, &grant()),
            Err(OpError::SshInvalidKey { key: "#x".into() })
        );
        assert_eq!(add_authorized_keys(user, &sent_all(&[ED1]), false, &grant()), no_user);
        assert_eq!(
            remove_authorized_keys(user, &sent_all(&["a\nb"]), &grant()),
            Err(OpError::SshInvalidKey { key: "a\nb".into() })
        );
        assert_eq!(remove_authorized_keys(user, &sent_all(&["junk"]), &grant()), no_user);
        assert_eq!(get_authorized_keys(user), no_user);
    }

    #[test]
    fn ssh_fingerprints_match_ssh_keygen() {
        // The audit trail's fingerprints of the keys these tests use.
        let fingerprint = |line: &str| policy::audit::ssh_fingerprint(&sent(line));
        assert_eq!(fingerprint(ED1), ED1_FP);
        assert_eq!(fingerprint(ED2), ED2_FP);
        assert_eq!(fingerprint(EC), EC_FP);
        assert_eq!(fingerprint(RSA), RSA_FP);
        assert_eq!(fingerprint(&format!("command=\"x y\" {ED1}")), ED1_FP);
        assert!(fingerprint("ssh-ed25519 nonsense").starts_with("line-sha256:"));
    }
}
