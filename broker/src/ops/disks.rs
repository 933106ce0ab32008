//! guest-get-disks: the block devices as qemu-ga 7.2 lists them on Linux
//! (built with libudev), from sysfs and the udev database.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ipc::limits::MAX_DISKS;
use ipc::{DiskBusType, DiskInfo, NvmeSmart, OpError};
use nix::errno::Errno;

use super::fsinfo::{self, SysPaths};

/// The reply of guest-get-disks. qemu-ga reads `/sys/block` and, for each
/// link with a nonzero size, adds the disk and then its partitions; as it
/// prepends, the list comes out in reverse order, and so does each disk's
/// list of slaves. At most [`MAX_DISKS`] entries are read.
pub fn disks(paths: &SysPaths) -> Result<Vec<DiskInfo>, OpError> {
    collect(paths, &nvme_smart, MAX_DISKS)
}

/// [`disks`], with the SMART reader and the bound as parameters.
fn collect(
    paths: &SysPaths,
    smart: &dyn Fn(&str) -> Option<NvmeSmart>,
    max: usize,
) -> Result<Vec<DiskInfo>, OpError> {
    let block = paths.sys.join("block");
    let entries = std::fs::read_dir(&block).map_err(|e| OpError::Sysfs {
        what: format!("Can't open directory \"{}\"", block.display()),
        errno: e.raw_os_error().unwrap_or(Errno::EIO as i32),
    })?;
    let mut out = Vec::new();
    // A read error ends the listing, as in qemu-ga.
    for entry in entries.map_while(Result::ok) {
        if out.len() >= max {
            break;
        }
        if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let disk_dir = block.join(entry.file_name());
        // Zero-sized disks (unused loop devices, empty drives) are skipped,
        // and so are those whose size cannot be read.
        match std::fs::read(disk_dir.join("size")) {
            Ok(size) if size != b"0\n" => {}
            _ => continue,
        }
        let Some(name) = devnode(paths, &disk_dir) else { continue };
        let address = disk_address(paths, &disk_dir);
        let smart = match &address {
            Some(a) if a.bus_type == DiskBusType::Nvme => smart(&name),
            _ => None,
        };
        out.push(DiskInfo {
            alias: udev_property(paths, &disk_dir, b"DM_NAME").filter(|a| !a.is_empty()),
            dependencies: dependencies(paths, &disk_dir, max),
            partition: false,
            address,
            smart,
            name: name.clone(),
        });
        partitions(paths, entry.file_name().as_bytes(), &disk_dir, &name, &mut out, max);
    }
    out.reverse();
    Ok(out)
}

/// `get_device_for_syspath`: the device node libudev gives for `syspath`.
fn devnode(paths: &SysPaths, syspath: &Path) -> Option<String> {
    fsinfo::udev_properties(paths, syspath).0
}

/// The address qemu-ga gives a disk: none for a virtual one (or one whose
/// path cannot be resolved), else what get-fsinfo finds for it; none when
/// that fails, as qemu-ga ignores the error.
fn disk_address(paths: &SysPaths, disk_dir: &Path) -> Option<ipc::DiskAddress> {
    let syspath = std::fs::canonicalize(disk_dir).ok()?;
    if fsinfo::find(fsinfo::bytes(&syspath), b"/devices/virtual/block/").is_some() {
        return None;
    }
    fsinfo::real_device(paths, &syspath).ok().flatten()
}

/// `get_disk_deps`: the device nodes of the entries of `slaves/`, in
/// reverse directory order; `None` without that directory, an empty list
/// with an empty one.
fn dependencies(paths: &SysPaths, disk_dir: &Path, max: usize) -> Option<Vec<String>> {
    let deps_dir = disk_dir.join("slaves");
    let entries = std::fs::read_dir(&deps_dir).ok()?;
    let mut deps: Vec<String> = entries
        .map_while(Result::ok)
        .take(max)
        .filter_map(|e| devnode(paths, &deps_dir.join(e.file_name())))
        .collect();
    deps.reverse();
    Some(deps)
}

/// `get_disk_partitions`: appends the partitions of the disk `disk_name`
/// (`/sys/block/<disk_name>`, node `disk_dev`): its subdirectories named
/// `<disk_name><digit>...` or `<disk_name>p<digit>...`, in directory order.
fn partitions(
    paths: &SysPaths,
    disk_name: &[u8],
    disk_dir: &Path,
    disk_dev: &str,
    out: &mut Vec<DiskInfo>,
    max: usize,
) {
    // qemu-ga does not check opendir (and would crash): nothing is listed.
    let Ok(entries) = std::fs::read_dir(disk_dir) else { return };
    for entry in entries.map_while(Result::ok) {
        if out.len() >= max {
            break;
        }
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let file_name = entry.file_name();
        let Some(rest) = file_name.as_bytes().strip_prefix(disk_name) else { continue };
        let numbered = match rest {
            [b'p', d, ..] | [d, ..] => d.is_ascii_digit(),
            [] => false,
        };
        if !numbered {
            continue;
        }
        let Some(name) = devnode(paths, &disk_dir.join(&file_name)) else { continue };
        out.push(DiskInfo {
            name,
            partition: true,
            dependencies: Some(vec![disk_dev.to_owned()]),
            address: None,
            alias: None,
            smart: None,
        });
    }
}

/// The udev property `key` of the device at `syspath` as libudev gives it:
/// from its uevent file, then from the udev database entry
/// `b<major>:<minor>` (which overrides it; an empty value there removes
/// it). Nothing without a uevent file, or when the entry cannot be read.
fn udev_property(paths: &SysPaths, syspath: &Path, key: &[u8]) -> Option<String> {
    let uevent = std::fs::read(syspath.join("uevent")).ok()?;
    let (mut value, mut major, mut minor) = (None, None, None);
    for line in fsinfo::terminated_lines(&uevent) {
        match fsinfo::split_once(line, b'=') {
            Some((b"MAJOR", v)) => major = Some(v),
            Some((b"MINOR", v)) => minor = Some(v),
            Some((k, v)) if k == key => value = Some(fsinfo::text(v)),
            _ => {}
        }
    }
    let number = |v: &[u8]| std::str::from_utf8(v).ok()?.parse::<u32>().ok();
    let devnum = match (major.and_then(number), minor) {
        (Some(0) | None, _) => None,
        (Some(major), None) => Some((major, 0)),
        (Some(major), Some(minor)) => number(minor).map(|minor| (major, minor)),
    };
    let Some((major, minor)) = devnum else { return value };
    match std::fs::read(paths.udev_data.join(format!("b{major}:{minor}"))) {
        Ok(db) => {
            for line in fsinfo::terminated_lines(&db) {
                let property = line.strip_prefix(b"E:").and_then(|p| fsinfo::split_once(p, b'='));
                if let Some((k, v)) = property {
                    if k == key {
                        value = (!v.is_empty()).then(|| fsinfo::text(v));
                    }
                }
            }
            value
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => value,
        // libudev then gives no properties at all.
        Err(_) => None,
    }
}

/// `struct nvme_admin_cmd` (`struct nvme_passthru_cmd`, linux/nvme_ioctl.h).
#[repr(C)]
#[derive(Debug, Default)]
struct NvmeAdminCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

const _: () = assert!(std::mem::size_of::<NvmeAdminCmd>() == 72);

// NVME_IOCTL_ADMIN_CMD: _IOWR('N', 0x41, struct nvme_admin_cmd).
nix::ioctl_readwrite!(nvme_ioctl_admin_cmd, b'N', 0x41, NvmeAdminCmd);

/// The SMART / Health Information log page (`NvmeSmartLog`).
const SMART_LOG_LEN: usize = 512;
const NVME_ADM_CMD_GET_LOG_PAGE: u8 = 0x02;
const NVME_LOG_SMART_INFO: u32 = 0x02;
const NVME_NSID_BROADCAST: u32 = 0xffff_ffff;

/// `get_nvme_smart`: the SMART log of the NVMe device node `dev`, or `None`
/// when it cannot be opened or the command fails.
fn nvme_smart(dev: &str) -> Option<NvmeSmart> {
    let file = File::open(dev).ok()?;
    let mut log = [0u8; SMART_LOG_LEN];
    let mut cmd = NvmeAdminCmd {
        opcode: NVME_ADM_CMD_GET_LOG_PAGE,
        nsid: NVME_NSID_BROADCAST,
        addr: log.as_mut_ptr() as u64,
        data_len: SMART_LOG_LEN as u32,
        // The RAE bit, and the number of dwords less one.
        cdw10: NVME_LOG_SMART_INFO | (1 << 15) | (((SMART_LOG_LEN as u32 >> 2) - 1) << 16),
        ..NvmeAdminCmd::default()
    };
    #[allow(unsafe_code)]
    // SAFETY: NVME_IOCTL_ADMIN_CMD reads and writes one `struct
    // nvme_admin_cmd`, which `cmd` is (repr(C), the header's layout, 72
    // bytes); the kernel writes at most `data_len` (512) bytes at `addr`,
    // which is `log`, a live 512-byte buffer that outlives the call, and
    // uses no metadata buffer (`metadata_len` is 0). `file` is open.
    let r = unsafe { nvme_ioctl_admin_cmd(file.as_raw_fd(), &mut cmd) };
    // A positive value is the NVMe status of a failed command.
    match r {
        Ok(0) => Some(parse_smart(&log)),
        _ => None,
    }
}

/// The fields qemu-ga reports from the SMART log page (little-endian).
fn parse_smart(log: &[u8; SMART_LOG_LEN]) -> NvmeSmart {
    let le64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&log[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let mut counters = [(0, 0); 10];
    for (i, c) in counters.iter_mut().enumerate() {
        let at = 32 + 16 * i;
        *c = (le64(at), le64(at + 8));
    }
    NvmeSmart {
        critical_warning: i64::from(log[0]),
        temperature: i64::from(u16::from_le_bytes([log[1], log[2]])),
        available_spare: i64::from(log[3]),
        available_spare_threshold: i64::from(log[4]),
        percentage_used: i64::from(log[5]),
        counters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fake_sysfs::Tree;
    use ipc::{DiskAddress, PciAddress};

    impl Tree {
        /// A disk at `devices/<rel>` linked from `block/`, with its size,
        /// uevent and the directories every disk has.
        fn disk(&self, rel: &str, major: u32, minor: u32, size: u64) {
            let name = rel.rsplit('/').next().expect("name");
            self.file(
                &format!("devices/{rel}/uevent"),
                &format!("MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=disk\n"),
            );
            self.file(&format!("devices/{rel}/size"), &format!("{size}\n"));
            for sub in ["queue", "holders", "power", "mq/0", "trace"] {
                self.dir(&format!("devices/{rel}/{sub}"));
            }
            self.link(&format!("block/{name}"), &format!("../devices/{rel}"));
        }

        /// A partition `name` of the disk at `devices/<disk>`.
        fn partition(&self, disk: &str, name: &str, major: u32, minor: u32) {
            self.file(
                &format!("devices/{disk}/{name}/uevent"),
                &format!("MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=partition\n"),
            );
            self.file(&format!("devices/{disk}/{name}/partition"), "1\n");
            self.file(&format!("devices/{disk}/{name}/size"), "2048\n");
        }

        /// Binds the PCI function at `devices/<rel>` to `driver`.
        fn bind_driver(&self, rel: &str, driver: &str) {
            self.dir(&format!("bus/pci/drivers/{driver}"));
            let up = "../".repeat(rel.split('/').count() + 1);
            self.link(&format!("devices/{rel}/driver"), &format!("{up}bus/pci/drivers/{driver}"));
        }

        /// The names in a directory, in its own order.
        fn order(&self, rel: &str) -> Vec<String> {
            std::fs::read_dir(self.sys(rel))
                .expect("readdir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        }
    }

    const VDA: &str = "pci0000:00/0000:00:02.0/virtio1/block/vda";
    const VDB: &str = "pci0000:00/0000:00:03.0/virtio2/block/vdb";
    const VDC: &str = "pci0000:00/0000:00:04.0/virtio3/block/vdc";

    /// vda (two partitions), vdb and vdc (md0's members), dm-0 on vda2,
    /// md0, an empty loop0, and a stray non-link entry.
    fn layout(tree: &Tree) {
        tree.bind_driver("pci0000:00/0000:00:02.0", "virtio-pci");
        tree.disk(VDA, 254, 0, 536870912);
        tree.dir(&format!("devices/{VDA}/slaves"));
        tree.partition(VDA, "vda1", 254, 1);
        tree.partition(VDA, "vda2", 254, 2);
        // Neither a directory nor a partition.
        tree.file(&format!("devices/{VDA}/vda3"), "");
        tree.dir(&format!("devices/{VDA}/vdax"));
        for (fun, rel, minor) in [("0000:00:03.0", VDB, 16), ("0000:00:04.0", VDC, 32)] {
            tree.bind_driver(&format!("pci0000:00/{fun}"), "virtio-pci");
            tree.disk(rel, 254, minor, 1024);
        }

        tree.disk("virtual/block/dm-0", 253, 0, 4096);
        tree.file("devices/virtual/block/dm-0/dm/name", "vg-root\n");
        tree.link(
            "devices/virtual/block/dm-0/slaves/vda2",
            "../../../../pci0000:00/0000:00:02.0/virtio1/block/vda/vda2",
        );
        tree.udev("b253:0", "S:mapper/vg-root\nE:DM_NAME=vg-root\nE:DM_UUID=LVM-x\n");

        tree.disk("virtual/block/md0", 9, 0, 2048);
        for (name, rel) in [("vdb", VDB), ("vdc", VDC)] {
            tree.link(
                &format!("devices/virtual/block/md0/slaves/{name}"),
                &format!("../../../../{rel}"),
            );
        }

        tree.disk("virtual/block/loop0", 7, 0, 0);
        tree.dir("block/not-a-link");
    }

    fn no_smart(_: &str) -> Option<NvmeSmart> {
        None
    }

    fn find<'a>(list: &'a [DiskInfo], name: &str) -> &'a DiskInfo {
        list.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("{name} in {list:?}"))
    }

    #[test]
    fn disks_names_partitions_dependencies_alias_order() {
        let tree = Tree::new("disks", &["block"]);
        layout(&tree);
        let list = collect(&tree.paths(), &no_smart, MAX_DISKS).expect("disks");

        // qemu-ga's order: each disk then its partitions, in directory
        // order, all reversed.
        let mut want = Vec::new();
        for name in tree.order("block") {
            let parts: &[&str] = match name.as_str() {
                "vda" => &["vda1", "vda2"],
                "vdb" | "vdc" | "dm-0" | "md0" => &[],
                _ => continue,
            };
            want.push(format!("/dev/{name}"));
            for p in tree.order(&format!("devices/{VDA}")) {
                if parts.contains(&p.as_str()) {
                    want.push(format!("/dev/{p}"));
                }
            }
        }
        want.reverse();
        let names: Vec<&str> = list.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, want);

        let vda = find(&list, "/dev/vda");
        assert!(!vda.partition);
        assert_eq!(vda.dependencies, Some(vec![]));
        assert_eq!(vda.alias, None);
        assert_eq!(vda.smart, None);
        assert_eq!(
            vda.address,
            Some(DiskAddress {
                pci_controller: PciAddress { domain: 0, bus: 0, slot: 2, function: 0 },
                bus_type: DiskBusType::Virtio,
                bus: 0,
                target: 0,
                unit: 0,
                serial: None,
                dev: Some("/dev/vda".to_owned()),
            })
        );
        for p in ["/dev/vda1", "/dev/vda2"] {
            let part = find(&list, p);
            assert!(part.partition);
            assert_eq!(part.dependencies, Some(vec!["/dev/vda".to_owned()]));
            assert_eq!((&part.address, &part.alias, &part.smart), (&None, &None, &None));
        }

        let dm = find(&list, "/dev/dm-0");
        assert!(!dm.partition);
        assert_eq!(dm.alias.as_deref(), Some("vg-root"));
        assert_eq!(dm.dependencies, Some(vec!["/dev/vda2".to_owned()]));
        assert_eq!(dm.address, None, "virtual");

        let md = find(&list, "/dev/md0");
        let mut members: Vec<String> = tree
            .order("devices/virtual/block/md0/slaves")
            .iter()
            .map(|n| format!("/dev/{n}"))
            .collect();
        members.reverse();
        assert_eq!(md.dependencies, Some(members));
        assert_eq!((&md.alias, &md.address), (&None, &None));

        // No slaves directory: no dependencies at all.
        assert_eq!(find(&list, "/dev/vdb").dependencies, None);
        assert!(list.iter().all(|d| d.name != "/dev/loop0"), "zero-sized");
    }

    #[test]
    fn disks_alias_comes_from_udev_not_dm_name() {
        // As in qemu-ga: DM_NAME from the udev database; an empty value is
        // no alias, and without the database there is none.
        let tree = Tree::new("disks", &["block"]);
        layout(&tree);
        tree.udev("b253:0", "E:DM_NAME=\n");
        let list = collect(&tree.paths(), &no_smart, MAX_DISKS).expect("disks");
        assert_eq!(find(&list, "/dev/dm-0").alias, None);
        std::fs::remove_file(tree.root.join("udev/b253:0")).expect("rm");
        let list = collect(&tree.paths(), &no_smart, MAX_DISKS).expect("disks");
        assert_eq!(find(&list, "/dev/dm-0").alias, None);
    }

    #[test]
    fn disks_nvme_smart_and_p_partitions() {
        let tree = Tree::new("disks", &["block"]);
        let nvme = "pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1";
        tree.bind_driver("pci0000:00/0000:00:05.0", "nvme");
        tree.disk(nvme, 259, 0, 1000);
        tree.partition(nvme, "nvme0n1p1", 259, 1);
        tree.bind_driver("pci0000:00/0000:00:02.0", "virtio-pci");
        tree.disk(VDA, 254, 0, 1000);
        let smart = |dev: &str| {
            Some(NvmeSmart {
                temperature: if dev == "/dev/nvme0n1" { 310 } else { -1 },
                ..NvmeSmart::default()
            })
        };
        let list = collect(&tree.paths(), &smart, MAX_DISKS).expect("disks");
        let disk = find(&list, "/dev/nvme0n1");
        assert_eq!(disk.address.as_ref().map(|a| a.bus_type), Some(DiskBusType::Nvme));
        assert_eq!(disk.smart.map(|s| s.temperature), Some(310));
        assert_eq!(disk.dependencies, None);
        let part = find(&list, "/dev/nvme0n1p1");
        assert!(part.partition);
        assert_eq!(part.smart, None);
        assert_eq!(find(&list, "/dev/vda").smart, None, "only NVMe disks are asked");
    }

    #[test]
    fn disks_bounded_and_missing_block_dir() {
        let tree = Tree::new("disks", &["block"]);
        layout(&tree);
        let list = collect(&tree.paths(), &no_smart, 2).expect("disks");
        assert_eq!(list.len(), 2);

        std::fs::remove_dir_all(tree.sys("block")).expect("rm");
        let err = collect(&tree.paths(), &no_smart, MAX_DISKS).expect_err("no /sys/block");
        let block = tree.sys("block");
        assert_eq!(
            err,
            OpError::Sysfs {
                what: format!("Can't open directory \"{}\"", block.display()),
                errno: Errno::ENOENT as i32
            }
        );
    }

    #[test]
    fn disks_smart_log_fields() {
        let mut log = [0u8; SMART_LOG_LEN];
        log[..6].copy_from_slice(&[0x04, 0x3a, 0x01, 95, 10, 3]);
        log[6] = 0xff;
        for i in 0..10u8 {
            let at = 32 + 16 * usize::from(i);
            log[at] = i + 1;
            log[at + 8] = 0x80 + i;
        }
        let s = parse_smart(&log);
        assert_eq!((s.critical_warning, s.temperature, s.available_spare), (4, 0x013a, 95));
        assert_eq!((s.available_spare_threshold, s.percentage_used), (10, 3));
        for (i, c) in s.counters.iter().enumerate() {
            assert_eq!(*c, (i as u64 + 1, 0x80 + i as u64));
        }
        assert_eq!(nvme_smart("/nonexistent/nvme0n1"), None);
    }

    #[test]
    fn disks_of_this_machine() {
        let list = disks(&SysPaths::system()).expect("disks");
        for d in &list {
            assert!(d.name.starts_with("/dev/"), "{d:?}");
        }
    }
}
