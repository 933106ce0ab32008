//! guest-get-vcpus, guest-set-vcpus, guest-get-memory-blocks,
//! guest-set-memory-blocks, guest-get-memory-block-info, as qemu-ga 7.2 does
//! them on Linux (qga/commands-posix.c: transfer_vcpu, transfer_memory_block
//! and their callers), on the tree under `root` (`/sys/devices/system` in
//! production; tests pass a fake one).
//!
//! qemu-ga's quirks are kept on purpose: directory entries in readdir order,
//! `cpuN` matched as `sscanf(name, "cpu%ld")` matches it (so `cpu1abc` is
//! processor 1), paths rebuilt from the parsed number, a processor without an
//! `online` file reported online and not offlinable, and the memory block
//! responses and error codes exactly as its `goto` paths leave them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ipc::{LogicalProcessor, MemoryBlock, MemoryBlockResponse, MemoryBlockResponseType, OpError};
use nix::libc::{EIO, ENOENT, O_DIRECTORY};

/// Where the kernel exposes CPUs and memory blocks.
pub const SYSTEM: &str = "/sys/devices/system";

/// qemu-ga's guest-get-vcpus: every `cpu%ld` entry of `root/cpu`, in
/// directory order.
pub fn get_vcpus(root: &Path) -> Result<Vec<LogicalProcessor>, OpError> {
    let cpu = SysPath::new(root, "cpu");
    let entries = std::fs::read_dir(&cpu.path)
        .map_err(|e| sysfs(format!("failed to list entries: {}", cpu.text), &e))?;
    let mut out = Vec::new();
    for entry in entries {
        // g_dir_read_name() ends the listing on a read error.
        let Ok(entry) = entry else { break };
        let Some(id) = scan_cpu_id(entry.file_name().as_bytes()) else { continue };
        let (online, can_offline) = read_vcpu(root, id)?;
        out.push(LogicalProcessor { logical_id: id, online, can_offline: Some(can_offline) });
    }
    // qemu-ga asserts that there is at least one (and aborts otherwise); an
    // empty list is returned here instead.
    Ok(out)
}

/// qemu-ga's guest-set-vcpus: applies `vcpus` in order and returns how many
/// were processed. An error on the first is returned; a later one ends the
/// processing and is dropped.
///
/// When `min_online` is not 0, the request is first applied to the current
/// state (as guest-get-vcpus reads it, a processor without `online` counting
/// as online), stopping where qemu-ga would certainly stop (an unknown
/// processor, or offlining one without `online`); if fewer than `min_online`
/// would then be online, nothing is changed.
pub fn set_vcpus(root: &Path, vcpus: &[LogicalProcessor], min_online: u32) -> Result<i64, OpError> {
    if min_online > 0 {
        let current = get_vcpus(root)?;
        if online_after(&current, vcpus) < u64::from(min_online) {
            return Err(OpError::TooFewVcpus { min: min_online });
        }
    }
    let mut processed = 0;
    for vcpu in vcpus {
        if let Err(e) = write_vcpu(root, vcpu) {
            if processed == 0 {
                return Err(e);
            }
            break;
        }
        processed += 1;
    }
    Ok(processed)
}

/// qemu-ga's guest-get-memory-blocks: every `memory*` directory of
/// `root/memory`, in directory order. No `memory` directory at all gives an
/// empty list (qemu-ga returns no list and no error).
pub fn get_memory_blocks(root: &Path) -> Result<Vec<MemoryBlock>, OpError> {
    let memory = SysPath::new(root, "memory/");
    let entries = match std::fs::read_dir(&memory.path) {
        Ok(entries) => entries,
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(sysfs(format!("Can't open directory\"{}\"", memory.text), &e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        // readdir() returning NULL on an error ends the loop.
        let Ok(entry) = entry else { break };
        let name = entry.file_name();
        let Some(digits) = name.as_bytes().strip_prefix(b"memory") else { continue };
        // qemu-ga tests `d_type & DT_DIR`, which DT_BLK and DT_SOCK pass too.
        let Ok(kind) = entry.file_type() else { continue };
        if !(kind.is_dir() || kind.is_block_device() || kind.is_socket()) {
            continue;
        }
        out.push(read_memory_block(root, strtoul(digits))?);
    }
    if out.is_empty() {
        return Err(OpError::SysfsText {
            message: "guest reported zero memory blocks!".to_owned(),
        });
    }
    Ok(out)
}

/// qemu-ga's guest-set-memory-blocks: one response per block, in order; it
/// never fails as a whole.
pub fn set_memory_blocks(
    root: &Path,
    blocks: &[MemoryBlock],
) -> Result<Vec<MemoryBlockResponse>, OpError> {
    Ok(blocks
        .iter()
        .map(|block| {
            let (response, error_code) = write_memory_block(root, block);
            MemoryBlockResponse { phys_index: block.phys_index, response, error_code }
        })
        .collect())
}

/// qemu-ga's guest-get-memory-block-info: `memory/block_size_bytes`, in hex.
pub fn get_memory_block_info(root: &Path) -> Result<u64, OpError> {
    let memory = SysPath::new(root, "memory/");
    let _dirfd =
        open_dir(&memory.path).map_err(|e| sysfs(format!("open(\"{}\")", memory.text), &e))?;
    let mut buf = [0u8; 20];
    let n = read_sysfs_file(&memory, "block_size_bytes", &mut buf).map_err(|(e, _)| e)?;
    // `info->size = strtol(buf, NULL, 16)`: a negative value wraps.
    Ok(strtol16(&buf[..n]) as u64)
}

/// A path under `root`, as opened and as qemu-ga quotes it (built by
/// appending text, so that `/sys/devices/system` gives qemu-ga's strings).
struct SysPath {
    path: PathBuf,
    text: String,
}

impl SysPath {
    fn new(root: &Path, rel: &str) -> SysPath {
        let mut path = OsString::from(root.as_os_str());
        path.push("/");
        path.push(rel);
        SysPath { path: PathBuf::from(path), text: format!("{}/{rel}", root.display()) }
    }

    /// `"%s/%s"` of this path and `name` (a doubled slash when this one ends
    /// with one, as in qemu-ga's texts).
    fn child(&self, name: &str) -> SysPath {
        let mut path = self.path.clone().into_os_string();
        path.push("/");
        path.push(name);
        SysPath { path: PathBuf::from(path), text: format!("{}/{name}", self.text) }
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(EIO)
}

fn sysfs(what: String, e: &io::Error) -> OpError {
    OpError::Sysfs { what, errno: errno(e) }
}

/// `open(path, O_RDONLY | O_DIRECTORY)`.
fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(O_DIRECTORY).open(path)
}

/// `/…/cpu/cpuN/` as qemu-ga builds it.
fn vcpu_dir(root: &Path, id: i64) -> SysPath {
    SysPath::new(root, &format!("cpu/cpu{id}/"))
}

/// One byte of a processor's `online` file, read as transfer_vcpu does.
fn read_online(file: &File, online: &SysPath) -> Result<u8, OpError> {
    let mut status = [0u8; 1];
    match file.read_at(&mut status, 0) {
        Err(e) => Err(sysfs(format!("pread(\"{}\")", online.text), &e)),
        Ok(0) => Err(OpError::SysfsText {
            message: format!("pread(\"{}\"): unexpected EOF", online.text),
        }),
        Ok(_) => Ok(status[0]),
    }
}

/// transfer_vcpu from the system: (online, can offline).
fn read_vcpu(root: &Path, id: i64) -> Result<(bool, bool), OpError> {
    let dir = vcpu_dir(root, id);
    let _dirfd = open_dir(&dir.path).map_err(|e| sysfs(format!("open(\"{}\")", dir.text), &e))?;
    let online = dir.child("online");
    match File::open(&online.path) {
        Err(e) if e.raw_os_error() == Some(ENOENT) => Ok((true, false)),
        Err(e) => Err(sysfs(format!("open(\"{}\")", online.text), &e)),
        Ok(file) => Ok((read_online(&file, &online)? != b'0', true)),
    }
}

/// transfer_vcpu to the system: writes `online` only when it differs.
fn write_vcpu(root: &Path, vcpu: &LogicalProcessor) -> Result<(), OpError> {
    let dir = vcpu_dir(root, vcpu.logical_id);
    let _dirfd = open_dir(&dir.path).map_err(|e| sysfs(format!("open(\"{}\")", dir.text), &e))?;
    let online = dir.child("online");
    match OpenOptions::new().read(true).write(true).open(&online.path) {
        Err(e) if e.raw_os_error() == Some(ENOENT) => {
            if vcpu.online {
                // qemu-ga pretends a successful re-onlining.
                Ok(())
            } else {
                Err(OpError::VcpuCannotOffline { id: vcpu.logical_id })
            }
        }
        Err(e) => Err(sysfs(format!("open(\"{}\")", online.text), &e)),
        Ok(file) => {
            let status = read_online(&file, &online)?;
            if vcpu.online != (status != b'0') {
                let status = if vcpu.online { b'1' } else { b'0' };
                // Only a failure counts, as qemu-ga checks `== -1`.
                file.write_at(&[status], 0)
                    .map_err(|e| sysfs(format!("pwrite(\"{}\")", online.text), &e))?;
            }
            Ok(())
        }
    }
}

/// How many processors would be online once `request` is applied to
/// `current`, up to the first item qemu-ga would certainly stop at.
fn online_after(current: &[LogicalProcessor], request: &[LogicalProcessor]) -> u64 {
    // id → (online, has an `online` file); a duplicate id reads the same path.
    let mut state: BTreeMap<i64, (bool, bool)> = BTreeMap::new();
    for cpu in current {
        state.entry(cpu.logical_id).or_insert((cpu.online, cpu.can_offline != Some(false)));
    }
    for vcpu in request {
        match state.get_mut(&vcpu.logical_id) {
            None => break,
            Some((_, false)) if !vcpu.online => break,
            Some((_, false)) => {}
            Some((online, true)) => *online = vcpu.online,
        }
    }
    state.values().filter(|(online, _)| *online).count() as u64
}

/// ga_read_sysfs_file: reads up to `buf.len()` bytes of `dir/name`. The error
/// comes with the value errno has afterwards (0 for an empty file).
fn read_sysfs_file(dir: &SysPath, name: &str, buf: &mut [u8]) -> Result<usize, (OpError, i32)> {
    let file = File::open(dir.child(name).path)
        .map_err(|e| (sysfs(format!("open sysfs file \"{name}\""), &e), errno(&e)))?;
    match file.read_at(buf, 0) {
        Err(e) => Err((sysfs(format!("pread sysfs file \"{name}\""), &e), errno(&e))),
        Ok(0) => Err((
            OpError::SysfsText { message: format!("pread sysfs file \"{name}\": unexpected EOF") },
            0,
        )),
        Ok(n) => Ok(n),
    }
}

/// ga_write_sysfs_file: `data` at offset 0 of `dir/name` opened write-only;
/// the error is errno.
fn write_sysfs_file(dir: &SysPath, name: &str, data: &[u8]) -> Result<(), i32> {
    let file = OpenOptions::new().write(true).open(dir.child(name).path).map_err(|e| errno(&e))?;
    file.write_at(data, 0).map(drop).map_err(|e| errno(&e))
}

/// `/…/memory/memoryN/`, the index printed with PRId64 as qemu-ga does.
fn memory_block_dir(root: &Path, phys_index: u64) -> SysPath {
    SysPath::new(root, &format!("memory/memory{}/", phys_index as i64))
}

/// transfer_memory_block from the system.
fn read_memory_block(root: &Path, phys_index: u64) -> Result<MemoryBlock, OpError> {
    let dir = memory_block_dir(root, phys_index);
    let _dirfd = open_dir(&dir.path).map_err(|e| sysfs(format!("open(\"{}\")", dir.text), &e))?;
    let mut status = [0u8; 10];
    match read_sysfs_file(&dir, "state", &mut status) {
        // "treat with sysfs file that not exist in old kernel"
        Err((_, ENOENT)) => {
            return Ok(MemoryBlock { phys_index, online: true, can_offline: Some(false) });
        }
        Err((e, _)) => return Err(e),
        Ok(_) => {}
    }
    let online = status.starts_with(b"online");
    let mut removable = [b'0'];
    let can_offline = match read_sysfs_file(&dir, "removable", &mut removable) {
        Err((_, ENOENT)) => false,
        Err((e, _)) => return Err(e),
        Ok(_) => removable[0] != b'0',
    };
    Ok(MemoryBlock { phys_index, online, can_offline: Some(can_offline) })
}

/// transfer_memory_block to the system: the response and error code as
/// qemu-ga leaves them. Its result starts zeroed (success, no error code);
/// every path through its `out1` label sets the error code to errno whatever
/// the response, and a write clears it.
fn write_memory_block(root: &Path, block: &MemoryBlock) -> (MemoryBlockResponseType, Option<i64>) {
    use MemoryBlockResponseType::{NotFound, OperationFailed, OperationNotSupported, Success};

    let memory = SysPath::new(root, "memory/");
    if let Err(e) = std::fs::read_dir(&memory.path) {
        let errno = errno(&e);
        // Only ENOENT changes the response.
        let response = if errno == ENOENT { OperationNotSupported } else { Success };
        return (response, Some(errno.into()));
    }
    let dir = memory_block_dir(root, block.phys_index);
    let _dirfd = match open_dir(&dir.path) {
        Ok(dirfd) => dirfd,
        Err(e) => {
            let errno = errno(&e);
            let response = if errno == ENOENT { NotFound } else { OperationFailed };
            return (response, Some(errno.into()));
        }
    };
    let mut status = [0u8; 10];
    match read_sysfs_file(&dir, "state", &mut status) {
        Err((_, ENOENT)) => {
            let response = if block.online { Success } else { OperationNotSupported };
            return (response, Some(ENOENT.into()));
        }
        Err((_, errno)) => return (OperationFailed, Some(errno.into())),
        Ok(_) => {}
    }
    if block.online != status.starts_with(b"online") {
        let state: &[u8] = if block.online { b"online" } else { b"offline" };
        if let Err(errno) = write_sysfs_file(&dir, "state", state) {
            return (OperationFailed, Some(errno.into()));
        }
    }
    // Written, or qemu-ga's "pretend successful re-(on|off)-lining".
    (Success, None)
}

/// What strtol/strtoul see at the start of `s`: white space, a sign, then
/// digits in `base` (after an optional `0x` in base 16). Returns whether the
/// sign was `-`, the digits' value (`None` past u64), and whether there was a
/// digit.
fn c_number(s: &[u8], base: u32) -> (bool, Option<u64>, bool) {
    let mut s = s;
    while let [b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r', rest @ ..] = s {
        s = rest;
    }
    let negative = s.first() == Some(&b'-');
    if let [b'+' | b'-', rest @ ..] = s {
        s = rest;
    }
    if base == 16 {
        if let [b'0', b'x' | b'X', rest @ ..] = s {
            if rest.first().is_some_and(u8::is_ascii_hexdigit) {
                s = rest;
            }
        }
    }
    let mut value = Some(0u64);
    let mut any = false;
    for &c in s {
        let Some(digit) = char::from(c).to_digit(base) else { break };
        any = true;
        value = value
            .and_then(|v| v.checked_mul(u64::from(base)))
            .and_then(|v| v.checked_add(u64::from(digit)));
    }
    (negative, value, any)
}

/// A signed long from the parts c_number gives, saturating as glibc does.
fn to_long(negative: bool, value: Option<u64>) -> i64 {
    match (negative, value) {
        (false, Some(v)) => i64::try_from(v).unwrap_or(i64::MAX),
        (false, None) => i64::MAX,
        (true, Some(v)) if v <= 1 << 63 => 0i64.wrapping_sub_unsigned(v),
        (true, _) => i64::MIN,
    }
}

/// `sscanf(name, "cpu%ld", &id)` when it converts the number. (It returns
/// EOF, which qemu-ga takes for a match with an unset id, when the name ends
/// within `cpu` or right after it and white space; such names are skipped.)
fn scan_cpu_id(name: &[u8]) -> Option<i64> {
    let (negative, value, any) = c_number(name.strip_prefix(b"cpu")?, 10);
    any.then(|| to_long(negative, value))
}

/// `strtoul(s, NULL, 10)`.
fn strtoul(s: &[u8]) -> u64 {
    match c_number(s, 10) {
        (_, None, _) => u64::MAX,
        (true, Some(v), _) => v.wrapping_neg(),
        (false, Some(v), _) => v,
    }
}

/// `strtol(s, NULL, 16)`.
fn strtol16(s: &[u8]) -> i64 {
    let (negative, value, _) = c_number(s, 16);
    to_long(negative, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime};

    use nix::libc::{EISDIR, ENOSPC, ENOTDIR};

    /// A fake `/sys/devices/system` in a fresh temporary directory, removed
    /// when dropped.
    struct Tree {
        root: PathBuf,
    }

    impl Tree {
        fn new() -> Tree {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let root = std::env::temp_dir()
                .join(format!("qga-warden-hotplug-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).expect("create the tree");
            Tree { root }
        }

        /// cpu0 without `online`, cpu1 online, cpu2 offline, and entries
        /// that are not processors.
        fn with_cpus() -> Tree {
            let t = Tree::new();
            t.dir("cpu/cpu0");
            t.file("cpu/cpu1/online", "1\n");
            t.file("cpu/cpu2/online", "0\n");
            t.dir("cpu/cpufreq");
            t.dir("cpu/cpuidle");
            t.dir("cpu/hotplug");
            t.file("cpu/online", "0-1\n");
            t.file("cpu/possible", "0-2\n");
            t.file("cpu/kernel_max", "8191\n");
            t
        }

        /// memory0 online and removable, memory1 offline and not removable,
        /// memory2 without `removable`, memory3 without `state`, and entries
        /// that are not blocks.
        fn with_memory() -> Tree {
            let t = Tree::new();
            t.file("memory/block_size_bytes", "8000000\n");
            t.file("memory/auto_online_blocks", "offline\n");
            t.file("memory/probe", "");
            t.dir("memory/power");
            t.file("memory/memory0/state", "online\n");
            t.file("memory/memory0/removable", "1\n");
            t.file("memory/memory1/state", "offline\n");
            t.file("memory/memory1/removable", "0\n");
            t.file("memory/memory2/state", "online\n");
            t.file("memory/memory3/removable", "1\n");
            // Not a directory: not a block.
            t.file("memory/memory99", "");
            t
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.root.join(rel)
        }

        fn dir(&self, rel: &str) {
            std::fs::create_dir_all(self.path(rel)).expect("mkdir");
        }

        fn file(&self, rel: &str, contents: &str) {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, contents).expect("write");
        }

        fn link(&self, rel: &str, target: &str) {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::os::unix::fs::symlink(target, path).expect("symlink");
        }

        fn read(&self, rel: &str) -> String {
            std::fs::read_to_string(self.path(rel)).expect("read")
        }

        /// Sets the file's modification time to a known old value, so that a
        /// write shows.
        fn age(&self, rel: &str) {
            let file = OpenOptions::new().write(true).open(self.path(rel)).expect("open");
            file.set_modified(old()).expect("set mtime");
        }

        fn written(&self, rel: &str) -> bool {
            std::fs::metadata(self.path(rel)).and_then(|m| m.modified()).expect("mtime") != old()
        }

        /// The names of `dir`'s entries in the order read_dir gives them.
        fn order(&self, dir: &str) -> Vec<String> {
            std::fs::read_dir(self.path(dir))
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        }

        fn text(&self) -> String {
            self.root.display().to_string()
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// A modification time no write leaves.
    fn old() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1000)
    }

    fn cpu(logical_id: i64, online: bool) -> LogicalProcessor {
        LogicalProcessor { logical_id, online, can_offline: None }
    }

    fn block(phys_index: u64, online: bool) -> MemoryBlock {
        MemoryBlock { phys_index, online, can_offline: None }
    }

    fn response(
        phys_index: u64,
        response: MemoryBlockResponseType,
        error_code: Option<i32>,
    ) -> MemoryBlockResponse {
        MemoryBlockResponse { phys_index, response, error_code: error_code.map(i64::from) }
    }

    #[test]
    fn get_vcpus_in_directory_order() {
        let t = Tree::with_cpus();
        let expected: Vec<LogicalProcessor> = t
            .order("cpu")
            .iter()
            .filter_map(|name| match name.as_str() {
                "cpu0" => {
                    Some(LogicalProcessor { logical_id: 0, online: true, can_offline: Some(false) })
                }
                "cpu1" => {
                    Some(LogicalProcessor { logical_id: 1, online: true, can_offline: Some(true) })
                }
                "cpu2" => {
                    Some(LogicalProcessor { logical_id: 2, online: false, can_offline: Some(true) })
                }
                _ => None,
            })
            .collect();
        assert_eq!(expected.len(), 3);
        assert_eq!(get_vcpus(&t.root), Ok(expected));
    }

    #[test]
    fn get_vcpus_matches_names_as_sscanf() {
        let t = Tree::with_cpus();
        // "cpu%ld" converts the 1 and stops: processor 1 again, read from cpu1/.
        t.dir("cpu/cpu1abc");
        // A sign is part of %ld; the path is rebuilt from the number.
        t.file("cpu/cpu-3/online", "1\n");
        let got = get_vcpus(&t.root).expect("get");
        let mut ids: Vec<i64> = got.iter().map(|c| c.logical_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [-3, 0, 1, 1, 2]);
        assert!(got.iter().filter(|c| c.logical_id == 1).all(|c| c.online));

        // Leading zeros are dropped, so cpu007 is looked for at cpu7/.
        t.dir("cpu/cpu007");
        assert_eq!(
            get_vcpus(&t.root),
            Err(OpError::Sysfs {
                what: format!("open(\"{}/cpu/cpu7/\")", t.text()),
                errno: ENOENT
            })
        );
    }

    #[test]
    fn get_vcpus_errors() {
        let t = Tree::new();
        let err = get_vcpus(&t.root).expect_err("no cpu directory");
        assert_eq!(
            err.to_string(),
            format!("failed to list entries: {}/cpu: No such file or directory", t.text())
        );

        let t = Tree::with_cpus();
        t.file("cpu/cpu3/online", "");
        assert_eq!(
            get_vcpus(&t.root),
            Err(OpError::SysfsText {
                message: format!("pread(\"{}/cpu/cpu3//online\"): unexpected EOF", t.text())
            })
        );

        let t = Tree::with_cpus();
        t.dir("cpu/cpu3/online");
        let err = get_vcpus(&t.root).expect_err("online is a directory");
        assert_eq!(
            err,
            OpError::Sysfs {
                what: format!("pread(\"{}/cpu/cpu3//online\")", t.text()),
                errno: EISDIR
            }
        );
        assert_eq!(
            err.to_string(),
            format!("pread(\"{}/cpu/cpu3//online\"): Is a directory", t.text())
        );
    }

    #[test]
    fn set_vcpus_writes_only_changes() {
        let t = Tree::with_cpus();
        t.age("cpu/cpu1/online");
        t.age("cpu/cpu2/online");
        assert_eq!(set_vcpus(&t.root, &[cpu(1, false), cpu(2, true)], 1), Ok(2));
        assert_eq!(t.read("cpu/cpu1/online"), "0\n");
        assert_eq!(t.read("cpu/cpu2/online"), "1\n");
        assert!(t.written("cpu/cpu1/online") && t.written("cpu/cpu2/online"));

        // Re-onlining and re-offlining write nothing.
        t.age("cpu/cpu1/online");
        t.age("cpu/cpu2/online");
        assert_eq!(set_vcpus(&t.root, &[cpu(2, true), cpu(1, false), cpu(0, true)], 1), Ok(3));
        assert!(!t.written("cpu/cpu1/online") && !t.written("cpu/cpu2/online"));
        assert_eq!(get_vcpus(&t.root).expect("get").iter().filter(|c| c.online).count(), 2);

        assert_eq!(set_vcpus(&t.root, &[], 1), Ok(0));
    }

    #[test]
    fn set_vcpus_errors_and_partial_success() {
        let t = Tree::with_cpus();
        let err = set_vcpus(&t.root, &[cpu(0, false)], 0).expect_err("cpu0");
        assert_eq!(err, OpError::VcpuCannotOffline { id: 0 });
        assert_eq!(err.to_string(), "logical processor #0 can't be offlined");

        let err = set_vcpus(&t.root, &[cpu(9, true), cpu(1, false)], 0).expect_err("cpu9");
        assert_eq!(
            err.to_string(),
            format!("open(\"{}/cpu/cpu9/\"): No such file or directory", t.text())
        );
        assert_eq!(t.read("cpu/cpu1/online"), "1\n");

        // After the first item, an error ends the processing and is dropped.
        assert_eq!(set_vcpus(&t.root, &[cpu(1, false), cpu(9, true), cpu(2, true)], 0), Ok(1));
        assert_eq!(t.read("cpu/cpu1/online"), "0\n");
        assert_eq!(t.read("cpu/cpu2/online"), "0\n");
        assert_eq!(set_vcpus(&t.root, &[cpu(1, true), cpu(0, false), cpu(2, true)], 0), Ok(1));
        assert_eq!(t.read("cpu/cpu1/online"), "1\n");
        assert_eq!(t.read("cpu/cpu2/online"), "0\n");

        t.file("cpu/cpu3/online", "");
        assert_eq!(
            set_vcpus(&t.root, &[cpu(3, true)], 0),
            Err(OpError::SysfsText {
                message: format!("pread(\"{}/cpu/cpu3//online\"): unexpected EOF", t.text())
            })
        );
        t.dir("cpu/cpu4/online");
        assert_eq!(
            set_vcpus(&t.root, &[cpu(4, true)], 0),
            Err(OpError::Sysfs {
                what: format!("open(\"{}/cpu/cpu4//online\")", t.text()),
                errno: EISDIR
            })
        );
    }

    #[test]
    fn set_vcpus_write_failure() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        let t = Tree::with_cpus();
        // Reads as '\0' (online); writing fails with ENOSPC.
        t.link("cpu/cpu5/online", "/dev/full");
        let err = set_vcpus(&t.root, &[cpu(5, false)], 0).expect_err("pwrite");
        assert_eq!(
            err,
            OpError::Sysfs {
                what: format!("pwrite(\"{}/cpu/cpu5//online\")", t.text()),
                errno: ENOSPC
            }
        );
        assert_eq!(set_vcpus(&t.root, &[cpu(5, true)], 0), Ok(1));
    }

    #[test]
    fn set_vcpus_keeps_min_online() {
        let t = Tree::with_cpus();
        t.age("cpu/cpu1/online");
        t.age("cpu/cpu2/online");
        // cpu0 and cpu1 are online; offlining cpu1 leaves one.
        let refused = [
            vec![cpu(1, false)],
            vec![cpu(2, true), cpu(1, false), cpu(2, false)],
            // cpu0 stops qemu-ga before cpu2 is onlined.
            vec![cpu(1, false), cpu(0, false), cpu(2, true)],
            vec![cpu(1, false), cpu(9, true), cpu(2, true)],
        ];
        for request in &refused {
            assert_eq!(set_vcpus(&t.root, request, 2), Err(OpError::TooFewVcpus { min: 2 }));
        }
        assert_eq!(set_vcpus(&t.root, &[], 3), Err(OpError::TooFewVcpus { min: 3 }));
        assert_eq!(t.read("cpu/cpu1/online"), "1\n");
        assert_eq!(t.read("cpu/cpu2/online"), "0\n");
        assert!(!t.written("cpu/cpu1/online") && !t.written("cpu/cpu2/online"));

        assert_eq!(set_vcpus(&t.root, &[cpu(2, true), cpu(1, false)], 2), Ok(2));
        assert_eq!(t.read("cpu/cpu1/online"), "0\n");
        assert_eq!(t.read("cpu/cpu2/online"), "1\n");
        // cpu0 can't be offlined, so it is counted online.
        assert_eq!(
            set_vcpus(&t.root, &[cpu(0, false)], 2),
            Err(OpError::VcpuCannotOffline { id: 0 })
        );
    }

    #[test]
    fn get_memory_blocks_in_directory_order() {
        let t = Tree::with_memory();
        let expected: Vec<MemoryBlock> = t
            .order("memory")
            .iter()
            .filter_map(|name| {
                let (online, can_offline) = match name.as_str() {
                    "memory0" => (true, true),
                    "memory1" => (false, false),
                    "memory2" => (true, false),
                    "memory3" => (true, false),
                    _ => return None,
                };
                let phys_index = name["memory".len()..].parse().expect("index");
                Some(MemoryBlock { phys_index, online, can_offline: Some(can_offline) })
            })
            .collect();
        assert_eq!(expected.len(), 4);
        assert_eq!(get_memory_blocks(&t.root), Ok(expected));
    }

    #[test]
    fn get_memory_blocks_errors() {
        // No memory directory: no blocks, no error.
        let t = Tree::new();
        assert_eq!(get_memory_blocks(&t.root), Ok(Vec::new()));

        t.file("memory/block_size_bytes", "8000000\n");
        let err = get_memory_blocks(&t.root).expect_err("zero blocks");
        assert_eq!(err.to_string(), "guest reported zero memory blocks!");

        let t = Tree::new();
        t.file("memory", "");
        let err = get_memory_blocks(&t.root).expect_err("not a directory");
        assert_eq!(
            err.to_string(),
            format!("Can't open directory\"{}/memory/\": Not a directory", t.text())
        );

        let t = Tree::with_memory();
        t.file("memory/memory5/state", "");
        let err = get_memory_blocks(&t.root).expect_err("empty state");
        assert_eq!(err.to_string(), "pread sysfs file \"state\": unexpected EOF");

        let t = Tree::with_memory();
        t.file("memory/memory5/state", "online\n");
        t.dir("memory/memory5/removable");
        let err = get_memory_blocks(&t.root).expect_err("removable is a directory");
        assert_eq!(
            err,
            OpError::Sysfs { what: "pread sysfs file \"removable\"".into(), errno: EISDIR }
        );

        // strtoul drops the zeros: memory007 is looked for at memory7/.
        let t = Tree::with_memory();
        t.dir("memory/memory007");
        assert_eq!(
            get_memory_blocks(&t.root),
            Err(OpError::Sysfs {
                what: format!("open(\"{}/memory/memory7/\")", t.text()),
                errno: ENOENT
            })
        );
    }

    #[test]
    fn set_memory_blocks_responses() {
        use MemoryBlockResponseType::{NotFound, OperationFailed, OperationNotSupported, Success};

        let t = Tree::with_memory();
        t.file("memory/memory5/state", "");
        t.dir("memory/memory6/state");
        t.file("memory/memory4", "");
        t.age("memory/memory2/state");
        let got = set_memory_blocks(
            &t.root,
            &[
                block(1, true),
                block(0, false),
                block(2, true),
                block(42, true),
                block(3, true),
                block(3, false),
                block(4, true),
                block(5, true),
                block(6, false),
            ],
        );
        assert_eq!(
            got,
            Ok(vec![
                response(1, Success, None),
                response(0, Success, None),
                response(2, Success, None),
                response(42, NotFound, Some(ENOENT)),
                // Without `state`: onlining "succeeds", with errno all the same.
                response(3, Success, Some(ENOENT)),
                response(3, OperationNotSupported, Some(ENOENT)),
                response(4, OperationFailed, Some(ENOTDIR)),
                // An empty `state` leaves errno at 0.
                response(5, OperationFailed, Some(0)),
                response(6, OperationFailed, Some(EISDIR)),
            ])
        );
        // Written at offset 0 without truncating, as qemu-ga's pwrite.
        assert_eq!(t.read("memory/memory1/state"), "onlinee\n");
        assert_eq!(t.read("memory/memory0/state"), "offline");
        assert!(!t.written("memory/memory2/state"));
        assert_eq!(set_memory_blocks(&t.root, &[]), Ok(Vec::new()));

        if Path::new("/dev/full").exists() {
            // Reads as zeros (offline); writing fails with ENOSPC.
            t.dir("memory/memory7");
            t.link("memory/memory7/state", "/dev/full");
            assert_eq!(
                set_memory_blocks(&t.root, &[block(7, true), block(7, false)]),
                Ok(vec![response(7, OperationFailed, Some(ENOSPC)), response(7, Success, None)])
            );
        }
    }

    #[test]
    fn set_memory_blocks_without_memory_directory() {
        use MemoryBlockResponseType::{OperationNotSupported, Success};

        let t = Tree::new();
        assert_eq!(
            set_memory_blocks(&t.root, &[block(0, true), block(1, false)]),
            Ok(vec![
                response(0, OperationNotSupported, Some(ENOENT)),
                response(1, OperationNotSupported, Some(ENOENT)),
            ])
        );
        // Any other opendir error leaves the response at success.
        t.file("memory", "");
        assert_eq!(
            set_memory_blocks(&t.root, &[block(0, true)]),
            Ok(vec![response(0, Success, Some(ENOTDIR))])
        );
    }

    #[test]
    fn memory_block_info() {
        let t = Tree::with_memory();
        assert_eq!(get_memory_block_info(&t.root), Ok(134_217_728));
        t.file("memory/block_size_bytes", "0x10000000\n");
        assert_eq!(get_memory_block_info(&t.root), Ok(0x1000_0000));
        t.file("memory/block_size_bytes", "");
        assert_eq!(
            get_memory_block_info(&t.root).map_err(|e| e.to_string()),
            Err("pread sysfs file \"block_size_bytes\": unexpected EOF".to_owned())
        );

        let t = Tree::new();
        assert_eq!(
            get_memory_block_info(&t.root).map_err(|e| e.to_string()),
            Err(format!("open(\"{}/memory/\"): No such file or directory", t.text()))
        );
        t.dir("memory");
        assert_eq!(
            get_memory_block_info(&t.root).map_err(|e| e.to_string()),
            Err("open sysfs file \"block_size_bytes\": No such file or directory".to_owned())
        );
    }

    #[test]
    fn qemu_ga_paths() {
        let root = Path::new(SYSTEM);
        assert_eq!(vcpu_dir(root, 9).text, "/sys/devices/system/cpu/cpu9/");
        assert_eq!(vcpu_dir(root, 9).child("online").text, "/sys/devices/system/cpu/cpu9//online");
        assert_eq!(memory_block_dir(root, 32).text, "/sys/devices/system/memory/memory32/");
        assert_eq!(memory_block_dir(root, u64::MAX).text, "/sys/devices/system/memory/memory-1/");
        assert_eq!(vcpu_dir(root, 9).path, Path::new("/sys/devices/system/cpu/cpu9/"));
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(scan_cpu_id(b"cpu0"), Some(0));
        assert_eq!(scan_cpu_id(b"cpu17"), Some(17));
        assert_eq!(scan_cpu_id(b"cpu3x"), Some(3));
        assert_eq!(scan_cpu_id(b"cpu 4"), Some(4));
        assert_eq!(scan_cpu_id(b"cpu+5"), Some(5));
        assert_eq!(scan_cpu_id(b"cpu-6"), Some(-6));
        assert_eq!(scan_cpu_id(b"cpu99999999999999999999"), Some(i64::MAX));
        assert_eq!(scan_cpu_id(b"cpu-99999999999999999999"), Some(i64::MIN));
        assert_eq!(scan_cpu_id(b"cpu-9223372036854775808"), Some(i64::MIN));
        for name in [&b"cpufreq"[..], b"cpuidle", b"cpu", b"cpu-", b"cp", b"online", b"xcpu1"] {
            assert_eq!(scan_cpu_id(name), None);
        }
        assert_eq!(strtoul(b"12"), 12);
        assert_eq!(strtoul(b""), 0);
        assert_eq!(strtoul(b"_x"), 0);
        assert_eq!(strtoul(b"-1"), u64::MAX);
        assert_eq!(strtoul(b"99999999999999999999999"), u64::MAX);
        assert_eq!(strtol16(b"8000000\n"), 0x800_0000);
        assert_eq!(strtol16(b"  0X1f"), 0x1f);
        assert_eq!(strtol16(b"0x"), 0);
        assert_eq!(strtol16(b"-10"), -16);
        assert_eq!(strtol16(b"ffffffffffffffff"), i64::MAX);
    }

    /// Reads only: this machine's own sysfs.
    #[test]
    fn real_sysfs_reads() {
        let root = Path::new(SYSTEM);
        let cpus = get_vcpus(root).expect("get_vcpus on /sys");
        assert!(!cpus.is_empty());
        let mut ids: Vec<i64> = cpus.iter().map(|c| c.logical_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), cpus.len(), "unique ids");

        if root.join("memory").is_dir() {
            let blocks = get_memory_blocks(root).expect("get_memory_blocks on /sys");
            assert!(!blocks.is_empty());
            let mut ids: Vec<u64> = blocks.iter().map(|b| b.phys_index).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), blocks.len(), "unique indexes");
            assert!(get_memory_block_info(root).expect("block size") > 0);
        }
    }
}
