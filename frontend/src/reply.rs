//! Replies as qemu-ga writes them: one JSON object and a newline; `return`
//! before `id`, `id` before `error`; a 0xFF byte before the reply to
//! `guest-sync-delimited`.

use ipc::{AgentInfo, ErrorClass, ExecStatus, Response};

use crate::json::{Json, writer};

/// Sent before the reply to `guest-sync-delimited`.
pub const SENTINEL: u8 = 0xFF;

/// Appends the reply to a successful request; nothing for commands that
/// send no reply on success.
pub fn success(out: &mut Vec<u8>, id: Option<&Json>, response: &Response, delimited: bool) {
    if matches!(response, Response::NoReply) {
        return;
    }
    if delimited {
        out.push(SENTINEL);
    }
    let mut obj = writer::Object::new(out);
    value(obj.key("return"), response);
    if let Some(id) = id {
        writer::value(obj.key("id"), id);
    }
    obj.end();
    out.push(b'\n');
}

/// Appends an error reply.
pub fn error(out: &mut Vec<u8>, id: Option<&Json>, class: ErrorClass, desc: &[u8]) {
    let mut obj = writer::Object::new(out);
    if let Some(id) = id {
        writer::value(obj.key("id"), id);
    }
    let mut err = writer::Object::new(obj.key("error"));
    writer::string(err.key("class"), class.name().as_bytes());
    writer::string(err.key("desc"), desc);
    err.end();
    obj.end();
    out.push(b'\n');
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends `data` as a base64 JSON string, encoded straight into `out`.
fn base64_string(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine;
    out.push(b'"');
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

fn value(out: &mut Vec<u8>, response: &Response) {
    // Member order is qemu-ga's throughout.
    match response {
        Response::Empty | Response::NoReply => out.extend_from_slice(b"{}"),
        Response::Int(v) => writer::int(out, *v),
        Response::Info(info) => agent_info(out, info),
        Response::FileRead { data, eof } => {
            let mut o = writer::Object::new(out);
            writer::int(o.key("count"), data.0.len() as i64);
            base64_string(o.key("buf-b64"), &data.0);
            boolean(o.key("eof"), *eof);
            o.end();
        }
        Response::FileWrite { count, eof } => {
            let mut o = writer::Object::new(out);
            writer::int(o.key("count"), *count as i64);
            boolean(o.key("eof"), *eof);
            o.end();
        }
        Response::FileSeek { position, eof } => {
            let mut o = writer::Object::new(out);
            boolean(o.key("eof"), *eof);
            writer::int(o.key("position"), *position);
            o.end();
        }
        Response::Exec { pid } => {
            let mut o = writer::Object::new(out);
            writer::int(o.key("pid"), *pid);
            o.end();
        }
        Response::ExecStatus(s) => exec_status(out, s),
    }
}

fn exec_status(out: &mut Vec<u8>, s: &ExecStatus) {
    let mut o = writer::Object::new(out);
    if let Some(code) = s.exitcode {
        writer::int(o.key("exitcode"), i64::from(code));
    }
    if let Some(signal) = s.signal {
        writer::int(o.key("signal"), i64::from(signal));
    }
    if let Some(d) = &s.err_data {
        base64_string(o.key("err-data"), &d.0);
    }
    if let Some(d) = &s.out_data {
        base64_string(o.key("out-data"), &d.0);
    }
    if let Some(t) = s.err_truncated {
        boolean(o.key("err-truncated"), t);
    }
    if let Some(t) = s.out_truncated {
        boolean(o.key("out-truncated"), t);
    }
    boolean(o.key("exited"), s.exited);
    o.end();
}

fn agent_info(out: &mut Vec<u8>, info: &AgentInfo) {
    let mut obj = writer::Object::new(out);
    writer::string(obj.key("version"), info.version.as_bytes());
    let list = obj.key("supported_commands");
    list.push(b'[');
    // qemu-ga lists commands in reverse registration order.
    for (n, (command, enabled)) in info.commands.iter().rev().enumerate() {
        if n > 0 {
            list.extend_from_slice(b", ");
        }
        let mut c = writer::Object::new(list);
        c.key("enabled").extend_from_slice(if *enabled { b"true" } else { b"false" });
        writer::string(c.key("name"), command.name().as_bytes());
        c.key("success-response").extend_from_slice(if command.success_response() {
            b"true"
        } else {
            b"false"
        });
        c.end();
    }
    list.push(b']');
    obj.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::Command;

    #[test]
    fn shapes_match_qemu_ga() {
        let mut out = Vec::new();
        success(&mut out, None, &Response::Empty, false);
        assert_eq!(out, b"{\"return\": {}}\n");
        out.clear();
        success(&mut out, Some(&Json::Str("abc".into())), &Response::Empty, false);
        assert_eq!(out, b"{\"return\": {}, \"id\": \"abc\"}\n");
        out.clear();
        success(&mut out, None, &Response::Int(125), true);
        assert_eq!(out, b"\xff{\"return\": 125}\n");
        out.clear();
        error(
            &mut out,
            Some(&Json::Int(1)),
            ErrorClass::CommandNotFound,
            b"The command nope has not been found",
        );
        assert_eq!(
            out,
            b"{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\n"
        );
        out.clear();
        success(&mut out, None, &Response::NoReply, false);
        assert!(out.is_empty());
    }

    #[test]
    fn info_lists_commands_in_reverse() {
        let info = AgentInfo {
            version: "1.2.3".into(),
            commands: vec![(Command::Ping, true), (Command::Shutdown, false)],
        };
        let mut out = Vec::new();
        success(&mut out, None, &Response::Info(info), false);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "{\"return\": {\"version\": \"1.2.3\", \"supported_commands\": [\
             {\"enabled\": false, \"name\": \"guest-shutdown\", \"success-response\": false}, \
             {\"enabled\": true, \"name\": \"guest-ping\", \"success-response\": true}]}}\n"
        );
    }
}
