//! A writer for the kernel's initramfs format (cpio "newc", uncompressed), so
//! the guest's files get exactly the owners and modes the test wants without
//! staging them on the host's filesystem.

use std::collections::BTreeMap;
use std::io::{self, Write};

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    /// File contents, or a symlink's target.
    data: Vec<u8>,
    rdev: (u32, u32),
}

/// The files of an initramfs, keyed by path without a leading `/`.
#[derive(Default)]
pub struct Archive {
    nodes: BTreeMap<String, Node>,
}

fn clean(path: &str) -> String {
    path.trim_start_matches('/').trim_end_matches('/').to_owned()
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    fn insert(&mut self, path: &str, node: Node) {
        let path = clean(path);
        assert!(!path.is_empty(), "initramfs entry without a name");
        // Parents first: create any missing directory on the way.
        let mut parent = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.nodes.entry(parent.clone()).or_insert(Node {
                mode: S_IFDIR | 0o755,
                uid: 0,
                gid: 0,
                data: Vec::new(),
                rdev: (0, 0),
            });
        }
        self.nodes.insert(path, node);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(&clean(path))
    }

    pub fn dir(&mut self, path: &str, mode: u32) {
        self.insert(
            path,
            Node { mode: S_IFDIR | mode, uid: 0, gid: 0, data: Vec::new(), rdev: (0, 0) },
        );
    }

    /// A regular file owned by root.
    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        self.file_owned(path, mode, 0, 0, data);
    }

    pub fn file_owned(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        data: impl Into<Vec<u8>>,
    ) {
        self.insert(path, Node { mode: S_IFREG | mode, uid, gid, data: data.into(), rdev: (0, 0) });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(
            path,
            Node {
                mode: S_IFLNK | 0o777,
                uid: 0,
                gid: 0,
                data: target.as_bytes().to_vec(),
                rdev: (0, 0),
            },
        );
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.insert(
            path,
            Node { mode: S_IFCHR | mode, uid: 0, gid: 0, data: Vec::new(), rdev: (major, minor) },
        );
    }

    /// Writes the archive. Paths come out sorted, so every directory precedes
    /// what it holds (the kernel does not create missing parents).
    pub fn write_to(&self, mut w: impl Write) -> io::Result<()> {
        for (ino, (path, node)) in (1u32..).zip(&self.nodes) {
            let nlink = if node.mode & S_IFMT == S_IFDIR { 2 } else { 1 };
            write_entry(&mut w, ino, path, node, nlink)?;
        }
        let trailer = Node { mode: 0, uid: 0, gid: 0, data: Vec::new(), rdev: (0, 0) };
        write_entry(&mut w, 0, "TRAILER!!!", &trailer, 1)?;
        w.flush()
    }
}

fn pad(w: &mut impl Write, len: usize) -> io::Result<()> {
    let n = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..n])
}

fn write_entry(
    w: &mut impl Write,
    ino: u32,
    name: &str,
    node: &Node,
    nlink: u32,
) -> io::Result<()> {
    let size = u32::try_from(node.data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        node.mode, node.uid, node.gid, 0, 0, 0, node.rdev.0, node.rdev.1, 0
    );
    debug_assert_eq!(header.len(), 110);
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, 110 + namesize)?;
    w.write_all(&node.data)?;
    pad(w, node.data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an archive back: (name, mode, uid, gid, data) per entry.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let hex = |s: &[u8]| {
            u32::from_str_radix(std::str::from_utf8(s).expect("ascii"), 16).expect("hex")
        };
        let mut offset = 0usize;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {offset}");
            let field = |i: usize| hex(&b[6 + 8 * i..14 + 8 * i]);
            let (mode, uid, gid, size, namesize) =
                (field(1), field(2), field(3), field(6) as usize, field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1]).expect("name").to_owned();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            offset += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, uid, gid, data));
        }
    }

    #[test]
    fn entries_are_aligned_and_parents_come_first() {
        let mut a = Archive::new();
        a.file_owned("/etc/shadow", 0o640, 0, 42, "root:*:1::::::\n");
        a.symlink("init", "bin/busybox");
        a.file("bin/busybox", 0o755, vec![1, 2, 3, 4, 5]);
        let mut buf = Vec::new();
        a.write_to(&mut buf).expect("write");
        let entries = parse(&buf);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "etc", "etc/shadow", "init"]);
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
        assert_eq!(entries[1].4, [1, 2, 3, 4, 5]);
        assert_eq!((entries[3].1, entries[3].3), (S_IFREG | 0o640, 42));
        assert_eq!((entries[4].1, entries[4].4.as_slice()), (S_IFLNK | 0o777, &b"bin/busybox"[..]));
    }
}
