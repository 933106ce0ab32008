//! Length-prefixed frames over a stream socket.
//!
//! A frame is a 4-byte little-endian payload length followed by the payload
//! (one message, see [`crate::codec`]). The length is checked against
//! [`MAX_FRAME_LEN`] before any buffer is grown for it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};
use crate::fdpass;
use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// The read buffer's resting size; it grows for a large frame and shrinks back
/// once that frame is consumed, so an idle process keeps little memory.
const RESTING_BUFFER: usize = 16 * 1024;
/// The least free space offered to one read.
const MIN_READ: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Appends one frame holding `msg` to `out`.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    if let Err(e) = codec::encode(msg, out) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max: MAX_FRAME_LEN });
    }
    // Cannot truncate: MAX_FRAME_LEN fits in u32.
    let header = (len as u32).to_le_bytes();
    out[start..start + FRAME_HEADER_LEN].copy_from_slice(&header);
    Ok(())
}

/// Reassembles frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        FrameReader { buf: Vec::new(), start: 0, end: 0 }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The payload length announced by the buffered header, if a whole header
    /// is buffered.
    fn announced(&self) -> Option<usize> {
        let header = self.buf.get(self.start..self.start + FRAME_HEADER_LEN)?;
        if self.buffered() < FRAME_HEADER_LEN {
            return None;
        }
        let mut len = [0u8; FRAME_HEADER_LEN];
        len.copy_from_slice(header);
        Some(u32::from_le_bytes(len) as usize)
    }

    /// Reads once with `read` into free buffer space, making room for the
    /// frame being received. Returns what `read` returned (0 is end of file).
    pub fn fill_with(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> Result<usize, FillError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > RESTING_BUFFER {
                self.buf = Vec::new();
            }
        }
        let buffered = self.buffered();
        // Room for the rest of the frame being received, and never less than
        // a useful read.
        let frame_end = match self.announced() {
            Some(len) if len > MAX_FRAME_LEN => {
                return Err(FillError::Frame(FrameError::TooLarge { len, max: MAX_FRAME_LEN }));
            }
            Some(len) => FRAME_HEADER_LEN + len,
            None => FRAME_HEADER_LEN,
        };
        let space = frame_end.saturating_sub(buffered).max(MIN_READ);
        if self.buf.len() - self.end < space {
            self.buf.copy_within(self.start..self.end, 0);
            self.end = buffered;
            self.start = 0;
            let len = (buffered + space).max(RESTING_BUFFER);
            if len > self.buf.len() {
                self.buf.resize(len, 0);
            }
        }
        let n = read(&mut self.buf[self.end..]).map_err(FillError::Io)?;
        self.end += n.min(self.buf.len() - self.end);
        Ok(n)
    }

    /// Decodes and consumes the next whole frame, if one is buffered.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len, max: MAX_FRAME_LEN });
        }
        if self.buffered() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.start + FRAME_HEADER_LEN;
        let result = codec::decode(&self.buf[payload..payload + len]);
        self.start = payload + len;
        Ok(Some(result?))
    }

    /// Overwrites every byte the buffer has held (for frames that carried a
    /// secret).
    pub fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf[..]);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error(transparent)]
    Frame(FrameError),
    #[error(transparent)]
    Io(io::Error),
}

/// Frames waiting to be written, each possibly with a descriptor that must
/// travel with its first byte.
#[derive(Debug, Default)]
pub struct FrameWriter {
    queue: VecDeque<Pending>,
    queued_bytes: usize,
}

#[derive(Debug)]
struct Pending {
    data: Vec<u8>,
    offset: usize,
    fd: Option<OwnedFd>,
}

impl FrameWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `msg` as one frame.
    pub fn push<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        self.push_with_fd(msg, None)
    }

    /// Queues `msg` as one frame with `fd` attached to its first byte.
    pub fn push_with_fd<T: Serialize>(
        &mut self,
        msg: &T,
        fd: Option<OwnedFd>,
    ) -> Result<(), FrameError> {
        // Small frames share the tail buffer so one write sends many.
        if fd.is_none() {
            if let Some(last) = self.queue.back_mut() {
                if last.data.len() < RESTING_BUFFER {
                    let before = last.data.len();
                    encode_frame(msg, &mut last.data)?;
                    self.queued_bytes += last.data.len() - before;
                    return Ok(());
                }
            }
        }
        let mut data = Vec::new();
        encode_frame(msg, &mut data)?;
        self.queued_bytes += data.len();
        self.queue.push_back(Pending { data, offset: 0, fd });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Writes as much as the socket takes without blocking. Returns true when
    /// everything queued has been written.
    pub fn flush(&mut self, sock: BorrowedFd<'_>) -> io::Result<bool> {
        while let Some(front) = self.queue.front_mut() {
            let rest = &front.data[front.offset..];
            let sent = match front.fd.take() {
                Some(fd) => match fdpass::send_with_fd(sock, rest, fd.as_fd()) {
                    Ok(n) => n,
                    Err(e) => {
                        front.fd = Some(fd);
                        return would_block(e);
                    }
                },
                None => match nix::unistd::write(sock, rest) {
                    Ok(n) => n,
                    Err(e) => return would_block(io::Error::from(e)),
                },
            };
            front.offset += sent;
            self.queued_bytes -= sent;
            if front.offset == front.data.len() {
                self.queue.pop_front();
            }
        }
        Ok(true)
    }
}

fn would_block(e: io::Error) -> io::Result<bool> {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Bytes, Request, ToBroker};

    fn feed(reader: &mut FrameReader, mut data: &[u8], chunk: usize) {
        while !data.is_empty() {
            reader
                .fill_with(|buf| {
                    let n = chunk.min(buf.len()).min(data.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    data = &data[n..];
                    Ok(n)
                })
                .expect("fill");
        }
    }

    #[test]
    fn frames_survive_any_chunking() {
        let msgs = vec![
            ToBroker::Request { seq: 1, request: Request::Ping },
            ToBroker::Request {
                seq: 2,
                request: Request::FileWrite {
                    handle: 1000,
                    data: Bytes(vec![7; 100_000]),
                    count: None,
                },
            },
            ToBroker::ChannelClosed { generation: 3 },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut wire).expect("encode");
        }
        for chunk in [1, 3, 4096, 1 << 20] {
            let mut reader = FrameReader::new();
            feed(&mut reader, &wire, chunk);
            let mut got = Vec::new();
            while let Some(m) = reader.next_frame::<ToBroker>().expect("decode") {
                got.push(m);
            }
            assert_eq!(got, msgs, "chunk {chunk}");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn oversized_header_is_rejected_before_allocation() {
        let mut reader = FrameReader::new();
        let header = (u32::MAX).to_le_bytes();
        feed(&mut reader, &header, 4);
        assert!(matches!(reader.next_frame::<ToBroker>(), Err(FrameError::TooLarge { .. })));
        let err = reader.fill_with(|_| Ok(0)).expect_err("must refuse to grow");
        assert!(matches!(err, FillError::Frame(FrameError::TooLarge { .. })));
        assert!(reader.buf.len() <= RESTING_BUFFER);
    }

    #[test]
    fn garbage_payload_is_an_error_not_a_panic() {
        let mut wire = 5u32.to_le_bytes().to_vec();
        wire.extend_from_slice(&[0xff; 5]);
        let mut reader = FrameReader::new();
        feed(&mut reader, &wire, 9);
        assert!(matches!(reader.next_frame::<ToBroker>(), Err(FrameError::Codec(_))));
        // The bad frame is consumed; the stream can go on.
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn writer_coalesces_small_frames() {
        let mut w = FrameWriter::new();
        for seq in 0..10 {
            w.push(&ToBroker::Request { seq, request: Request::Ping }).expect("push");
        }
        assert_eq!(w.queue.len(), 1);
    }
}
