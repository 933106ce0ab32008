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

/// Largest payload of one data frame: a multiple of 3, so that each chunk of
/// a stream base64-encodes on its own, and small enough that neither side
/// holds much of a stream at once.
pub const MAX_DATA_CHUNK: usize = 96 * 1024;
