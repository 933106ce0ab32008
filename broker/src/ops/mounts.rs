//! The mount table as qemu-ga reads it for fsfreeze, fstrim and fsinfo,
//! one entry per mount with a block device behind it. Read from PID 1
//! (`/proc/1/mountinfo`), not from the agent itself: under systemd the
//! agent runs in a mount namespace of its own whose extra bind mounts
//! (`ProtectSystem=`, `ReadWritePaths=`, `PrivateTmp=`, ...) are views of
//! the same filesystems, not filesystems of the guest; qemu-ga, which runs
//! unconfined, sees the system's table. Our own is read only where PID 1's
//! cannot be. Entries whose device number has major 0 (proc, sysfs, tmpfs,
//! network and FUSE filesystems, overlays) are skipped, except btrfs, whose
//! mounts report major 0 and whose device is then looked up by its source
//! path.

use std::path::Path;

/// The system's mount table (that of PID 1's mount namespace).
pub const MOUNTINFO: &str = "/proc/1/mountinfo";
/// This process's, where PID 1's cannot be read.
pub const OWN_MOUNTINFO: &str = "/proc/self/mountinfo";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point, unescaped.
    pub dir: String,
    pub fstype: String,
    /// The mount source (the device path, for the filesystems kept).
    pub source: String,
    pub major: u32,
    pub minor: u32,
}

impl Mount {
    pub fn device(&self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

/// Reads the system's mount table (see the module comment).
pub fn read() -> std::io::Result<Vec<Mount>> {
    let text = match std::fs::read(MOUNTINFO) {
        Ok(text) => text,
        Err(_) => std::fs::read(OWN_MOUNTINFO)?,
    };
    Ok(parse(&String::from_utf8_lossy(&text), block_device))
}

/// The device number of a block device file, if `path` is one.
pub fn block_device(path: &str) -> Option<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(Path::new(path)).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some((nix::sys::stat::major(rdev) as u32, nix::sys::stat::minor(rdev) as u32))
}

/// Parses mountinfo text (proc(5)): `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT
/// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`. `block_device` looks
/// a btrfs source up. Malformed lines are skipped, as qemu-ga skips them.
pub fn parse(text: &str, block_device: impl Fn(&str) -> Option<(u32, u32)>) -> Vec<Mount> {
    text.lines().filter_map(|line| parse_line(line, &block_device)).collect()
}

fn parse_line(line: &str, block_device: &impl Fn(&str) -> Option<(u32, u32)>) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let mut f = head.split(' ');
    let _id: u32 = f.next()?.parse().ok()?;
    let _parent: u32 = f.next()?.parse().ok()?;
    let (major, minor) = f.next()?.split_once(':')?;
    let (mut major, mut minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    let _root = f.next()?;
    let dir = unescape(f.next()?);
    let mut t = tail.split(' ');
    let fstype = t.next()?.to_owned();
    let source = unescape(t.next().unwrap_or(""));
    if major == 0 {
        // btrfs reports major 0; its device is found through the source.
        if fstype != "btrfs" {
            return None;
        }
        (major, minor) = block_device(&source)?;
    }
    Some(Mount { dir, fstype, source, major, minor })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a
/// backslash, and so on) as qemu-ga's `decode_mntname` does.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |c: u8, max: u8| (b'0'..=max).contains(&c);
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if b[i] == b'\\'
            && i + 3 < b.len()
            && octal(b[i + 1], b'3')
            && octal(b[i + 2], b'7')
            && octal(b[i + 3], b'7')
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real table (a Debian 12 guest with a loop-mounted image, a bind
    /// mount, btrfs, NFS, a space in a mount point), trimmed.
    const MOUNTINFO_SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,nr_inodes=3083623,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
28 27 254:16 / /srv/data rw,relatime shared:1 - xfs /dev/vdb rw,attr2
29 27 254:16 /sub /srv/bind rw,relatime shared:1 - xfs /dev/vdb rw,attr2
30 27 0:45 / /srv/btr rw,relatime - btrfs /dev/vdc rw,space_cache
31 27 0:46 / /mnt/nfs rw,relatime - nfs4 server:/export rw,vers=4.2
32 27 7:0 / /mnt/with\\040space rw,relatime - ext4 /dev/loop0 rw
33 27 0:47 / /mnt/gone rw,relatime - btrfs /dev/missing rw
garbage line
34 27 x:1 / /bad rw - ext4 /dev/x rw
";

    fn lookup(path: &str) -> Option<(u32, u32)> {
        (path == "/dev/vdc").then_some((254, 32))
    }

    #[test]
    fn keeps_block_device_mounts_in_table_order() {
        let m = parse(MOUNTINFO_SAMPLE, lookup);
        let dirs: Vec<&str> = m.iter().map(|m| m.dir.as_str()).collect();
        assert_eq!(dirs, ["/", "/srv/data", "/srv/bind", "/srv/btr", "/mnt/with space"]);
        assert_eq!(m[1].fstype, "xfs");
        assert_eq!(m[1].source, "/dev/vdb");
        assert_eq!(m[1].device(), m[2].device(), "a bind mount shares its device");
        assert_eq!(m[3].device(), (254, 32), "btrfs through its source");
        assert_eq!(m[4].device(), (7, 0));
    }

    #[test]
    fn unescapes_as_qemu_ga() {
        assert_eq!(unescape("/a\\040b\\011c\\134d\\\\e"), "/a b\tc\\d\\e");
        assert_eq!(unescape("/a\\08"), "/a\\08");
        assert_eq!(unescape("/a\\4000"), "/a\\4000");
        assert_eq!(unescape("/tail\\04"), "/tail\\04");
    }

    #[test]
    fn this_machines_table_parses() {
        let m = read().expect("mountinfo");
        assert!(m.iter().all(|m| m.major != 0 && m.dir.starts_with('/')));
    }
}
