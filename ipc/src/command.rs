//! The command names the agent knows, as the host spells them.
//!
//! This is the single list both processes use: the frontend maps an `execute`
//! string to a [`Command`], the broker and the policy decide per [`Command`],
//! and `guest-info` is rendered from it.

use serde::{Deserialize, Serialize};

macro_rules! commands {
    ($( $variant:ident => $name:literal, success_response: $sr:literal, frozen_ok: $fz:literal; )*) => {
        /// A guest-agent command, one per QAPI command name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Command {
            $( $variant, )*
        }

        impl Command {
            /// Every command, in the order qemu-ga registers them (its `-b help` order).
            pub const ALL: &'static [Command] = &[ $( Command::$variant, )* ];

            /// The wire name, e.g. `guest-ping`.
            pub const fn name(self) -> &'static str {
                match self { $( Command::$variant => $name, )* }
            }

            /// Looks a wire name up; `None` for a name the agent does not know.
            pub fn from_name(name: &str) -> Option<Command> {
                match name { $( $name => Some(Command::$variant), )* _ => None }
            }

            /// False for the commands that send no reply when they succeed.
            pub const fn success_response(self) -> bool {
                match self { $( Command::$variant => $sr, )* }
            }

            /// True for the commands qemu-ga still accepts while filesystems are frozen.
            pub const fn allowed_while_frozen(self) -> bool {
                match self { $( Command::$variant => $fz, )* }
            }
        }
    };
}

commands! {
    SyncDelimited => "guest-sync-delimited", success_response: true, frozen_ok: true;
    Sync => "guest-sync", success_response: true, frozen_ok: true;
    Ping => "guest-ping", success_response: true, frozen_ok: true;
    GetTime => "guest-get-time", success_response: true, frozen_ok: false;
    SetTime => "guest-set-time", success_response: true, frozen_ok: false;
    Info => "guest-info", success_response: true, frozen_ok: true;
    Shutdown => "guest-shutdown", success_response: false, frozen_ok: false;
    FileOpen => "guest-file-open", success_response: true, frozen_ok: false;
    FileClose => "guest-file-close", success_response: true, frozen_ok: false;
    FileRead => "guest-file-read", success_response: true, frozen_ok: false;
    FileWrite => "guest-file-write", success_response: true, frozen_ok: false;
    FileSeek => "guest-file-seek", success_response: true, frozen_ok: false;
    FileFlush => "guest-file-flush", success_response: true, frozen_ok: false;
    FsfreezeStatus => "guest-fsfreeze-status", success_response: true, frozen_ok: true;
    FsfreezeFreeze => "guest-fsfreeze-freeze", success_response: true, frozen_ok: false;
    FsfreezeFreezeList => "guest-fsfreeze-freeze-list", success_response: true, frozen_ok: false;
    FsfreezeThaw => "guest-fsfreeze-thaw", success_response: true, frozen_ok: true;
    Fstrim => "guest-fstrim", success_response: true, frozen_ok: false;
    SuspendDisk => "guest-suspend-disk", success_response: false, frozen_ok: false;
    SuspendRam => "guest-suspend-ram", success_response: false, frozen_ok: false;
    SuspendHybrid => "guest-suspend-hybrid", success_response: false, frozen_ok: false;
    NetworkGetInterfaces => "guest-network-get-interfaces", success_response: true, frozen_ok: false;
    GetVcpus => "guest-get-vcpus", success_response: true, frozen_ok: false;
    SetVcpus => "guest-set-vcpus", success_response: true, frozen_ok: false;
    GetDisks => "guest-get-disks", success_response: true, frozen_ok: false;
    GetFsinfo => "guest-get-fsinfo", success_response: true, frozen_ok: false;
    SetUserPassword => "guest-set-user-password", success_response: true, frozen_ok: false;
    GetMemoryBlocks => "guest-get-memory-blocks", success_response: true, frozen_ok: false;
    SetMemoryBlocks => "guest-set-memory-blocks", success_response: true, frozen_ok: false;
    GetMemoryBlockInfo => "guest-get-memory-block-info", success_response: true, frozen_ok: false;
    ExecStatus => "guest-exec-status", success_response: true, frozen_ok: false;
    Exec => "guest-exec", success_response: true, frozen_ok: false;
    GetHostName => "guest-get-host-name", success_response: true, frozen_ok: false;
    GetUsers => "guest-get-users", success_response: true, frozen_ok: false;
    GetTimezone => "guest-get-timezone", success_response: true, frozen_ok: false;
    GetOsinfo => "guest-get-osinfo", success_response: true, frozen_ok: false;
    GetDevices => "guest-get-devices", success_response: true, frozen_ok: false;
    SshGetAuthorizedKeys => "guest-ssh-get-authorized-keys", success_response: true, frozen_ok: false;
    SshAddAuthorizedKeys => "guest-ssh-add-authorized-keys", success_response: true, frozen_ok: false;
    SshRemoveAuthorizedKeys => "guest-ssh-remove-authorized-keys", success_response: true, frozen_ok: false;
    GetDiskstats => "guest-get-diskstats", success_response: true, frozen_ok: false;
    GetCpustats => "guest-get-cpustats", success_response: true, frozen_ok: false;
    GetLoad => "guest-get-load", success_response: true, frozen_ok: false;
    NetworkGetRoute => "guest-network-get-route", success_response: true, frozen_ok: false;
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &c in Command::ALL {
            assert_eq!(Command::from_name(c.name()), Some(c));
            assert!(seen.insert(c.name()), "duplicate name {}", c.name());
        }
        // The QEMU 2.5 schema's 31, the 11 qemu-ga 7.2 added, get-load (10.0)
        // and network-get-route (9.1).
        assert_eq!(Command::ALL.len(), 44);
        assert_eq!(Command::from_name("guest-nope"), None);
    }

    #[test]
    fn freeze_allowlist_matches_qemu_ga() {
        let allowed: Vec<_> =
            Command::ALL.iter().filter(|c| c.allowed_while_frozen()).map(|c| c.name()).collect();
        assert_eq!(
            allowed,
            [
                "guest-sync-delimited",
                "guest-sync",
                "guest-ping",
                "guest-info",
                "guest-fsfreeze-status",
                "guest-fsfreeze-thaw"
            ]
        );
    }
}
