//! A fake sysfs and udev database for the unit tests of the operations
//! that read them (fsinfo, disks): a fresh temporary directory, removed
//! when dropped. Each test module adds its own builders in an `impl Tree`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::fsinfo::SysPaths;

pub struct Tree {
    pub root: PathBuf,
}

impl Tree {
    /// A tree named after `tag`, with these directories below `sys/`.
    pub fn new(tag: &str, sys_dirs: &[&str]) -> Tree {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("qga-warden-{tag}-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in sys_dirs {
            std::fs::create_dir_all(root.join("sys").join(dir)).expect("create the tree");
        }
        std::fs::create_dir_all(root.join("udev")).expect("create the tree");
        Tree { root }
    }

    pub fn paths(&self) -> SysPaths {
        SysPaths { sys: self.root.join("sys"), udev_data: self.root.join("udev") }
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.root.join("sys").join(rel)
    }

    pub fn dir(&self, rel: &str) {
        std::fs::create_dir_all(self.sys(rel)).expect("mkdir");
    }

    pub fn file(&self, rel: &str, contents: &str) {
        let path = self.sys(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }

    /// A symlink at `rel` with the literal (relative) `target`.
    pub fn link(&self, rel: &str, target: &str) {
        let path = self.sys(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, path).expect("symlink");
    }

    /// A udev database entry (`b8:0`, ...).
    pub fn udev(&self, id: &str, contents: &str) {
        std::fs::write(self.root.join("udev").join(id), contents).expect("write");
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
