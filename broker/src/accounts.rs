//! Accounts: looked up in /etc/passwd first (where system accounts live),
//! then through NSS. Going to NSS only when needed keeps its modules (and
//! their memory) out of the broker on most systems.

use nix::unistd::{Gid, User};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Finds `name` in a passwd(5) file's text.
fn passwd_entry(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != name {
            return None;
        }
        Some(Account {
            name: name.to_owned(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_owned(),
        })
    })
}

pub fn lookup(name: &str) -> nix::Result<Option<Account>> {
    let local = std::fs::read_to_string("/etc/passwd").ok();
    if let Some(a) = local.as_deref().and_then(|p| passwd_entry(p, name)) {
        return Ok(Some(a));
    }
    Ok(User::from_name(name)?.map(|u| Account {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir.to_string_lossy().into_owned(),
    }))
}

/// The account's groups (its primary group first), for setgroups(2).
pub fn groups(account: &Account) -> Vec<u32> {
    let name = std::ffi::CString::new(account.name.as_bytes()).ok();
    let mut list: Vec<u32> = name
        .and_then(|n| nix::unistd::getgrouplist(&n, Gid::from_raw(account.gid)).ok())
        .map(|g| g.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default();
    if !list.contains(&account.gid) {
        list.insert(0, account.gid);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entries() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      bad:x:zz:1::/:/bin/sh\nshort:x:1:1\n";
        assert_eq!(
            passwd_entry(passwd, "nobody"),
            Some(Account {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534,
                home: "/nonexistent".into()
            })
        );
        assert_eq!(passwd_entry(passwd, "nob"), None);
        assert_eq!(passwd_entry(passwd, "bad"), None);
        assert_eq!(passwd_entry(passwd, "short"), None);
    }

    #[test]
    fn root_is_found() {
        let root = lookup("root").expect("lookup").expect("root exists");
        assert_eq!(root.uid, 0);
        assert!(groups(&root).contains(&0));
    }
}
