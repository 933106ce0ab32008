//! guest-file-*: files opened by the broker beneath the directory the policy
//! names, with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS) (or, on kernels before 5.6, a walk that opens each
//! component with O_NOFOLLOW), never by comparing path strings. Handles are
//! numbered as qemu-ga numbers them (from 1000, persisted in the state
//! directory so that a restarted agent never reuses one), and stay open until
//! closed or the agent exits, whatever happens to the host's connection.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use ipc::{FileMode, FileOp, OpError, Response};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Whence, lseek};
use policy::FileGrant;

use crate::log::warning;

/// qemu-ga's first handle.
const FIRST_HANDLE: i64 = 1000;
/// guest-file-read's count when none is given.
const DEFAULT_READ: i64 = 4096;
/// Created files are private to their owner (root): qemu-ga makes them 0666.
pub const NEW_FILE_MODE: u32 = 0o600;

pub struct Files {
    open: BTreeMap<i64, File>,
    next: i64,
    /// Where the next handle number is kept; `None` once it could not be written.
    state: Option<PathBuf>,
    /// A large read buffer that has been sent, kept briefly for the next
    /// read (a host reading a file reads again at once; faulting in tens of
    /// MiB of fresh pages per read would cost more than the copy itself).
    spare: Option<(Vec<u8>, Instant)>,
}

/// Buffers smaller than this are not worth keeping.
const SPARE_MIN: usize = 1024 * 1024;
/// How long a spare buffer is kept without a read taking it.
const SPARE_KEPT: Duration = Duration::from_secs(2);

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(nix::libc::EIO)
}

impl Files {
    pub fn new(statedir: &Path) -> Files {
        let state = statedir.join("qga-warden.state");
        let next = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("next_handle=")?.trim().parse().ok())
            })
            .filter(|&n: &i64| n >= FIRST_HANDLE)
            .unwrap_or(FIRST_HANDLE);
        Files { open: BTreeMap::new(), next, state: Some(state), spare: None }
    }

    /// Takes the next handle number and records the one after it.
    fn take_handle(&mut self) -> i64 {
        let handle = self.next;
        self.next = self.next.saturating_add(1);
        if let Some(path) = &self.state {
            let text = format!("next_handle={}\n", self.next);
            let tmp = path.with_extension("state.tmp");
            let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                warning!(
                    "cannot record the next file handle in {} ({e}); handles restart at {FIRST_HANDLE} with the agent",
                    path.display()
                );
                self.state = None;
            }
        }
        handle
    }

    fn get(&mut self, handle: i64) -> Result<&mut File, OpError> {
        self.open.get_mut(&handle).ok_or(OpError::HandleNotFound(handle))
    }

    pub fn open(
        &mut self,
        path: &str,
        mode: FileMode,
        grant: &FileGrant,
    ) -> Result<Response, OpError> {
        if self.open.len() >= grant.max_handles as usize {
            return Err(OpError::TooManyHandles { max: grant.max_handles });
        }
        let fail =
            |errno: Errno| OpError::FileOpen { path: path.to_owned(), mode, errno: errno as i32 };
        let file =
            open_beneath(&grant.base, &grant.relative, mode, grant.may_create).map_err(fail)?;
        let handle = self.take_handle();
        self.open.insert(handle, file);
        Ok(Response::Int(handle))
    }

    pub fn close(&mut self, handle: i64) -> Result<Response, OpError> {
        let file = self.open.remove(&handle).ok_or(OpError::HandleNotFound(handle))?;
        let fd: OwnedFd = file.into();
        nix::unistd::close(fd)
            .map_err(|e| OpError::FileIo { op: FileOp::Close, errno: e as i32 })?;
        Ok(Response::Empty)
    }

    /// The bytes read and whether the end of the file was reached.
    pub fn read(&mut self, handle: i64, count: Option<i64>) -> Result<(Vec<u8>, bool), OpError> {
        self.get(handle)?;
        let count = count.unwrap_or(DEFAULT_READ);
        if !(0..=ipc::limits::MAX_BULK_LEN as i64).contains(&count) {
            return Err(OpError::InvalidCount(count));
        }
        let want = count as usize;
        let mut data = match self.spare.take() {
            Some((mut spare, _)) if spare.capacity() >= want => {
                spare.clear();
                spare
            }
            _ => Vec::with_capacity(want),
        };
        let file = self.get(handle)?;
        // Reads until `want` bytes or the end of the file: fewer means the end
        // was reached, which is when qemu-ga reports eof.
        let eof = match (&*file).take(want as u64).read_to_end(&mut data) {
            Ok(_) => data.len() < want,
            // A pipe or terminal with nothing more for now: what was read is
            // returned (qemu-ga would fail and lose it).
            Err(e) if e.kind() == ErrorKind::WouldBlock && !data.is_empty() => false,
            Err(e) => return Err(OpError::FileIo { op: FileOp::Read, errno: io_errno(&e) }),
        };
        Ok((data, eof))
    }

    /// Takes back the buffer of a read that has been sent.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() >= SPARE_MIN {
            self.spare = Some((buf, Instant::now() + SPARE_KEPT));
        }
    }

    /// When the spare buffer is to be given back, if one is kept.
    pub fn spare_deadline(&self) -> Option<Instant> {
        self.spare.as_ref().map(|(_, at)| *at)
    }

    /// Gives the spare buffer back once its time is up.
    pub fn expire_spare(&mut self, now: Instant) {
        if self.spare_deadline().is_some_and(|at| at <= now) {
            self.spare = None;
        }
    }

    pub fn write(
        &mut self,
        handle: i64,
        data: &[u8],
        count: Option<i64>,
    ) -> Result<Response, OpError> {
        let file = self.get(handle)?;
        let count = match count {
            None => data.len(),
            Some(c) if (0..=data.len() as i64).contains(&c) => c as usize,
            Some(c) => return Err(OpError::InvalidCount(c)),
        };
        let mut written = 0;
        while written < count {
            match file.write(&data[written..count]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock && written > 0 => break,
                Err(e) => return Err(OpError::FileIo { op: FileOp::Write, errno: io_errno(&e) }),
            }
        }
        Ok(Response::FileWrite { count: written as u64, eof: false })
    }

    pub fn seek(&mut self, handle: i64, offset: i64, whence: i64) -> Result<Response, OpError> {
        let file = self.get(handle)?;
        let whence = match whence {
            0 => Whence::SeekSet,
            1 => Whence::SeekCur,
            2 => Whence::SeekEnd,
            other => return Err(OpError::InvalidWhence(other)),
        };
        let position = lseek(file.as_fd(), offset, whence)
            .map_err(|e| OpError::FileIo { op: FileOp::Seek, errno: e as i32 })?;
        Ok(Response::FileSeek { position, eof: false })
    }

    /// Writes go straight to the kernel (nothing is buffered in the agent),
    /// so a flush has nothing to do beyond finding the handle.
    pub fn flush(&mut self, handle: i64) -> Result<Response, OpError> {
        self.get(handle)?;
        Ok(Response::Empty)
    }
}

fn access_flags(mode: FileMode) -> OFlag {
    use FileMode::*;
    match mode {
        R | Rb => OFlag::O_RDONLY,
        RPlus | RbPlus | RPlusB => OFlag::O_RDWR,
        W | Wb => OFlag::O_WRONLY | OFlag::O_TRUNC,
        WPlus | WbPlus | WPlusB => OFlag::O_RDWR | OFlag::O_TRUNC,
        A | Ab => OFlag::O_WRONLY | OFlag::O_APPEND,
        APlus | AbPlus | APlusB => OFlag::O_RDWR | OFlag::O_APPEND,
    }
}

fn creates(mode: FileMode) -> bool {
    !matches!(
        mode,
        FileMode::R | FileMode::Rb | FileMode::RPlus | FileMode::RbPlus | FileMode::RPlusB
    )
}

/// Opens `relative` beneath `base`, refusing any symlink and any escape.
pub fn open_beneath(
    base: &Path,
    relative: &Path,
    mode: FileMode,
    may_create: bool,
) -> Result<File, Errno> {
    // The policy never grants a relative path with '..' or a root; check again.
    if relative.as_os_str().is_empty()
        || !relative.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(Errno::EXDEV);
    }
    let dir = open(base, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let flags = access_flags(mode) | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let create = may_create && creates(mode);
    let new_mode = Mode::from_bits_truncate(NEW_FILE_MODE);
    let fd = if create {
        // Created exclusively, so that the mode is set on our file and no
        // other; if it exists, it is opened as it is.
        match open_at(&dir, relative, flags | OFlag::O_CREAT | OFlag::O_EXCL, new_mode) {
            Ok(fd) => {
                fchmod(&fd, new_mode)?;
                fd
            }
            Err(Errno::EEXIST) => open_at(&dir, relative, flags, Mode::empty())?,
            Err(e) => return Err(e),
        }
    } else {
        open_at(&dir, relative, flags, Mode::empty())?
    };
    Ok(File::from(fd))
}

fn open_at(dir: &OwnedFd, relative: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new().flags(flags).mode(mode).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    match openat2(dir, relative, how) {
        Err(Errno::ENOSYS) => walk_nofollow(dir, relative, flags, mode),
        other => other,
    }
}

/// The same without openat2: every directory component opened with
/// O_NOFOLLOW | O_DIRECTORY, the file itself with O_NOFOLLOW.
fn walk_nofollow(
    dir: &OwnedFd,
    relative: &Path,
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let parts: Vec<&std::ffi::OsStr> = relative.iter().collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Errno::EXDEV);
    };
    let mut current: Option<OwnedFd> = None;
    for part in dirs {
        let at = current.as_ref().unwrap_or(dir);
        let next = openat(
            at,
            *part,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        current = Some(next);
    }
    let at = current.as_ref().unwrap_or(dir);
    openat(at, *last, flags | OFlag::O_NOFOLLOW, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn scratch(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("qga-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("base/sub")).expect("mkdir");
        Dir(d)
    }
    fn grant(base: &Path, rel: &str, may_create: bool) -> FileGrant {
        FileGrant {
            base: base.to_owned(),
            relative: PathBuf::from(rel),
            may_create,
            max_handles: 4,
        }
    }

    #[test]
    fn symlinks_and_escapes_are_refused_by_the_kernel() {
        let d = scratch("links");
        let base = d.0.join("base");
        std::fs::write(d.0.join("secret"), b"outside").expect("write");
        std::os::unix::fs::symlink(d.0.join("secret"), base.join("link")).expect("symlink");
        std::os::unix::fs::symlink("..", base.join("sub/up")).expect("symlink");
        std::os::unix::fs::symlink(&d.0, base.join("dirlink")).expect("symlink");
        for rel in ["link", "sub/up/base/link", "dirlink/secret"] {
            let r = open_beneath(&base, Path::new(rel), FileMode::R, false);
            assert!(r.is_err(), "{rel} opened");
        }
        for rel in ["../secret", "/etc/passwd", ""] {
            assert_eq!(
                open_beneath(&base, Path::new(rel), FileMode::R, false).err(),
                Some(Errno::EXDEV)
            );
        }
        // The walk used on old kernels refuses the same.
        let dir = open(&base, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).expect("dir");
        for rel in ["link", "dirlink/secret", "sub/up/base/link"] {
            assert!(
                walk_nofollow(&dir, Path::new(rel), OFlag::O_RDONLY, Mode::empty()).is_err(),
                "{rel}"
            );
        }
        std::fs::write(base.join("sub/ok"), b"fine").expect("write");
        assert!(walk_nofollow(&dir, Path::new("sub/ok"), OFlag::O_RDONLY, Mode::empty()).is_ok());
    }

    #[test]
    fn modes_reads_writes_seeks() {
        let d = scratch("modes");
        let base = d.0.join("base");
        let mut files = Files::new(&d.0);
        let Ok(Response::Int(h)) =
            files.open("/x/new", FileMode::WPlus, &grant(&base, "new", true))
        else {
            panic!("open w+")
        };
        assert_eq!(h, FIRST_HANDLE);
        use std::os::unix::fs::PermissionsExt;
        let perm = std::fs::metadata(base.join("new")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(perm, NEW_FILE_MODE);
        assert_eq!(
            files.write(h, b"hello world", Some(5)),
            Ok(Response::FileWrite { count: 5, eof: false })
        );
        assert_eq!(files.write(h, b"abc", Some(4)), Err(OpError::InvalidCount(4)));
        assert_eq!(files.seek(h, 0, 0), Ok(Response::FileSeek { position: 0, eof: false }));
        assert_eq!(files.seek(h, 0, 7), Err(OpError::InvalidWhence(7)));
        assert_eq!(files.read(h, Some(5)), Ok((b"hello".to_vec(), false)));
        assert_eq!(files.read(h, Some(5)), Ok((vec![], true)));
        assert_eq!(files.read(h, Some(-1)), Err(OpError::InvalidCount(-1)));
        assert_eq!(files.read(h, Some(50_331_649)), Err(OpError::InvalidCount(50_331_649)));
        assert_eq!(
            files.read(999, Some(-1)),
            Err(OpError::HandleNotFound(999)),
            "the handle is looked up first"
        );
        assert_eq!(files.close(h), Ok(Response::Empty));
        assert_eq!(files.close(h), Err(OpError::HandleNotFound(h)));
        // Without create, a missing file is ENOENT even for "w".
        assert_eq!(
            files.open("/x/none", FileMode::W, &grant(&base, "none", false)),
            Err(OpError::FileOpen {
                path: "/x/none".into(),
                mode: FileMode::W,
                errno: Errno::ENOENT as i32
            })
        );
        // Read-only handles refuse writes as qemu-ga's do.
        let Ok(Response::Int(r)) = files.open("/x/new", FileMode::R, &grant(&base, "new", false))
        else {
            panic!("open r")
        };
        assert_eq!(r, FIRST_HANDLE + 1, "handles are never reused");
        assert_eq!(
            files.write(r, b"x", None),
            Err(OpError::FileIo { op: FileOp::Write, errno: Errno::EBADF as i32 })
        );
        // Handle numbers survive the agent.
        drop(files);
        let files = Files::new(&d.0);
        assert_eq!(files.next, FIRST_HANDLE + 2);
    }

    #[test]
    fn the_handle_cap_holds() {
        let d = scratch("cap");
        let base = d.0.join("base");
        std::fs::write(base.join("f"), b"x").expect("write");
        let mut files = Files::new(&d.0);
        for _ in 0..4 {
            assert!(files.open("/f", FileMode::R, &grant(&base, "f", false)).is_ok());
        }
        assert_eq!(
            files.open("/f", FileMode::R, &grant(&base, "f", false)),
            Err(OpError::TooManyHandles { max: 4 })
        );
    }
}
