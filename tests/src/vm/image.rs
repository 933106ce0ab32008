//! Assembling the guest on the host: find the kernel, its modules, busybox and
//! QEMU; write the initramfs (busybox, the modules, the agent with its shared
//! libraries, accounts, the start-up scripts of `tests/vm/`); make the ext4
//! scratch disk. Everything is written into the VM's temporary directory.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::GuestAgent;
use super::cpio::Archive;

/// The modules the guest needs, in the order they are wanted; each is
/// preceded by what it depends on. The crc32c module is the `crypto-crc32c`
/// soft dependency of ext4 and jbd2 (modules.softdep), so it comes first.
pub const GUEST_MODULES: &[&str] =
    &["virtio_pci", "virtio_console", "virtio_blk", "crc32c_generic", "ext4"];

/// Debian's qemu-guest-agent binary.
pub const QEMU_GA: &str = "/usr/sbin/qemu-ga";

/// What the host must have to build and boot a guest.
pub struct HostAssets {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub kernel_version: String,
    pub modules_dir: PathBuf,
    pub busybox: PathBuf,
    pub mkfs_ext4: PathBuf,
}

/// Looks for everything the VM tests need; `Err` says what is missing and
/// which package brings it.
pub fn find_host_assets(agent: GuestAgent) -> Result<HostAssets, String> {
    let qemu = find_program("qemu-system-x86_64")
        .ok_or("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")?;
    let mkfs_ext4 =
        find_program("mkfs.ext4").ok_or("mkfs.ext4 not found (apt-get install e2fsprogs)")?;
    find_program("ldd").ok_or("ldd not found (apt-get install libc-bin)")?;
    let (kernel, kernel_version) = find_kernel().ok_or(
        "no /boot/vmlinuz-VERSION with /lib/modules/VERSION (apt-get install linux-image-amd64)",
    )?;
    let busybox = PathBuf::from("/bin/busybox");
    match fs::read(&busybox) {
        Ok(elf) if is_static_elf(&elf) => {}
        Ok(_) => {
            return Err(
                "/bin/busybox is not statically linked (apt-get install busybox-static)".into()
            );
        }
        Err(_) => return Err("/bin/busybox not found (apt-get install busybox-static)".into()),
    }
    if agent == GuestAgent::QemuGa && !Path::new(QEMU_GA).exists() {
        return Err(format!("{QEMU_GA} not found (apt-get install qemu-guest-agent)"));
    }
    Ok(HostAssets {
        qemu,
        modules_dir: Path::new("/lib/modules").join(&kernel_version),
        kernel,
        kernel_version,
        busybox,
        mkfs_ext4,
    })
}

/// A program on PATH or in the sbin directories (which a non-root PATH lacks).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The newest kernel that has both an image in /boot and a modules directory.
fn find_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?.to_owned();
            let image = Path::new("/boot").join(&name);
            let modules = Path::new("/lib/modules").join(&version).join("modules.dep");
            (fs::File::open(&image).is_ok() && modules.is_file()).then_some((image, version))
        })
        .collect();
    found.sort_by_key(|a| version_key(&a.1));
    found.pop()
}

/// Sorts "6.1.0-9" before "6.1.0-56": numbers compare as numbers.
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (num, tail) = rest.split_at(digits);
        let text_len = tail.len() - tail.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
        let (text, tail) = tail.split_at(text_len);
        key.push((num.parse().unwrap_or(0), text.to_owned()));
        rest = tail;
    }
    key
}

/// True for a 64-bit little-endian ELF file without a PT_INTERP header.
pub fn is_static_elf(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| elf.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(|b| u64::from_le_bytes(b) as usize)
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| u32_at(phoff + i * phentsize).is_some_and(|t| t != PT_INTERP))
}

/// The shared libraries and the dynamic loader a program needs, as `ldd`
/// lists them (absolute paths on the host, which are also their guest paths).
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(program)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic")
        {
            return Ok(Vec::new());
        }
        return Err(format!(
            "ldd {} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(format!("ldd {}: {line}", program.display()));
        }
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim().split(" (").next().unwrap_or("").trim(),
            None => line.split(" (").next().unwrap_or("").trim(),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// The module files to load, dependencies first, for `roots` (module names;
/// `-` and `_` are the same), computed from `modules.dep`.
pub fn module_closure(modules_dir: &Path, roots: &[&str]) -> Result<Vec<PathBuf>, String> {
    let dep_file = modules_dir.join("modules.dep");
    let text = fs::read_to_string(&dep_file).map_err(|e| format!("{}: {e}", dep_file.display()))?;
    // module name -> (its file, the files it depends on)
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in text.lines() {
        let Some((file, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            module_name(file),
            (file.to_owned(), rest.split_whitespace().map(str::to_owned).collect()),
        );
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        if !seen.insert(name.to_owned()) {
            return Ok(());
        }
        let (file, needs) =
            deps.get(name).ok_or_else(|| format!("module {name} not in modules.dep"))?;
        for dep in needs {
            visit(&module_name(dep), deps, seen, order)?;
        }
        order.push(file.clone());
        Ok(())
    }
    for root in roots {
        visit(&root.replace('-', "_"), &deps, &mut seen, &mut order)?;
    }
    Ok(order.into_iter().map(|f| modules_dir.join(f)).collect())
}

/// `kernel/fs/ext4/ext4.ko.xz` -> `ext4`; `crc32c-intel.ko` -> `crc32c_intel`.
fn module_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// A module's contents, decompressed if the file is (busybox's insmod only
/// takes plain ELF objects).
fn module_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else if name.ends_with(".ko.gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(path).map_err(|e| format!("{name}: {e}")),
        Some(tool) => {
            let out = Command::new(tool)
                .args(["-d", "-c"])
                .arg(path)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("{tool} -d {name}: {e}"))?;
            if !out.status.success() {
                return Err(format!("{tool} -d {name} failed"));
            }
            Ok(out.stdout)
        }
    }
}

/// A guest-side file that a test adds (see `VmOptions`).
#[derive(Clone, Debug)]
pub enum GuestFile {
    /// Bytes at a guest path, owned by root.
    Data { path: String, mode: u32, data: Vec<u8> },
    /// A host program copied to a guest path, with the shared libraries it
    /// needs at their own paths.
    Program { host: PathBuf, path: String },
}

/// What goes into one guest.
pub struct GuestSpec<'a> {
    pub agent: GuestAgent,
    pub agent_args: &'a [String],
    /// The directory holding the release build of qga-warden.
    pub release_dir: &'a Path,
    pub extra_files: &'a [GuestFile],
    /// Number of virtio-serial ports that rcS waits for.
    pub ports: usize,
}

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
qga-warden:x:999:999:qga-warden guest agent:/nonexistent:/bin/false
testuser:x:1000:1000:VM test account:/home/testuser:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";
/// Every password is locked ("*" or "!"): nobody logs in to the test guest.
const SHADOW: &str = "\
root:*:19000:0:99999:7:::
qga-warden:!:19000::::::
testuser:!:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
";
const GROUP: &str = "\
root:x:0:
shadow:x:42:
qga-warden:x:999:
testuser:x:1000:
nogroup:x:65534:
";

/// Writes the guest's initramfs to `out`.
pub fn build_initramfs(assets: &HostAssets, spec: &GuestSpec, out: &Path) -> Result<(), String> {
    let mut a = Archive::new();
    for d in ["dev", "proc", "sys", "run", "mnt", "etc/qemu", "var/log", "usr/sbin"] {
        a.dir(d, 0o755);
    }
    a.dir("tmp", 0o1777);
    a.dir("root", 0o700);
    a.char_dev("dev/console", 0o600, 5, 1);
    a.symlink("var/run", "../run");

    // busybox and a link for each applet (its own list names their places).
    let busybox =
        fs::read(&assets.busybox).map_err(|e| format!("{}: {e}", assets.busybox.display()))?;
    a.file("bin/busybox", 0o755, busybox);
    let list = Command::new(&assets.busybox)
        .arg("--list-full")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("busybox --list-full: {e}"))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let depth = applet.matches('/').count();
        a.symlink(applet, &format!("{}bin/busybox", "../".repeat(depth)));
    }
    a.symlink("init", "bin/busybox");

    // Kernel modules, decompressed, and the order to load them in.
    let modules = module_closure(&assets.modules_dir, GUEST_MODULES)?;
    let mut order = String::new();
    for m in &modules {
        let name = format!("{}.ko", module_name(&m.to_string_lossy()));
        a.file(&format!("lib/modules/qga-test/{name}"), 0o644, module_bytes(m)?);
        order.push_str(&name);
        order.push('\n');
    }
    a.file("etc/qga-test/modules", 0o644, order);

    // The agent under test.
    match spec.agent {
        GuestAgent::Warden => {
            for bin in ["qga-warden", "qga-warden-frontend"] {
                add_program(&mut a, &spec.release_dir.join(bin), &format!("usr/sbin/{bin}"))?;
            }
        }
        GuestAgent::QemuGa => add_program(&mut a, Path::new(QEMU_GA), "usr/sbin/qemu-ga")?,
    }
    a.file("etc/qga-test/agent", 0o644, format!("{}\n", spec.agent.guest_name()));
    a.file("etc/qga-test/agent-args", 0o644, format!("{}\n", spec.agent_args.join(" ")));
    a.file("etc/qga-test/ports", 0o644, format!("{}\n", spec.ports));

    // Accounts: root, the agent's own system account, nobody, a test account.
    a.file("etc/passwd", 0o644, PASSWD);
    a.file_owned("etc/shadow", 0o640, 0, 42, SHADOW);
    a.file("etc/group", 0o644, GROUP);
    a.file_owned("home/testuser/.profile", 0o644, 1000, 1000, "");
    a.file("etc/hostname", 0o644, "qga-test\n");

    // Start-up: busybox init, rcS, the test shell, the agent control script.
    a.file("etc/inittab", 0o644, include_str!("../../vm/inittab"));
    a.file("etc/init.d/rcS", 0o755, include_str!("../../vm/rcS"));
    a.file("sbin/qga-test-shell", 0o755, include_str!("../../vm/qga-test-shell"));
    a.file("sbin/qga-test-agent", 0o755, include_str!("../../vm/qga-test-agent"));

    for f in spec.extra_files {
        match f {
            GuestFile::Data { path, mode, data } => a.file(path, *mode, data.clone()),
            GuestFile::Program { host, path } => add_program(&mut a, host, path)?,
        }
    }

    let file = fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    a.write_to(std::io::BufWriter::new(file)).map_err(|e| format!("writing {}: {e}", out.display()))
}

/// A host program at `guest_path`, with its shared libraries and loader.
fn add_program(a: &mut Archive, host: &Path, guest_path: &str) -> Result<(), String> {
    let data = fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
    a.file(guest_path, 0o755, data);
    for lib in shared_libraries(host)? {
        let guest = lib.to_string_lossy().into_owned();
        if a.contains(&guest) {
            continue;
        }
        // Read through symlinks: the guest gets the library itself.
        let data = fs::read(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
        a.file(&guest, 0o755, data);
    }
    Ok(())
}

/// Makes the scratch disk: a sparse `size_mib` MiB ext4 image labelled
/// `qga-scratch` holding `files` (name, contents) at its root.
pub fn make_scratch_disk(
    assets: &HostAssets,
    image: &Path,
    size_mib: u64,
    files: &[(&str, &[u8])],
) -> Result<(), String> {
    let content = image.with_extension("content");
    fs::create_dir_all(&content).map_err(|e| format!("{}: {e}", content.display()))?;
    for (name, data) in files {
        fs::write(content.join(name), data).map_err(|e| format!("{name}: {e}"))?;
    }
    let file = fs::File::create(image).map_err(|e| format!("{}: {e}", image.display()))?;
    file.set_len(size_mib << 20).map_err(|e| format!("{}: {e}", image.display()))?;
    drop(file);
    let out = Command::new(&assets.mkfs_ext4)
        .args(["-q", "-F", "-L", "qga-scratch", "-E", "root_owner=0:0", "-d"])
        .arg(&content)
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("mkfs.ext4: {e}"))?;
    let _ = fs::remove_dir_all(&content);
    if !out.status.success() {
        return Err(format!("mkfs.ext4 failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["6.1.0-56-amd64", "6.1.0-9-amd64", "6.10.1-1-amd64"];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(v, ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.10.1-1-amd64"]);
    }

    #[test]
    fn module_names() {
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
        assert_eq!(module_name("kernel/arch/x86/crypto/crc32c-intel.ko"), "crc32c_intel");
    }

    #[test]
    fn closure_puts_dependencies_first() {
        let dir = crate::TempDir::new("modules-dep");
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/a/virtio_pci.ko: kernel/a/virtio_pci_modern_dev.ko kernel/a/virtio.ko kernel/a/virtio_ring.ko\n\
             kernel/a/virtio_pci_modern_dev.ko: kernel/a/virtio.ko kernel/a/virtio_ring.ko\n\
             kernel/a/virtio.ko: kernel/a/virtio_ring.ko\n\
             kernel/a/virtio_ring.ko:\n\
             kernel/b/ext4.ko.xz: kernel/b/jbd2.ko.xz\n\
             kernel/b/jbd2.ko.xz:\n",
        )
        .expect("write modules.dep");
        let order: Vec<String> = module_closure(dir.path(), &["virtio-pci", "ext4", "virtio_ring"])
            .expect("closure")
            .iter()
            .map(|p| p.strip_prefix(dir.path()).expect("under dir").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            order,
            [
                "kernel/a/virtio_ring.ko",
                "kernel/a/virtio.ko",
                "kernel/a/virtio_pci_modern_dev.ko",
                "kernel/a/virtio_pci.ko",
                "kernel/b/jbd2.ko.xz",
                "kernel/b/ext4.ko.xz",
            ]
        );
        assert!(module_closure(dir.path(), &["nosuch"]).is_err());
    }

    #[test]
    fn static_elf_detection() {
        for program in ["/bin/busybox", "/bin/ls", "/usr/sbin/qemu-ga"] {
            let Ok(elf) = fs::read(program) else {
                continue;
            };
            // Agrees with ldd: static exactly when ldd lists no libraries.
            let libs = shared_libraries(Path::new(program)).expect("ldd");
            assert_eq!(is_static_elf(&elf), libs.is_empty(), "{program}: {libs:?}");
        }
        assert!(!is_static_elf(&fs::read("/bin/ls").expect("/bin/ls")));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }
}
