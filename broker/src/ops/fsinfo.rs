//! guest-get-fsinfo: the filesystems' devices and disks as qemu-ga 7.2 finds
//! them on Linux (built with libudev), from sysfs and the udev database.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ipc::{DiskAddress, DiskBusType, FsInfo, OpError, PciAddress};
use nix::errno::Errno;

use super::mounts::Mount;

/// Where the kernel's and udev's views of devices are read from (tests pass a
/// fake tree).
pub struct SysPaths {
    /// `/sys` in production.
    pub sys: PathBuf,
    /// `/run/udev/data` in production.
    pub udev_data: PathBuf,
}

impl SysPaths {
    pub fn system() -> SysPaths {
        SysPaths { sys: PathBuf::from("/sys"), udev_data: PathBuf::from("/run/udev/data") }
    }
}

/// The sizes of a filesystem, in bytes, as qemu-ga computes them from statvfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub used: u64,
    /// Leaves out the blocks reserved for root.
    pub total: u64,
    /// All blocks (QEMU 9.2's `total-bytes-privileged`).
    pub privileged: u64,
}

/// The sizes of the filesystem at `mountpoint`, or `None` when statvfs fails.
pub fn space(mountpoint: &str) -> Option<Space> {
    let st = nix::sys::statvfs::statvfs(mountpoint).ok()?;
    let frsize = st.fragment_size() as u64;
    let used = (st.blocks() as u64).wrapping_sub(st.blocks_free() as u64);
    let total = used.wrapping_add(st.blocks_available() as u64);
    Some(Space {
        used: used.wrapping_mul(frsize),
        total: total.wrapping_mul(frsize),
        privileged: (st.blocks() as u64).wrapping_mul(frsize),
    })
}

/// The reply of guest-get-fsinfo for `mounts`. As in qemu-ga, which prepends,
/// the list is in reverse order of `mounts`, and each filesystem's disks are
/// in reverse order of discovery.
pub fn fsinfo(
    mounts: &[Mount],
    paths: &SysPaths,
    space: impl Fn(&str) -> Option<Space>,
) -> Result<Vec<FsInfo>, OpError> {
    let mut out = Vec::with_capacity(mounts.len());
    for mount in mounts {
        let devpath = paths.sys.join(format!("dev/block/{}:{}", mount.major, mount.minor));
        let mut found = Found::default();
        device(paths, &devpath, &mut found, 0)?;
        let sizes = space(&mount.dir);
        found.disks.reverse();
        out.push(FsInfo {
            name: found.name.unwrap_or_default(),
            mountpoint: mount.dir.clone(),
            fstype: mount.fstype.clone(),
            used_bytes: sizes.map(|s| s.used),
            total_bytes: sizes.map(|s| s.total),
            total_bytes_privileged: sizes.map(|s| s.privileged),
            disks: found.disks,
        });
    }
    out.reverse();
    Ok(out)
}

/// What the walk over one filesystem's devices found.
#[derive(Default)]
struct Found {
    /// The first device's name.
    name: Option<String>,
    /// In order of discovery.
    disks: Vec<DiskAddress>,
}

/// Slave devices nested deeper than this are taken for a loop (sysfs has
/// none; qemu-ga would recurse without end).
const MAX_DEPTH: usize = 64;

/// The PCI drivers whose devices qemu-ga describes.
const PCI_DRIVERS: [&str; 5] = ["ata_piix", "sym53c8xx", "virtio-pci", "ahci", "nvme"];

/// `build_guest_fsinfo_for_device`: the device at `devpath` (a sysfs link),
/// a virtual one through its slaves.
fn device(
    paths: &SysPaths,
    devpath: &Path,
    found: &mut Found,
    depth: usize,
) -> Result<(), OpError> {
    let syspath = match std::fs::canonicalize(devpath) {
        Ok(p) => p,
        // Not there, as in some containers: named after the link.
        Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => {
            found.name.get_or_insert_with(|| basename(bytes(devpath)));
            return Ok(());
        }
        Err(e) => return Err(sysfs_error("realpath", devpath, &e)),
    };
    found.name.get_or_insert_with(|| basename(bytes(&syspath)));

    // is_disk_virtual resolves the path once more.
    let resolved =
        std::fs::canonicalize(&syspath).map_err(|e| sysfs_error("realpath", &syspath, &e))?;
    if find(bytes(&resolved), b"/devices/virtual/block/").is_some() {
        virtual_device(paths, &syspath, found, depth)
    } else {
        if let Some(disk) = real_device(paths, &syspath)? {
            found.disks.push(disk);
        }
        Ok(())
    }
}

/// `build_guest_fsinfo_for_virtual_device`: the devices a device-mapper or
/// md device lies on, in directory order.
fn virtual_device(
    paths: &SysPaths,
    syspath: &Path,
    found: &mut Found,
    depth: usize,
) -> Result<(), OpError> {
    let dirpath = syspath.join("slaves");
    let entries = match std::fs::read_dir(&dirpath) {
        Ok(entries) => entries,
        Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => return Ok(()),
        Err(e) => return Err(sysfs_error("opendir", &dirpath, &e)),
    };
    if depth >= MAX_DEPTH {
        let e = io::Error::from_raw_os_error(Errno::ELOOP as i32);
        return Err(sysfs_error("opendir", &dirpath, &e));
    }
    for entry in entries {
        let entry = entry.map_err(|e| sysfs_error("readdir", &dirpath, &e))?;
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            device(paths, &dirpath.join(entry.file_name()), found, depth + 1)?;
        }
    }
    Ok(())
}

/// `build_guest_fsinfo_for_real_device`: the disk address of a device, if
/// anything is known of it.
pub(super) fn real_device(
    paths: &SysPaths,
    syspath: &Path,
) -> Result<Option<DiskAddress>, OpError> {
    let (dev, serial) = udev_properties(paths, syspath);
    let mut disk = DiskAddress {
        pci_controller: PciAddress::UNKNOWN,
        bus_type: DiskBusType::Unknown,
        bus: 0,
        target: 0,
        unit: 0,
        serial,
        dev,
    };
    let path = bytes(syspath);
    let has_hwinf = if find(path, b"/devices/pci").is_some() {
        pci_device(path, &mut disk)?
    } else if let Some(at) = find(path, b"/devices/css") {
        ccw_device(path, at, &mut disk)
    } else if find(path, b"/virtio").is_some() {
        nonpci_virtio(path, &mut disk)
    } else {
        false
    };
    Ok((has_hwinf || disk.dev.is_some() || disk.serial.is_some()).then_some(disk))
}

/// `build_guest_fsinfo_for_pci_dev`: whether the device's address could be
/// worked out. The PCI address is set once the host lists are read, even if
/// the bus rules then fail, as qemu-ga does.
fn pci_device(syspath: &[u8], disk: &mut DiskAddress) -> Result<bool, OpError> {
    let Some(at) = find(syspath, b"/devices/pci") else { return Ok(false) };
    // "/devices/pciDDDD:BB/DDDD:BB:SS.F", then nested functions (bridges)
    // until one is bound to a known driver.
    let mut p = at + b"/devices/pci".len();
    let Some((mut pci, len)) = scan(&syspath[p..], |s| {
        s.hex()?;
        s.lit(b":")?;
        s.hex()?;
        s.lit(b"/")?;
        pci_function(s)
    }) else {
        return Ok(false);
    };
    p += len;
    let driver = loop {
        if let Some(driver) = pci_driver(&syspath[..p]) {
            if PCI_DRIVERS.contains(&driver.as_str()) {
                break driver;
            }
        }
        match scan(&syspath[p..], |s| {
            s.lit(b"/")?;
            pci_function(s)
        }) {
            Some((next, len)) => {
                pci = next;
                p += len;
            }
            None => return Ok(false),
        }
    };

    let tgt = find(syspath, b"/target").and_then(|t| target(&syspath[t + b"/target".len()..]));
    // The host: "/ataN" if there is one (IDE, SATA), else "/hostN".
    let (host_at, number_at, ata) = match find(syspath, b"/ata") {
        Some(a) => (Some(a), a + b"/ata".len(), true),
        None => {
            let h = find(syspath, b"/host");
            (h, h.map_or(0, |h| h + b"/host".len()), false)
        }
    };
    let mut host = None;
    let mut hosts = Vec::new();
    if let Some(host_at) = host_at {
        if let Some((number, _)) = scan(&syspath[number_at..], Scan::dec) {
            host = Some(number);
            hosts = build_hosts(&syspath[..host_at], ata)?;
        }
    }
    let [domain, bus, slot, function] = pci.map(i64::from);
    disk.pci_controller = PciAddress { domain, bus, slot, function };

    // The host's index among its siblings.
    let index = host.and_then(|host| hosts.iter().position(|&h| h == host));
    match (driver.as_str(), tgt, index) {
        // A host per IDE bus: target*:0:<unit>:0.
        ("ata_piix", Some(tgt), Some(index)) => {
            disk.bus_type = DiskBusType::Ide;
            disk.bus = index as i64;
            disk.unit = i64::from(tgt[1]);
        }
        ("ata_piix", ..) => return Ok(false),
        // SCSI (LSI Logic): target*:0:<unit>:0.
        ("sym53c8xx", Some(tgt), _) => {
            disk.bus_type = DiskBusType::Scsi;
            disk.unit = i64::from(tgt[1]);
        }
        ("sym53c8xx", ..) => return Ok(false),
        // virtio-scsi: target*:0:0:<unit>.
        ("virtio-pci", Some(tgt), _) => {
            disk.bus_type = DiskBusType::Scsi;
            disk.unit = i64::from(tgt[2]);
        }
        // virtio-blk: a disk per device.
        ("virtio-pci", None, _) => disk.bus_type = DiskBusType::Virtio,
        // A host per unit.
        ("ahci", Some(_), Some(index)) => {
            disk.bus_type = DiskBusType::Sata;
            disk.unit = index as i64;
        }
        ("ahci", ..) => return Ok(false),
        ("nvme", ..) => disk.bus_type = DiskBusType::Nvme,
        _ => return Ok(false),
    }
    Ok(true)
}

/// "DDDD:BB:SS.F", hexadecimal.
fn pci_function(s: &mut Scan) -> Option<[u32; 4]> {
    let domain = s.hex()?;
    s.lit(b":")?;
    let bus = s.hex()?;
    s.lit(b":")?;
    let slot = s.hex()?;
    s.lit(b".")?;
    Some([domain, bus, slot, s.hex()?])
}

/// After "/target": "H:C:T/H:C:T:L", giving the last three numbers.
fn target(s: &[u8]) -> Option<[u32; 3]> {
    let (tgt, _) = scan(s, |s| {
        for sep in [b":", b":", b"/"] {
            s.dec()?;
            s.lit(sep)?;
        }
        s.dec()?;
        s.lit(b":")?;
        let a = s.dec()?;
        s.lit(b":")?;
        let b = s.dec()?;
        s.lit(b":")?;
        Some([a, b, s.dec()?])
    })?;
    Some(tgt)
}

/// `get_pci_driver`: the name of the driver bound to the PCI function at
/// `path`.
fn pci_driver(path: &[u8]) -> Option<String> {
    let mut link = path.to_vec();
    link.extend_from_slice(b"/driver");
    let target = std::fs::read_link(Path::new(OsStr::from_bytes(&link))).ok()?;
    Some(basename(bytes(&target)))
}

/// `build_hosts`: the numbers of the `ataN` (or `hostN`) entries of `dir`,
/// the first eight read, sorted.
fn build_hosts(dir: &[u8], ata: bool) -> Result<Vec<u32>, OpError> {
    let dir = Path::new(OsStr::from_bytes(dir));
    let entries = std::fs::read_dir(dir).map_err(|e| sysfs_error("opendir", dir, &e))?;
    let prefix: &[u8] = if ata { b"ata" } else { b"host" };
    let mut hosts = Vec::new();
    // A read error ends the listing, as in qemu-ga.
    for entry in entries.map_while(Result::ok) {
        if hosts.len() == 8 {
            break;
        }
        let name = entry.file_name();
        if let Some((n, _)) = scan(name.as_bytes(), |s| {
            s.lit(prefix)?;
            s.dec()
        }) {
            hosts.push(n);
        }
    }
    hosts.sort_unstable();
    Ok(hosts)
}

/// `build_guest_fsinfo_for_ccw_dev`, `at` being where "/devices/css" is.
/// Our disk address has no CCW member: only the virtio rules are kept.
fn ccw_device(syspath: &[u8], at: usize, disk: &mut DiskAddress) -> bool {
    // "/devices/cssN/C.S.SUBCH/X.Y.DEVNO/".
    let parsed = scan(&syspath[at + b"/devices/css".len()..], |s| {
        s.hex()?;
        s.lit(b"/")?;
        for _ in 0..2 {
            s.hex()?;
            s.lit(b".")?;
        }
        s.hex()?;
        s.lit(b"/")?;
        for _ in 0..2 {
            s.hex()?;
            s.lit(b".")?;
        }
        s.hex()
    });
    if parsed.is_none() {
        return false;
    }
    if find(&syspath[at..], b"/virtio").is_some() {
        nonpci_virtio(syspath, disk);
    }
    true
}

/// `build_guest_fsinfo_for_nonpci_virtio`.
fn nonpci_virtio(syspath: &[u8], disk: &mut DiskAddress) -> bool {
    if find(syspath, b"/virtio").is_none() || find(syspath, b"/block").is_none() {
        return false;
    }
    match find(syspath, b"/target").and_then(|t| target(&syspath[t + b"/target".len()..])) {
        // virtio-scsi: target*:0:<target>:<unit>.
        Some([bus, target, unit]) => {
            disk.bus_type = DiskBusType::Scsi;
            disk.bus = i64::from(bus);
            disk.target = i64::from(target);
            disk.unit = i64::from(unit);
        }
        // virtio-blk: a disk per device.
        None => disk.bus_type = DiskBusType::Virtio,
    }
    true
}

/// The device node and `ID_SERIAL` of the device at `syspath` as libudev
/// gives them: `DEVNAME` from its uevent file, properties from that file
/// and then from the udev database entry `b<major>:<minor>`.
pub(super) fn udev_properties(
    paths: &SysPaths,
    syspath: &Path,
) -> (Option<String>, Option<String>) {
    // libudev knows no device without a uevent file.
    let Ok(uevent) = std::fs::read(syspath.join("uevent")) else { return (None, None) };
    let (mut dev, mut serial, mut major, mut minor) = (None, None, None, None);
    for line in terminated_lines(&uevent) {
        let Some((key, value)) = split_once(line, b'=') else { continue };
        match key {
            b"DEVNAME" if value.starts_with(b"/") => dev = Some(text(value)),
            b"DEVNAME" => dev = Some(format!("/dev/{}", text(value))),
            b"MAJOR" => major = Some(value),
            b"MINOR" => minor = Some(value),
            b"ID_SERIAL" => serial = Some(text(value)),
            _ => {}
        }
    }
    let number = |v: &[u8]| std::str::from_utf8(v).ok()?.parse::<u32>().ok();
    let devnum = match (major.and_then(number), minor) {
        (Some(0) | None, _) => None,
        (Some(major), None) => Some((major, 0)),
        (Some(major), Some(minor)) => number(minor).map(|minor| (major, minor)),
    };
    if let Some((major, minor)) = devnum {
        match std::fs::read(paths.udev_data.join(format!("b{major}:{minor}"))) {
            Ok(db) => {
                for line in terminated_lines(&db) {
                    let property = line.strip_prefix(b"E:").and_then(|p| split_once(p, b'='));
                    if let Some((b"ID_SERIAL", value)) = property {
                        serial = (!value.is_empty()).then(|| text(value));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // libudev then gives no properties at all.
            Err(_) => serial = None,
        }
    }
    (dev, serial.filter(|s| !s.is_empty()))
}

/// The lines of a uevent file or udev database entry that end in a newline
/// (libudev ignores an unterminated last line), empty ones left out.
pub(super) fn terminated_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let newline = |c: &u8| matches!(c, b'\n' | b'\r');
    let end = text.iter().rposition(newline).map_or(0, |i| i + 1);
    text[..end].split(newline).filter(|l| !l.is_empty())
}

pub(super) fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|&c| c == sep)?;
    Some((&s[..at], &s[at + 1..]))
}

pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// `strstr`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `g_path_get_basename`.
fn basename(path: &[u8]) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let end = path.iter().rposition(|&c| c != b'/').map_or(0, |i| i + 1);
    if end == 0 {
        return "/".to_owned();
    }
    let start = path[..end].iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1);
    text(&path[start..end])
}

/// qemu-ga's error text for a failed call on `path`.
fn sysfs_error(call: &str, path: &Path, e: &io::Error) -> OpError {
    OpError::Sysfs {
        what: format!("{call}(\"{}\")", path.display()),
        errno: e.raw_os_error().unwrap_or(Errno::EIO as i32),
    }
}

/// Runs `f` over `s` as sscanf(3) would run a format whose conversions must
/// all succeed, giving its result and the number of bytes consumed (`%n`).
fn scan<'a, T>(s: &'a [u8], f: impl FnOnce(&mut Scan<'a>) -> Option<T>) -> Option<(T, usize)> {
    let mut scan = Scan { s, at: 0 };
    let value = f(&mut scan)?;
    Some((value, scan.at))
}

/// A cursor for [`scan`], with the conversions qemu-ga uses.
struct Scan<'a> {
    s: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    /// Literal characters.
    fn lit(&mut self, expected: &[u8]) -> Option<()> {
        let end = self.at + expected.len();
        if self.s.get(self.at..end) != Some(expected) {
            return None;
        }
        self.at = end;
        Some(())
    }

    /// `%x`.
    fn hex(&mut self) -> Option<u32> {
        self.number(16)
    }

    /// `%u` or `%d`.
    fn dec(&mut self) -> Option<u32> {
        self.number(10)
    }

    /// As strtoul: leading white space, a sign, "0x" in base 16, digits;
    /// stored in an unsigned int.
    fn number(&mut self, radix: u32) -> Option<u32> {
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_whitespace() || *c == 0x0b) {
            self.at += 1;
        }
        let negative = match self.s.get(self.at) {
            Some(b'-') => {
                self.at += 1;
                true
            }
            Some(b'+') => {
                self.at += 1;
                false
            }
            _ => false,
        };
        if radix == 16
            && self.s.get(self.at) == Some(&b'0')
            && matches!(self.s.get(self.at + 1), Some(b'x' | b'X'))
            && self.s.get(self.at + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            self.at += 2;
        }
        let start = self.at;
        let mut value: Option<u64> = Some(0);
        while let Some(digit) = self.s.get(self.at).and_then(|&c| char::from(c).to_digit(radix)) {
            value = value
                .and_then(|v| v.checked_mul(u64::from(radix)))
                .and_then(|v| v.checked_add(u64::from(digit)));
            self.at += 1;
        }
        if self.at == start {
            return None;
        }
        let value = match value {
            None => u64::MAX,
            Some(v) if negative => v.wrapping_neg(),
            Some(v) => v,
        };
        Some(value as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fake_sysfs::Tree;

    impl Tree {
        /// A block device directory under `devices/` with its uevent and
        /// its `dev/block/M:m` link, as the kernel lays them out.
        fn block(&self, rel: &str, major: u32, minor: u32) {
            let mut parts = rel.rsplit('/');
            let name = parts.next().expect("name");
            let devtype = if parts.next() == Some("block") { "disk" } else { "partition" };
            self.file(
                &format!("{rel}/uevent"),
                &format!("MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE={devtype}\n"),
            );
            self.link(&format!("dev/block/{major}:{minor}"), &format!("../../{rel}"));
        }

        /// Binds the PCI function at `rel` to `driver`.
        fn driver(&self, rel: &str, driver: &str) {
            self.dir(&format!("bus/pci/drivers/{driver}"));
            let up = "../".repeat(rel.split('/').count());
            self.link(&format!("{rel}/driver"), &format!("{up}bus/pci/drivers/{driver}"));
        }
    }

    fn mount(dir: &str, major: u32, minor: u32) -> Mount {
        Mount {
            dir: dir.to_owned(),
            fstype: "ext4".to_owned(),
            source: format!("/dev/{major}:{minor}"),
            major,
            minor,
        }
    }

    fn no_space(_: &str) -> Option<Space> {
        None
    }

    /// The reply for one mount of the device `major:minor`.
    fn one(tree: &Tree, major: u32, minor: u32) -> FsInfo {
        let mut list =
            fsinfo(&[mount("/mnt", major, minor)], &tree.paths(), no_space).expect("fsinfo");
        assert_eq!(list.len(), 1);
        list.remove(0)
    }

    fn pci(domain: i64, bus: i64, slot: i64, function: i64) -> PciAddress {
        PciAddress { domain, bus, slot, function }
    }

    fn disk(pci_controller: PciAddress, bus_type: DiskBusType, dev: &str) -> DiskAddress {
        DiskAddress {
            pci_controller,
            bus_type,
            bus: 0,
            target: 0,
            unit: 0,
            serial: None,
            dev: Some(dev.to_owned()),
        }
    }

    const VDA: &str = "devices/pci0000:00/0000:00:02.0/virtio1/block/vda";

    /// This machine's layout: virtio-blk at 00:02.0.
    fn virtio_blk(tree: &Tree) {
        tree.driver("devices/pci0000:00/0000:00:02.0", "virtio-pci");
        tree.block(VDA, 254, 0);
        tree.block(&format!("{VDA}/vda1"), 254, 1);
        tree.block(&format!("{VDA}/vda2"), 254, 2);
    }

    #[test]
    fn virtio_blk_disk_and_partition() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        virtio_blk(&tree);
        let list = fsinfo(&[mount("/", 254, 0), mount("/boot", 254, 1)], &tree.paths(), |dir| {
            (dir == "/").then_some(Space { used: 100, total: 200, privileged: 210 })
        })
        .expect("fsinfo");
        assert_eq!(list.len(), 2);
        let (boot, root) = (&list[0], &list[1]);
        assert_eq!(root.name, "vda");
        assert_eq!(root.mountpoint, "/");
        assert_eq!(root.fstype, "ext4");
        assert_eq!(
            (root.used_bytes, root.total_bytes, root.total_bytes_privileged),
            (Some(100), Some(200), Some(210))
        );
        assert_eq!(root.disks, [disk(pci(0, 0, 2, 0), DiskBusType::Virtio, "/dev/vda")]);
        assert_eq!(boot.name, "vda1");
        assert_eq!(boot.mountpoint, "/boot");
        assert_eq!((boot.used_bytes, boot.total_bytes), (None, None));
        assert_eq!(boot.disks, [disk(pci(0, 0, 2, 0), DiskBusType::Virtio, "/dev/vda1")]);
    }

    #[test]
    fn virtio_scsi() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        let fun = "devices/pci0000:00/0000:00:05.0";
        tree.driver(fun, "virtio-pci");
        tree.dir(&format!("{fun}/virtio2/host3"));
        tree.block(&format!("{fun}/virtio2/host2/target2:0:0/2:0:0:3/block/sda"), 8, 0);
        let fs = one(&tree, 8, 0);
        assert_eq!(fs.name, "sda");
        let mut want = disk(pci(0, 0, 5, 0), DiskBusType::Scsi, "/dev/sda");
        want.unit = 3;
        assert_eq!(fs.disks, [want]);
    }

    #[test]
    fn ahci_sata_unit_is_the_port_index() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        let fun = "devices/pci0000:00/0000:00:1f.2";
        tree.driver(fun, "ahci");
        for n in [6, 1, 4, 2, 5] {
            tree.dir(&format!("{fun}/ata{n}/host{}", n - 1));
        }
        tree.dir(&format!("{fun}/ata_port_extra"));
        tree.block(&format!("{fun}/ata3/host2/target2:0:0/2:0:0:0/block/sdb"), 8, 16);
        let fs = one(&tree, 8, 16);
        assert_eq!(fs.name, "sdb");
        let mut want = disk(pci(0, 0, 0x1f, 2), DiskBusType::Sata, "/dev/sdb");
        want.unit = 2;
        assert_eq!(fs.disks, [want]);
    }

    #[test]
    fn ide_ata_piix_bus_and_unit() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        let fun = "devices/pci0000:00/0000:00:01.1";
        tree.driver(fun, "ata_piix");
        tree.dir(&format!("{fun}/ata1/host0"));
        tree.block(&format!("{fun}/ata2/host1/target1:0:1/1:0:1:0/block/sr0"), 11, 0);
        let fs = one(&tree, 11, 0);
        assert_eq!(fs.name, "sr0");
        let mut want = disk(pci(0, 0, 1, 1), DiskBusType::Ide, "/dev/sr0");
        want.bus = 1;
        want.unit = 1;
        assert_eq!(fs.disks, [want]);
    }

    #[test]
    fn ide_without_target_keeps_the_pci_address_only() {
        // The bus rules fail, but the PCI address is already set and the
        // device node is known: listed with an unknown bus type.
        let tree = Tree::new("fsinfo", &["dev/block"]);
        let fun = "devices/pci0000:00/0000:00:01.1";
        tree.driver(fun, "ata_piix");
        tree.block(&format!("{fun}/ata1/host0/block/sdz"), 65, 0);
        let fs = one(&tree, 65, 0);
        assert_eq!(fs.disks, [disk(pci(0, 0, 1, 1), DiskBusType::Unknown, "/dev/sdz")]);
    }

    #[test]
    fn nvme() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        let fun = "devices/pci0000:00/0000:00:04.0";
        tree.driver(fun, "nvme");
        tree.block(&format!("{fun}/nvme/nvme0/nvme0n1"), 259, 0);
        let fs = one(&tree, 259, 0);
        assert_eq!(fs.name, "nvme0n1");
        assert_eq!(fs.disks, [disk(pci(0, 0, 4, 0), DiskBusType::Nvme, "/dev/nvme0n1")]);
    }

    #[test]
    fn behind_a_pci_bridge_the_bound_function_counts() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        tree.driver("devices/pci0000:00/0000:00:1c.0", "pcieport");
        tree.driver("devices/pci0000:00/0000:00:1c.0/0000:01:00.0", "virtio-pci");
        tree.block("devices/pci0000:00/0000:00:1c.0/0000:01:00.0/virtio3/block/vdb", 254, 16);
        let fs = one(&tree, 254, 16);
        assert_eq!(fs.name, "vdb");
        assert_eq!(fs.disks, [disk(pci(0, 1, 0, 0), DiskBusType::Virtio, "/dev/vdb")]);
    }

    #[test]
    fn unknown_pci_driver_lists_the_node_only() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        tree.driver("devices/pci0000:00/0000:00:03.0", "megaraid_sas");
        tree.block("devices/pci0000:00/0000:00:03.0/host0/target0:2:0/0:2:0:0/block/sdc", 8, 32);
        let fs = one(&tree, 8, 32);
        assert_eq!(fs.disks, [disk(PciAddress::UNKNOWN, DiskBusType::Unknown, "/dev/sdc")]);
    }

    #[test]
    fn unsupported_device_without_node_or_serial_is_left_out() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        tree.dir("devices/platform/foo/block/mmcblk0");
        tree.link("dev/block/179:0", "../../devices/platform/foo/block/mmcblk0");
        let fs = one(&tree, 179, 0);
        assert_eq!(fs.name, "mmcblk0");
        assert_eq!(fs.disks, []);
    }

    #[test]
    fn device_mapper_lists_its_slaves() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        virtio_blk(&tree);
        tree.file("devices/virtual/block/dm-0/uevent", "MAJOR=253\nMINOR=0\nDEVNAME=dm-0\n");
        tree.link("dev/block/253:0", "../../devices/virtual/block/dm-0");
        tree.link(
            "devices/virtual/block/dm-0/slaves/vda2",
            "../../../../pci0000:00/0000:00:02.0/virtio1/block/vda/vda2",
        );
        let fs = one(&tree, 253, 0);
        assert_eq!(fs.name, "dm-0");
        assert_eq!(fs.disks, [disk(pci(0, 0, 2, 0), DiskBusType::Virtio, "/dev/vda2")]);
    }

    #[test]
    fn nested_virtual_devices_reverse_the_discovery_order() {
        // dm-1 on md0 and vda1; md0 on vdb and vdc.
        let tree = Tree::new("fsinfo", &["dev/block"]);
        virtio_blk(&tree);
        for (fun, name, minor) in [("0000:00:03.0", "vdb", 16), ("0000:00:04.0", "vdc", 32)] {
            tree.driver(&format!("devices/pci0000:00/{fun}"), "virtio-pci");
            tree.block(&format!("devices/pci0000:00/{fun}/virtio9/block/{name}"), 254, minor);
        }
        tree.dir("devices/virtual/block/md0/slaves");
        tree.dir("devices/virtual/block/dm-1/slaves");
        tree.link("dev/block/253:1", "../../devices/virtual/block/dm-1");
        tree.link("devices/virtual/block/dm-1/slaves/md0", "../../md0");
        tree.link(
            "devices/virtual/block/dm-1/slaves/vda1",
            "../../../../pci0000:00/0000:00:02.0/virtio1/block/vda/vda1",
        );
        tree.file("devices/virtual/block/dm-1/slaves/not-a-link", "");
        for name in ["vdb", "vdc"] {
            let fun = if name == "vdb" { "0000:00:03.0" } else { "0000:00:04.0" };
            tree.link(
                &format!("devices/virtual/block/md0/slaves/{name}"),
                &format!("../../../../pci0000:00/{fun}/virtio9/block/{name}"),
            );
        }
        // The expected order follows the directories' own order.
        let order = |dir: &str| -> Vec<String> {
            std::fs::read_dir(tree.sys(dir))
                .expect("readdir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n != "not-a-link")
                .collect()
        };
        let mut discovered = Vec::new();
        for slave in order("devices/virtual/block/dm-1/slaves") {
            if slave == "md0" {
                discovered.extend(order("devices/virtual/block/md0/slaves"));
            } else {
                discovered.push(slave);
            }
        }
        discovered.reverse();
        let fs = one(&tree, 253, 1);
        assert_eq!(fs.name, "dm-1");
        let devs: Vec<&str> = fs.disks.iter().map(|d| d.dev.as_deref().unwrap_or("")).collect();
        let want: Vec<String> = discovered.iter().map(|n| format!("/dev/{n}")).collect();
        assert_eq!(devs, want);
        assert!(fs.disks.iter().all(|d| d.bus_type == DiskBusType::Virtio));
    }

    #[test]
    fn virtual_device_without_slaves_has_no_disks() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        tree.dir("devices/virtual/block/loop0");
        tree.link("dev/block/7:0", "../../devices/virtual/block/loop0");
        let fs = one(&tree, 7, 0);
        assert_eq!(fs.name, "loop0");
        assert_eq!(fs.disks, []);
    }

    #[test]
    fn missing_device_is_named_after_its_number() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        let fs = one(&tree, 8, 1);
        assert_eq!(fs.name, "8:1");
        assert_eq!(fs.disks, []);
        // A dangling link too.
        tree.link("dev/block/8:2", "../../devices/gone/sdx");
        assert_eq!(one(&tree, 8, 2).name, "8:2");
    }

    #[test]
    fn sysfs_errors_are_worded_as_qemu_ga() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        tree.link("dev/block/8:3", "8:3");
        let err = fsinfo(&[mount("/", 8, 3)], &tree.paths(), no_space).expect_err("a loop");
        let devpath = tree.sys("dev/block/8:3");
        assert_eq!(
            err,
            OpError::Sysfs {
                what: format!("realpath(\"{}\")", devpath.display()),
                errno: Errno::ELOOP as i32
            }
        );
        assert_eq!(
            err.to_string(),
            format!("realpath(\"{}\"): Too many levels of symbolic links", devpath.display())
        );

        tree.file("devices/virtual/block/dm-5/slaves", "not a directory");
        tree.link("dev/block/253:5", "../../devices/virtual/block/dm-5");
        let err = fsinfo(&[mount("/", 253, 5)], &tree.paths(), no_space).expect_err("ENOTDIR");
        let slaves = tree.sys("devices/virtual/block/dm-5/slaves");
        let slaves = std::fs::canonicalize(slaves.parent().expect("parent"))
            .expect("canonical")
            .join("slaves");
        assert_eq!(
            err,
            OpError::Sysfs {
                what: format!("opendir(\"{}\")", slaves.display()),
                errno: Errno::ENOTDIR as i32
            }
        );
    }

    #[test]
    fn serial_from_the_udev_database() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        virtio_blk(&tree);
        tree.udev(
            "b254:0",
            "S:disk/by-id/virtio-SER0\nI:123\nE:ID_SERIAL=SER0\nE:ID_SERIAL_SHORT=SER0\nG:systemd\n",
        );
        tree.udev("b254:1", "E:ID_SERIAL=\nE:ID_TYPE=disk\n");
        let fs = one(&tree, 254, 0);
        assert_eq!(fs.disks.len(), 1);
        assert_eq!(fs.disks[0].serial.as_deref(), Some("SER0"));
        assert_eq!(fs.disks[0].dev.as_deref(), Some("/dev/vda"));
        let fs = one(&tree, 254, 1);
        assert_eq!(fs.disks[0].serial, None, "an empty serial");
        let fs = one(&tree, 254, 2);
        assert_eq!(fs.disks[0].serial, None, "no database entry");
    }

    #[test]
    fn serial_alone_lists_an_unsupported_device() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        tree.file("devices/platform/soc/block/mmcblk0/uevent", "MAJOR=179\nMINOR=0\n");
        tree.link("dev/block/179:0", "../../devices/platform/soc/block/mmcblk0");
        tree.udev("b179:0", "E:ID_SERIAL=0x1234\n");
        let fs = one(&tree, 179, 0);
        assert_eq!(
            fs.disks,
            [DiskAddress {
                pci_controller: PciAddress::UNKNOWN,
                bus_type: DiskBusType::Unknown,
                bus: 0,
                target: 0,
                unit: 0,
                serial: Some("0x1234".to_owned()),
                dev: None,
            }]
        );
    }

    #[test]
    fn ccw_virtio() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        tree.block("devices/css0/0.0.0000/0.0.0001/virtio0/block/vda", 254, 0);
        tree.block(
            "devices/css0/0.0.0002/0.0.0003/virtio1/host0/target0:0:1/0:0:1:2/block/sda",
            8,
            0,
        );
        let fs = one(&tree, 254, 0);
        assert_eq!(fs.disks, [disk(PciAddress::UNKNOWN, DiskBusType::Virtio, "/dev/vda")]);
        let fs = one(&tree, 8, 0);
        let mut want = disk(PciAddress::UNKNOWN, DiskBusType::Scsi, "/dev/sda");
        (want.bus, want.target, want.unit) = (0, 1, 2);
        assert_eq!(fs.disks, [want]);
    }

    #[test]
    fn result_is_in_reverse_mount_order() {
        let tree = Tree::new("fsinfo", &["dev/block"]);
        virtio_blk(&tree);
        let mounts = [mount("/", 254, 0), mount("/boot", 254, 1), mount("/x", 1, 9)];
        let list = fsinfo(&mounts, &tree.paths(), no_space).expect("fsinfo");
        let got: Vec<(&str, &str)> =
            list.iter().map(|f| (f.name.as_str(), f.mountpoint.as_str())).collect();
        assert_eq!(got, [("1:9", "/x"), ("vda1", "/boot"), ("vda", "/")]);
    }

    #[test]
    fn sscanf_conversions() {
        let pci = |s: &str| scan(s.as_bytes(), pci_function);
        assert_eq!(pci("0000:00:1f.2/ata3"), Some(([0, 0, 0x1f, 2], 12)));
        assert_eq!(pci("0x10:0:0.0"), Some(([0x10, 0, 0, 0], 10)));
        assert_eq!(pci("virtio1"), None);
        assert_eq!(pci("ata1"), None);
        assert_eq!(target(b"2:0:0/2:0:0:3/block"), Some([0, 0, 3]));
        assert_eq!(target(b"2:0:0/block"), None);
        assert_eq!(scan(b"-1", Scan::dec), Some((u32::MAX, 2)));
        assert_eq!(scan(b"99999999999999999999999", Scan::dec).map(|v| v.0), Some(u32::MAX));
        assert_eq!(basename(b"../../bus/pci/drivers/ahci/"), "ahci");
        assert_eq!(basename(b"//"), "/");
        assert_eq!(basename(b""), ".");
    }

    #[test]
    fn space_of_the_root() {
        let s = space("/").expect("statvfs /");
        assert!(s.used <= s.total && s.total <= s.privileged);
        assert_eq!(space("/nonexistent/qga-warden"), None);
    }

    #[test]
    fn this_machines_filesystems() {
        let mounts = super::super::mounts::read().expect("mountinfo");
        let list = fsinfo(&mounts, &SysPaths::system(), space).expect("fsinfo");
        assert_eq!(list.len(), mounts.len());
        for (fs, m) in list.iter().zip(mounts.iter().rev()) {
            assert!(!fs.name.is_empty(), "{fs:?}");
            assert_eq!(fs.mountpoint, m.dir);
        }
    }
}
