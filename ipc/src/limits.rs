//! Size limits of the IPC channel, checked before anything is allocated.

/// Largest bulk payload one request or reply carries: qemu-ga's maximum
/// `guest-file-read` count (48 MiB; its base64 form is 64 MiB, qemu's JSON
/// limit).
pub const MAX_BULK_LEN: usize = 48 * 1024 * 1024;

/// Largest frame payload in either direction: one bulk payload plus room for
/// the message around it.
pub const MAX_FRAME_LEN: usize = MAX_BULK_LEN + 64 * 1024;

/// Bytes of the length prefix in front of every frame.
pub const FRAME_HEADER_LEN: usize = 4;

/// File descriptors that may travel with one message.
pub const MAX_FDS_PER_MESSAGE: usize = 1;

/// The header bit that marks a data frame (raw bytes, not a message).
pub const DATA_FRAME_FLAG: u32 = 1 << 31;

/// Entries one inventory reply carries at most; the broker stops reading
/// there, so a guest with absurd tables still answers with a bounded reply.
/// `guest-get-users`: distinct users.
pub const MAX_USERS: usize = 1024;
/// `guest-get-disks`, `guest-get-diskstats`: block devices.
pub const MAX_DISKS: usize = 4096;
/// `guest-get-cpustats`: processors.
pub const MAX_CPUS: usize = 8192;
/// `guest-network-get-route`: routes, IPv4 and IPv6 together.
pub const MAX_ROUTES: usize = 4096;
/// `guest-ssh-get-authorized-keys`: keys listed.
pub const MAX_AUTHORIZED_KEYS: usize = 4096;
/// An `authorized_keys` file larger than this is not read (sshd itself reads
/// files of any size, but no host needs more to manage keys).
pub const MAX_AUTHORIZED_KEYS_FILE: u64 = 1024 * 1024;
/// One key line, as sshd bounds it (`SSH_MAX_PUBKEY_BYTES` is 16 KiB).
pub const MAX_KEY_LEN: usize = 16 * 1024;
/// `os-release` values and other single strings read from the guest.
pub const MAX_INFO_STRING: usize = 4096;

/// Largest payload of one data frame: a multiple of 3, so that each chunk of
/// a stream base64-encodes on its own, and small enough that neither side
/// holds much of a stream at once.
pub const MAX_DATA_CHUNK: usize = 96 * 1024;
