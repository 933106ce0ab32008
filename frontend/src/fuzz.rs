//! Entry points for the fuzz targets (`fuzz/`, and their short run in the
//! test suite): each takes arbitrary bytes, runs one of the frontend's
//! parsers or writers on them the way the server does, and panics if an
//! invariant does not hold. The checks that need an independent JSON parser
//! are made by the caller, on what these return.

use crate::json::{Event, Splitter};
use crate::{base64, qmp, reply};

/// What garbage may make the frontend write per error: the longest error
/// text with its 32-byte quote (each byte written as at most six, a
/// `\uFFFD` escape for invalid UTF-8), and the reply around it.
pub const MAX_ERROR_REPLY: usize = 320;

/// The byte-stream splitter and request interpretation, fed `data` in
/// chunks whose sizes come from the data itself (0xFF resets included).
/// Returns the replies the server would send for the rejected ones, one per
/// rejection, for the caller to check as JSON.
pub fn splitter(data: &[u8]) -> Vec<Vec<u8>> {
    let mut s = Splitter::new();
    let mut events = Vec::new();
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for chunk in data.chunks(step) {
        s.feed(chunk, &mut |e| events.push(e));
    }
    s.feed(b" ", &mut |e| events.push(e));
    let mut replies = Vec::new();
    for event in events {
        let rejected = match event {
            Event::Value(v) => match qmp::interpret(v, &ipc::CommandStates::default()) {
                Ok(_) => None,
                Err(r) => Some((r.id, r.error)),
            },
            Event::Error(e) => Some((None, qmp::RequestError::Parse(e))),
        };
        if let Some((id, error)) = rejected {
            let (class, desc) = error.describe();
            let mut out = Vec::new();
            reply::error(&mut out, id.as_ref(), class, &desc);
            // An error about input that named no command never carries
            // more than a short quote of it (no amplification).
            if error.is_garbage() && id.is_none() {
                assert!(out.len() <= MAX_ERROR_REPLY, "{} bytes: {:?}", out.len(), desc);
            }
            replies.push(out);
        }
    }
    replies
}

/// One request through JSON parsing and argument validation, as
/// `qga-warden policy explain` parses it. A request that passes must
/// survive the IPC encoding unchanged.
pub fn request(data: &[u8]) {
    if let Ok(request) = crate::parse_request(data) {
        let mut frame = Vec::new();
        let msg = ipc::ToBroker::Request { seq: 1, request };
        if ipc::frame::encode_frame(&msg, &mut frame).is_ok() {
            let mut reader = ipc::frame::FrameReader::new();
            reader.extend_from(&frame).expect("a frame we encoded is accepted");
            let back = reader.next_message::<ipc::ToBroker>().expect("decodes");
            assert_eq!(back, Some(msg));
        }
    }
}

/// base64 as qemu-ga accepts it: decoding never panics and never yields
/// more than three bytes per four characters; a decoded value re-encoded
/// (standard alphabet) decodes to itself.
pub fn base64(data: &[u8]) {
    if let Ok(decoded) = base64::decode(data) {
        assert!(decoded.len() <= data.len() / 4 * 3 + 3);
        let mut again = Vec::new();
        reply::base64_chunk(&mut again, &decoded);
        assert_eq!(base64::decode(&again).ok(), Some(decoded));
    }
}

/// A reply as the server writes it, for any result the broker could send
/// (decoded from `data` as the IPC would decode it). None when `data` is no
/// such result. The caller checks that the bytes are one line of JSON.
pub fn reply(data: &[u8]) -> Option<Vec<u8>> {
    let result: Result<ipc::Response, ipc::OpError> = ipc::codec::decode(data).ok()?;
    let mut out = Vec::new();
    match &result {
        // Streamed by the server: the two parts around the data.
        Ok(ipc::Response::FileRead { count, eof }) => {
            let (head, tail) = reply::file_read(None, *count, *eof);
            out.extend_from_slice(&head);
            reply::base64_chunk(&mut out, &vec![0x5a; (*count).min(4096) as usize]);
            out.extend_from_slice(&tail);
        }
        // Nothing at all is sent.
        Ok(ipc::Response::NoReply) => return None,
        Ok(response) => reply::success(&mut out, None, response, false),
        Err(e) => reply::error(&mut out, None, e.class(), e.to_string().as_bytes()),
    }
    Some(out)
}
