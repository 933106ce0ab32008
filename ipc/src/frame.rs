//! Length-prefixed frames over a stream socket.
//!
//! A frame is a 4-byte little-endian header followed by its payload. The
//! header's low 31 bits are the payload length; its top bit
//! ([`DATA_FRAME_FLAG`]) marks a *data frame*, whose payload is raw bytes
//! rather than a message (see [`crate::codec`]). Bulk data (the bytes of a
//! `guest-file-read`) travels as data frames of at most [`MAX_DATA_CHUNK`]
//! bytes after the message that announces their total, so that it is
//! neither copied into a message nor held whole by the receiver, which can
//! pass each chunk on as it arrives. Lengths are checked against
//! [`MAX_FRAME_LEN`] and [`MAX_DATA_CHUNK`] before any buffer is grown.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};
use crate::fdpass;
use crate::limits::{DATA_FRAME_FLAG, FRAME_HEADER_LEN, MAX_DATA_CHUNK, MAX_FRAME_LEN};

/// The read buffer's resting size; it grows for a large frame and shrinks back
/// once that frame is consumed, so an idle process keeps little memory.
const RESTING_BUFFER: usize = 16 * 1024;
/// The least free space offered to one read.
const MIN_READ: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("data frame of {len} bytes where a message was expected")]
    UnexpectedData { len: usize },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A frame taken from a [`FrameReader`].
#[derive(Debug, PartialEq)]
pub enum Frame<'a, T> {
    Message(T),
    /// A data frame's bytes, borrowed from the reader's buffer.
    Data(&'a [u8]),
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
    /// Keep a grown buffer while a stream of data frames is expected.
    keep: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        FrameReader { buf: Vec::new(), start: 0, end: 0, keep: false }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// While `keep` is set, a buffer grown for a frame is kept once the frame
    /// is consumed instead of being given back, for a receiver expecting a
    /// stream of data frames; clear it when the stream ends.
    pub fn keep_buffer(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// The header of the buffered frame, if a whole header is buffered:
    /// whether it is a data frame, and the payload length, checked against
    /// its limit.
    fn announced(&self) -> Option<Result<(bool, usize), FrameError>> {
        if self.buffered() < FRAME_HEADER_LEN {
            return None;
        }
        let header = self.buf.get(self.start..self.start + FRAME_HEADER_LEN)?;
        let mut raw = [0u8; FRAME_HEADER_LEN];
        raw.copy_from_slice(header);
        let raw = u32::from_le_bytes(raw);
        let data = raw & DATA_FRAME_FLAG != 0;
        let len = (raw & !DATA_FRAME_FLAG) as usize;
        let max = if data { MAX_DATA_CHUNK } else { MAX_FRAME_LEN };
        Some(if len > max { Err(FrameError::TooLarge { len, max }) } else { Ok((data, len)) })
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
            if self.buf.len() > RESTING_BUFFER && !self.keep {
                self.buf = Vec::new();
            }
        }
        let buffered = self.buffered();
        // Room for the rest of the frame being received, and never less than
        // a useful read.
        let frame_end = match self.announced() {
            Some(Err(e)) => return Err(FillError::Frame(e)),
            Some(Ok((_, len))) => FRAME_HEADER_LEN + len,
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

    /// Takes all of `bytes` (frames already in memory: a captured stream, a
    /// test), growing for the frames they announce as [`Self::fill_with`] does.
    pub fn extend_from(&mut self, mut bytes: &[u8]) -> Result<(), FillError> {
        while !bytes.is_empty() {
            let n = self.fill_with(|buf| {
                let n = buf.len().min(bytes.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Ok(n)
            })?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Overwrites the bytes of the frames already consumed (one of them held
    /// a secret); call it before reading more.
    pub fn wipe_consumed(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf[..self.start]);
    }

    /// Consumes the next whole frame, if one is buffered: a message decoded,
    /// or a data frame's bytes.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<Frame<'_, T>>, FrameError> {
        let Some(header) = self.announced() else {
            return Ok(None);
        };
        let (data, len) = header?;
        if self.buffered() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.start + FRAME_HEADER_LEN;
        self.start = payload + len;
        let bytes = &self.buf[payload..payload + len];
        if data {
            return Ok(Some(Frame::Data(bytes)));
        }
        Ok(Some(Frame::Message(codec::decode(bytes)?)))
    }

    /// Consumes the next whole frame, which must be a message: for a receiver
    /// that is never sent data frames.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.next_frame()? {
            None => Ok(None),
            Some(Frame::Message(m)) => Ok(Some(m)),
            Some(Frame::Data(d)) => Err(FrameError::UnexpectedData { len: d.len() }),
        }
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
/// travel with its first byte, and bulk data to be sent as data frames.
#[derive(Debug, Default)]
pub struct FrameWriter {
    queue: VecDeque<Pending>,
    queued_bytes: usize,
    /// The buffer of the last bulk entry sent, for the sender to reuse.
    spent: Option<Vec<u8>>,
}

#[derive(Debug)]
enum Pending {
    /// Encoded frames; `secret` ones are overwritten once sent.
    Frames { data: Vec<u8>, offset: usize, fd: Option<OwnedFd>, secret: bool },
    /// Bytes cut into data frames as the socket takes them, each sent with
    /// its header in one `writev`, never copied.
    Bulk { data: Vec<u8>, offset: usize, frame: Option<BulkFrame> },
}

/// The data frame of a bulk entry being written.
#[derive(Debug)]
struct BulkFrame {
    header: [u8; FRAME_HEADER_LEN],
    header_sent: usize,
    end: usize,
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
            if let Some(Pending::Frames { data, secret: false, .. }) = self.queue.back_mut() {
                if data.len() < RESTING_BUFFER {
                    let before = data.len();
                    encode_frame(msg, data)?;
                    self.queued_bytes += data.len() - before;
                    return Ok(());
                }
            }
        }
        let mut data = Vec::new();
        encode_frame(msg, &mut data)?;
        self.queued_bytes += data.len();
        self.queue.push_back(Pending::Frames { data, offset: 0, fd, secret: false });
        Ok(())
    }

    /// Queues `msg`, which holds a secret, as a frame of its own that is
    /// overwritten once it has been sent. It is encoded into a buffer sized
    /// for it first, so that no reallocation leaves a copy behind.
    pub fn push_secret<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let mut data = Vec::with_capacity(codec::encoded_len(msg)? + FRAME_HEADER_LEN);
        if let Err(e) = encode_frame(msg, &mut data) {
            zeroize::Zeroize::zeroize(&mut data);
            return Err(e);
        }
        self.queued_bytes += data.len();
        self.queue.push_back(Pending::Frames { data, offset: 0, fd: None, secret: true });
        Ok(())
    }

    /// Queues `data` to go out as data frames of at most [`MAX_DATA_CHUNK`]
    /// bytes (a multiple of 3, so that a receiver can base64-encode each on
    /// its own). Nothing is sent for empty data.
    pub fn push_data(&mut self, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        self.queued_bytes += data.len();
        self.queue.push_back(Pending::Bulk { data, offset: 0, frame: None });
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether bulk data is still queued.
    pub fn bulk_pending(&self) -> bool {
        self.queue.iter().any(|p| matches!(p, Pending::Bulk { .. }))
    }

    /// The buffer of the last bulk entry that has been sent in full (its
    /// pages are already mapped, which makes it cheaper to fill than a new
    /// one).
    pub fn take_spent(&mut self) -> Option<Vec<u8>> {
        self.spent.take()
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Writes as much as the socket takes without blocking. Returns true when
    /// everything queued has been written.
    pub fn flush(&mut self, sock: BorrowedFd<'_>) -> io::Result<bool> {
        while let Some(front) = self.queue.front_mut() {
            let done = match front {
                Pending::Frames { data, offset, fd, .. } => {
                    let rest = &data[*offset..];
                    let sent = match fd.take() {
                        Some(f) => match fdpass::send_with_fd(sock, rest, f.as_fd()) {
                            Ok(n) => n,
                            Err(e) => {
                                *fd = Some(f);
                                return would_block(e);
                            }
                        },
                        None => match nix::unistd::write(sock, rest) {
                            Ok(n) => n,
                            Err(e) => return would_block(io::Error::from(e)),
                        },
                    };
                    *offset += sent;
                    self.queued_bytes -= sent;
                    *offset == data.len()
                }
                Pending::Bulk { data, offset, frame } => {
                    let f = frame.get_or_insert_with(|| {
                        let end = data.len().min(*offset + MAX_DATA_CHUNK);
                        // Cannot truncate: MAX_DATA_CHUNK is far below 2^31.
                        let len = (end - *offset) as u32;
                        BulkFrame {
                            header: (len | DATA_FRAME_FLAG).to_le_bytes(),
                            header_sent: 0,
                            end,
                        }
                    });
                    let iov = [
                        IoSlice::new(&f.header[f.header_sent..]),
                        IoSlice::new(&data[*offset..f.end]),
                    ];
                    let mut sent = match nix::sys::uio::writev(sock, &iov) {
                        Ok(n) => n,
                        Err(e) => return would_block(io::Error::from(e)),
                    };
                    let header_part = sent.min(FRAME_HEADER_LEN - f.header_sent);
                    f.header_sent += header_part;
                    sent -= header_part;
                    *offset += sent;
                    self.queued_bytes -= sent;
                    if *offset == f.end {
                        *frame = None;
                    }
                    *offset == data.len()
                }
            };
            if done {
                match self.queue.pop_front() {
                    Some(Pending::Bulk { data, .. })
                        if self.spent.as_ref().is_none_or(|s| s.capacity() < data.capacity()) =>
                    {
                        self.spent = Some(data);
                    }
                    Some(Pending::Frames { mut data, secret: true, .. }) => {
                        zeroize::Zeroize::zeroize(&mut data);
                    }
                    _ => {}
                }
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
            while let Some(m) = reader.next_message::<ToBroker>().expect("decode") {
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
        assert!(matches!(reader.next_message::<ToBroker>(), Err(FrameError::TooLarge { .. })));
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
        assert!(matches!(reader.next_message::<ToBroker>(), Err(FrameError::Codec(_))));
        // The bad frame is consumed; the stream can go on.
        assert_eq!(reader.buffered(), 0);
    }

    /// Writes everything queued through a socketpair with a small send
    /// buffer (so writes are partial) while reading the other end.
    fn through_socket(w: &mut FrameWriter) -> Vec<u8> {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let (a, mut b) = UnixStream::pair().expect("pair");
        nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::SndBuf, &4096).expect("sndbuf");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        let mut wire = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let done = w.flush(a.as_fd()).expect("flush");
            while let Ok(n) = b.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                wire.extend_from_slice(&chunk[..n]);
            }
            if done {
                return wire;
            }
        }
    }

    #[test]
    fn bulk_data_goes_out_as_data_frames_between_messages() {
        let data: Vec<u8> = (0..(2 * MAX_DATA_CHUNK + 5)).map(|i| (i % 251) as u8).collect();
        let mut w = FrameWriter::new();
        w.push(&ToBroker::ChannelClosed { generation: 1 }).expect("push");
        w.push_data(data.clone());
        w.push_data(Vec::new());
        w.push(&ToBroker::ChannelClosed { generation: 2 }).expect("push");
        assert_eq!(w.queued_bytes(), data.len() + 2 * (FRAME_HEADER_LEN + 2));
        let wire = through_socket(&mut w);
        assert_eq!(w.queued_bytes(), 0);
        assert_eq!(w.take_spent().map(|s| s.len()), Some(data.len()));
        let mut reader = FrameReader::new();
        feed(&mut reader, &wire, 7000);
        let mut got = Vec::new();
        let mut chunks = Vec::new();
        while let Some(f) = reader.next_frame::<ToBroker>().expect("frame") {
            match f {
                Frame::Message(m) => got.push(m),
                Frame::Data(d) => {
                    assert!(d.len() <= MAX_DATA_CHUNK && (d.len() % 3 == 0 || chunks.len() == 2));
                    chunks.push(d.to_vec());
                }
            }
        }
        assert_eq!(
            got,
            vec![
                ToBroker::ChannelClosed { generation: 1 },
                ToBroker::ChannelClosed { generation: 2 }
            ]
        );
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data);
    }

    #[test]
    fn data_frames_are_bounded_and_refused_where_messages_are_expected() {
        let mut reader = FrameReader::new();
        let header = ((MAX_DATA_CHUNK as u32 + 1) | DATA_FRAME_FLAG).to_le_bytes();
        feed(&mut reader, &header, 4);
        assert!(matches!(reader.next_frame::<ToBroker>(), Err(FrameError::TooLarge { .. })));

        let mut reader = FrameReader::new();
        let mut wire = (3u32 | DATA_FRAME_FLAG).to_le_bytes().to_vec();
        wire.extend_from_slice(b"abc");
        feed(&mut reader, &wire, 2);
        assert!(matches!(
            reader.next_message::<ToBroker>(),
            Err(FrameError::UnexpectedData { len: 3 })
        ));
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
