//! The one place that knows the encoding of a message: bincode 2.
//!
//! bincode is listed as unmaintained (RUSTSEC-2025-0141); see SECURITY.md.
//! Everything else in the workspace goes through [`encode`] and [`decode`], so
//! replacing the codec touches this file only.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_FRAME_LEN;

/// Fixed-width little-endian integers would make frames larger; variable-width
/// integers are bincode's standard. The limit stops a hostile length field from
/// making the decoder allocate more than one frame can hold.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message could not be encoded")]
    Encode(#[source] bincode::error::EncodeError),
    #[error("message could not be decoded")]
    Decode(#[source] bincode::error::DecodeError),
    #[error("message has {0} trailing bytes")]
    Trailing(usize),
}

/// Appends the encoding of `msg` to `out`.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(msg, out, config()).map_err(CodecError::Encode)?;
    Ok(())
}

/// The length of the encoding of `msg`.
pub fn encoded_len<T: Serialize>(msg: &T) -> Result<usize, CodecError> {
    let mut counter = Counter(0);
    bincode::serde::encode_into_std_write(msg, &mut counter, config())
        .map_err(CodecError::Encode)?;
    Ok(counter.0)
}

/// A writer that only counts.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes exactly one message that fills `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (msg, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(CodecError::Decode)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(msg)
}
