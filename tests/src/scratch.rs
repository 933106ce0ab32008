//! Scratch filesystems for the fsfreeze tests: an image file made by the
//! test, formatted, attached to a loop device and mounted under the test's
//! own temporary directory. Dropping one thaws it (whatever happened),
//! unmounts it, detaches the loop device and deletes the image: nothing
//! outlives the test, pass or fail. The tests freeze only these, and the
//! agents they start have a policy that allows nothing else.
//!
//! They need root, loop devices and the mkfs tools (`.ci/run` installs
//! them). Without, a test prints `SKIPPED: <reason>` and returns;
//! `QGA_WARDEN_FS_TESTS=skip` skips them on purpose, `=require` (CI) makes a
//! missing prerequisite a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::TempDir;

pub struct ScratchFs {
    pub mountpoint: PathBuf,
    pub device: String,
    pub fstype: &'static str,
    mounted: bool,
    _dir: TempDir,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The image size each type needs (xfs refuses less than 300 MiB); the
/// files are sparse.
fn image_mib(fstype: &str) -> u64 {
    match fstype {
        "xfs" => 320,
        _ => 64,
    }
}

/// Skips or fails by `QGA_WARDEN_FS_TESTS`; None when skipping.
fn unavailable(reason: String) -> Option<ScratchFs> {
    const SWITCH: &str = "QGA_WARDEN_FS_TESTS";
    if std::env::var(SWITCH).as_deref() == Ok("require") {
        panic!("scratch filesystem: {reason} (and {SWITCH}=require)");
    }
    crate::vm::note(&format!("SKIPPED: scratch filesystem test: {reason}"));
    None
}

fn on_path(program: &str) -> bool {
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(program).is_file())
}

impl ScratchFs {
    /// Makes, attaches and mounts a filesystem of `fstype` (ext4, xfs, or
    /// squashfs: read-only and without freeze support). None (having said
    /// SKIPPED) where this machine cannot.
    pub fn new(fstype: &'static str) -> Option<ScratchFs> {
        if std::env::var("QGA_WARDEN_FS_TESTS").as_deref() == Ok("skip") {
            crate::vm::note("SKIPPED: scratch filesystem test: QGA_WARDEN_FS_TESTS=skip");
            return None;
        }
        if !nix::unistd::Uid::effective().is_root() {
            return unavailable("needs root (mount, losetup)".into());
        }
        let mkfs = match fstype {
            "ext4" => ("mkfs.ext4", "e2fsprogs"),
            "xfs" => ("mkfs.xfs", "xfsprogs"),
            _ => ("mksquashfs", "squashfs-tools"),
        };
        for (program, package) in [mkfs, ("losetup", "mount"), ("fsfreeze", "util-linux")] {
            if !on_path(program) {
                return unavailable(format!("{program} not found (apt-get install {package})"));
            }
        }
        if !Path::new("/dev/loop-control").exists() {
            return unavailable("no loop devices (/dev/loop-control)".into());
        }
        let dir = TempDir::new(&format!("scratch-{fstype}"));
        let image = dir.path().join("image");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("mkdir");
        let image_s = image.to_str().expect("utf-8 path");
        let mkfs = if fstype == "squashfs" {
            let content = dir.path().join("content");
            std::fs::create_dir(&content).expect("mkdir");
            std::fs::write(content.join("file"), "scratch\n").expect("write");
            let content_s = content.to_str().expect("utf-8 path");
            run("mksquashfs", &[content_s, image_s, "-quiet", "-noappend"])
        } else {
            let file = std::fs::File::create(&image).expect("create image");
            file.set_len(image_mib(fstype) << 20).expect("size image");
            drop(file);
            match fstype {
                "ext4" => run("mkfs.ext4", &["-q", "-F", image_s]),
                "xfs" => run("mkfs.xfs", &["-q", "-f", image_s]),
                other => Err(format!("no mkfs for {other}")),
            }
        };
        mkfs.unwrap_or_else(|e| panic!("{e}"));
        let device = match run("losetup", &["--find", "--show", image_s]) {
            Ok(d) => d,
            Err(e) => return unavailable(format!("no loop device: {e}")),
        };
        let mut fs =
            ScratchFs { mountpoint, device: device.clone(), fstype, mounted: false, _dir: dir };
        let mp = fs.mountpoint.to_str().expect("utf-8 path").to_owned();
        if let Err(e) = run("mount", &["-t", fstype, &device, &mp]) {
            // This kernel may lack the filesystem; dropping `fs` detaches.
            return unavailable(format!("cannot mount {fstype}: {e}"));
        }
        fs.mounted = true;
        Some(fs)
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn dir(&self) -> &str {
        self.mountpoint.to_str().expect("utf-8 path")
    }

    /// Whether the filesystem is frozen now: `fsfreeze --freeze` fails with
    /// "busy" on a frozen filesystem; on a thawed one it succeeds and is
    /// undone at once.
    pub fn is_frozen(&self) -> bool {
        let out = Command::new("fsfreeze")
            .args(["--freeze", self.dir()])
            .stdin(Stdio::null())
            .output()
            .expect("run fsfreeze");
        if out.status.success() {
            run("fsfreeze", &["--unfreeze", self.dir()]).expect("unfreeze probe");
            return false;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("busy"), "fsfreeze --freeze {}: {err}", self.dir());
        true
    }

    /// Thaws it however many times it was frozen.
    pub fn thaw_fully(&self) {
        for _ in 0..64 {
            if run("fsfreeze", &["--unfreeze", self.dir()]).is_err() {
                return;
            }
        }
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        if self.mounted {
            self.thaw_fully();
            let mp = self.mountpoint.to_string_lossy().into_owned();
            if run("umount", &[&mp]).is_err() {
                let _ = run("umount", &["--lazy", &mp]);
            }
        }
        let _ = run("losetup", &["--detach", &self.device]);
    }
}
