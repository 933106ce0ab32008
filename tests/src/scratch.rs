//! Scratch filesystems for the fsfreeze tests: an image file made by the
//! test, formatted, attached to a loop device and mounted under the test's
//! own temporary directory. Dropping one thaws it (whatever happened),
//! unmounts it, detaches the loop device and deletes the image: nothing
//! outlives the test, pass or fail. The tests freeze only these, and the
//! agents they start have a policy that allows nothing else.

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

impl ScratchFs {
    /// Makes, attaches and mounts a filesystem of `fstype` (ext4, xfs, or
    /// squashfs: read-only and without freeze support). Panics with the
    /// failing command's output if it cannot.
    pub fn new(fstype: &'static str) -> ScratchFs {
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
        mkfs.unwrap_or_else(|e| panic!("{e} (apt-get install e2fsprogs xfsprogs squashfs-tools)"));
        let device = run("losetup", &["--find", "--show", image_s])
            .unwrap_or_else(|e| panic!("this test needs loop devices: {e}"));
        let mut fs =
            ScratchFs { mountpoint, device: device.clone(), fstype, mounted: false, _dir: dir };
        let mp = fs.mountpoint.to_str().expect("utf-8 path").to_owned();
        run("mount", &["-t", fstype, &device, &mp]).unwrap_or_else(|e| panic!("{e}"));
        fs.mounted = true;
        fs
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
