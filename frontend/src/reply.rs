//! Replies as qemu-ga writes them: one JSON object and a newline; `return`
//! before `id`, `id` before `error`; a 0xFF byte before the reply to
//! `guest-sync-delimited`.

use ipc::{AgentInfo, ErrorClass, Response};

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

fn value(out: &mut Vec<u8>, response: &Response) {
    match response {
        Response::Empty | Response::NoReply => out.extend_from_slice(b"{}"),
        Response::Int(v) => writer::int(out, *v),
        Response::Info(info) => agent_info(out, info),
    }
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
