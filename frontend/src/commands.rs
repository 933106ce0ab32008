//! The QAPI schema of every command: arguments checked in schema order and
//! turned into a typed [`Request`]. Checks qemu-ga makes on argument syntax
//! alone (mode names, base64) are made here too, for the same error; the
//! broker checks everything again.

use std::collections::BTreeMap;

use ipc::{
    Bytes, CaptureOutput, Command, ExecRequest, FileMode, LogicalProcessor, MemoryBlock, Request,
    Secret, ShutdownMode, SshKey,
};

use crate::args::{self, ArgError, Args};
use crate::base64;
use crate::json::{Json, echo};

/// A rejected argument value (the type was right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidArg {
    ShutdownMode,
    FileMode(String),
    Base64,
}

impl std::fmt::Display for InvalidArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Sic: qemu-ga's text has no closing parenthesis.
            InvalidArg::ShutdownMode => {
                f.write_str("mode is invalid (valid values are: halt|powerdown|reboot")
            }
            InvalidArg::FileMode(m) => write!(f, "invalid file open mode '{}'", echo(m)),
            InvalidArg::Base64 => f.write_str("Base64 data contains invalid characters"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Arg(ArgError),
    Invalid(InvalidArg),
}

impl From<ArgError> for ArgsError {
    fn from(e: ArgError) -> Self {
        ArgsError::Arg(e)
    }
}

impl From<base64::InvalidBase64> for ArgsError {
    fn from(_: base64::InvalidBase64) -> Self {
        ArgsError::Invalid(InvalidArg::Base64)
    }
}

type Result<T> = std::result::Result<T, ArgsError>;

/// Validates the arguments of `command` and builds its request.
pub fn build(command: Command, arguments: &BTreeMap<String, Json>) -> Result<Request> {
    let mut a = Args::new(arguments);
    let request = match command {
        Command::SyncDelimited => Request::Sync { id: a.int("id")?, delimited: true },
        Command::Sync => Request::Sync { id: a.int("id")?, delimited: false },
        Command::Ping => Request::Ping,
        Command::GetTime => Request::GetTime,
        Command::SetTime => Request::SetTime { time: a.opt_int("time")? },
        Command::Info => Request::Info,
        Command::Shutdown => {
            let mode = match a.opt_string("mode")? {
                None => ShutdownMode::Powerdown,
                Some(m) => ShutdownMode::from_name(m)
                    .ok_or(ArgsError::Invalid(InvalidArg::ShutdownMode))?,
            };
            Request::Shutdown { mode }
        }
        Command::FileOpen => {
            let path = a.string("path")?.to_owned();
            let mode = match a.opt_string("mode")? {
                None => FileMode::R,
                Some(m) => FileMode::from_name(m)
                    .ok_or_else(|| ArgsError::Invalid(InvalidArg::FileMode(m.to_owned())))?,
            };
            Request::FileOpen { path, mode }
        }
        Command::FileClose => Request::FileClose { handle: a.int("handle")? },
        Command::FileRead => {
            Request::FileRead { handle: a.int("handle")?, count: a.opt_int("count")? }
        }
        Command::FileWrite => {
            let handle = a.int("handle")?;
            let data = a.string("buf-b64")?;
            let count = a.opt_int("count")?;
            a.finish()?;
            let data = Bytes(base64::decode(data.as_bytes())?);
            return Ok(Request::FileWrite { handle, data, count });
        }
        Command::FileSeek => Request::FileSeek {
            handle: a.int("handle")?,
            offset: a.int("offset")?,
            whence: a.whence("whence")?,
        },
        Command::FileFlush => Request::FileFlush { handle: a.int("handle")? },
        Command::FsfreezeStatus => Request::FsfreezeStatus,
        Command::FsfreezeFreeze => Request::FsfreezeFreeze,
        Command::FsfreezeFreezeList => Request::FsfreezeFreezeList {
            mountpoints: a.opt_list("mountpoints", args::element_string)?,
        },
        Command::FsfreezeThaw => Request::FsfreezeThaw,
        Command::Fstrim => Request::Fstrim { minimum: a.opt_int("minimum")? },
        Command::SuspendDisk => Request::SuspendDisk,
        Command::SuspendRam => Request::SuspendRam,
        Command::SuspendHybrid => Request::SuspendHybrid,
        Command::NetworkGetInterfaces => Request::NetworkGetInterfaces,
        Command::GetVcpus => Request::GetVcpus,
        Command::SetVcpus => Request::SetVcpus {
            vcpus: a.list("vcpus", |v, name| {
                let mut o = args::object(v, name)?;
                let cpu = LogicalProcessor {
                    logical_id: o.int("logical-id")?,
                    online: o.bool("online")?,
                    can_offline: o.opt_bool("can-offline")?,
                };
                o.finish()?;
                Ok(cpu)
            })?,
        },
        Command::GetFsinfo => Request::GetFsinfo,
        Command::SetUserPassword => {
            let username = a.string("username")?.to_owned();
            let password = a.string("password")?;
            let crypted = a.bool("crypted")?;
            a.finish()?;
            let password = Secret::new(base64::decode_secret(password.as_bytes())?);
            return Ok(Request::SetUserPassword { username, password, crypted });
        }
        Command::GetMemoryBlocks => Request::GetMemoryBlocks,
        Command::SetMemoryBlocks => Request::SetMemoryBlocks {
            blocks: a.list("mem-blks", |v, name| {
                let mut o = args::object(v, name)?;
                let block = MemoryBlock {
                    phys_index: o.uint64("phys-index")?,
                    online: o.bool("online")?,
                    can_offline: o.opt_bool("can-offline")?,
                };
                o.finish()?;
                Ok(block)
            })?,
        },
        Command::GetMemoryBlockInfo => Request::GetMemoryBlockInfo,
        Command::ExecStatus => Request::ExecStatus { pid: a.int("pid")? },
        Command::Exec => {
            let path = a.string("path")?.to_owned();
            let args = a.opt_list("arg", args::element_string)?.unwrap_or_default();
            let env = a.opt_list("env", args::element_string)?.unwrap_or_default();
            let input = a.opt_string("input-data")?;
            let capture = a.capture_output("capture-output")?.unwrap_or(CaptureOutput::None);
            a.finish()?;
            let input = input.map(|i| base64::decode(i.as_bytes()).map(Bytes)).transpose()?;
            return Ok(Request::Exec(ExecRequest { path, args, env, input, capture }));
        }
        Command::GetDisks => Request::GetDisks,
        Command::GetHostName => Request::GetHostName,
        Command::GetUsers => Request::GetUsers,
        Command::GetTimezone => Request::GetTimezone,
        Command::GetOsinfo => Request::GetOsinfo,
        Command::GetDevices => Request::GetDevices,
        Command::SshGetAuthorizedKeys => {
            Request::SshGetAuthorizedKeys { username: a.string("username")?.to_owned() }
        }
        Command::SshAddAuthorizedKeys => Request::SshAddAuthorizedKeys {
            username: a.string("username")?.to_owned(),
            keys: a.list("keys", ssh_key)?,
            reset: a.opt_bool("reset")?.unwrap_or(false),
        },
        Command::SshRemoveAuthorizedKeys => Request::SshRemoveAuthorizedKeys {
            username: a.string("username")?.to_owned(),
            keys: a.list("keys", ssh_key)?,
        },
        Command::GetDiskstats => Request::GetDiskstats,
        Command::GetCpustats => Request::GetCpustats,
        Command::GetLoad => Request::GetLoad,
        Command::NetworkGetRoute => Request::NetworkGetRoute,
    };
    a.finish()?;
    Ok(request)
}

/// A key line, with the blob its base64 body decodes to when it holds a
/// key (the broker checks the blob against the line without decoding).
fn ssh_key(v: &Json, name: String) -> std::result::Result<SshKey, ArgError> {
    use ::base64::Engine;
    use ::base64::engine::general_purpose::STANDARD;
    let line = args::element_string(v, name)?;
    let blob = ipc::ssh_key::decoded_blob(&line, |body| STANDARD.decode(body).ok()).map(Bytes);
    Ok(SshKey { line, blob })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Event, Splitter};

    fn args_of(text: &str) -> BTreeMap<String, Json> {
        let mut s = Splitter::new();
        let mut out = Vec::new();
        s.feed(text.as_bytes(), &mut |e| out.push(e));
        match out.pop() {
            Some(Event::Value(Json::Object(m))) => m,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn err(command: Command, text: &str) -> String {
        match build(command, &args_of(text)) {
            Err(ArgsError::Arg(e)) => e.to_string(),
            Err(ArgsError::Invalid(e)) => e.to_string(),
            Ok(r) => panic!("accepted: {r:?}"),
        }
    }

    #[test]
    fn qemu_ga_argument_errors() {
        // Each text was observed from qemu-ga 7.2 with the same arguments.
        let cases = [
            (Command::Sync, "{}", "Parameter 'id' is missing"),
            (Command::Sync, r#"{"id":1,"x":2}"#, "Parameter 'x' is unexpected"),
            (Command::Sync, r#"{"id":"s"}"#, "Invalid parameter type for 'id', expected: integer"),
            (Command::Sync, r#"{"id":1.0}"#, "Invalid parameter type for 'id', expected: integer"),
            (
                Command::Sync,
                r#"{"id":9223372036854775808}"#,
                "Invalid parameter type for 'id', expected: integer",
            ),
            (Command::Sync, r#"{"x":1,"y":2}"#, "Parameter 'id' is missing"),
            (Command::Exec, r#"{"path":1}"#, "Invalid parameter type for 'path', expected: string"),
            (
                Command::Exec,
                r#"{"path":"/bin/true","arg":[1]}"#,
                "Invalid parameter type for 'arg[0]', expected: string",
            ),
            (
                Command::Exec,
                r#"{"path":"/bin/true","arg":"x"}"#,
                "Invalid parameter type for 'arg', expected: array",
            ),
            (
                Command::Exec,
                r#"{"path":"/bin/true","capture-output":"yes"}"#,
                "Parameter 'capture-output' does not accept value 'yes'",
            ),
            (
                Command::Exec,
                r#"{"path":"/bin/true","capture-output":1}"#,
                "Invalid parameter type for 'capture-output', expected: GuestExecCaptureOutput",
            ),
            (Command::SshAddAuthorizedKeys, r#"{"username":"u"}"#, "Parameter 'keys' is missing"),
            (
                Command::SshAddAuthorizedKeys,
                r#"{"username":"u","keys":["a"],"reset":1}"#,
                "Invalid parameter type for 'reset', expected: boolean",
            ),
            (
                Command::SshRemoveAuthorizedKeys,
                r#"{"username":"u","keys":[1]}"#,
                "Invalid parameter type for 'keys[0]', expected: string",
            ),
            (Command::GetUsers, r#"{"x":1}"#, "Parameter 'x' is unexpected"),
            (
                Command::SetVcpus,
                r#"{"vcpus":[{"logical-id":"a"}]}"#,
                "Invalid parameter type for 'vcpus[0].logical-id', expected: integer",
            ),
            (
                Command::SetVcpus,
                r#"{"vcpus":[{"online":true}]}"#,
                "Parameter 'vcpus[0].logical-id' is missing",
            ),
            (
                Command::SetVcpus,
                r#"{"vcpus":[{"logical-id":1,"online":true,"z":1}]}"#,
                "Parameter 'vcpus[0].z' is unexpected",
            ),
            (
                Command::SetMemoryBlocks,
                r#"{"mem-blks":[{"phys-index":1.5,"online":true}]}"#,
                "Parameter 'mem-blks[0].phys-index' expects uint64",
            ),
            (
                Command::FsfreezeFreezeList,
                r#"{"mountpoints":null}"#,
                "Invalid parameter type for 'mountpoints', expected: array",
            ),
            (
                Command::SetTime,
                r#"{"time":null}"#,
                "Invalid parameter type for 'time', expected: integer",
            ),
            (
                Command::SetTime,
                r#"{"time":1e3}"#,
                "Invalid parameter type for 'time', expected: integer",
            ),
            (
                Command::FileOpen,
                r#"{"path":"/x","mode":null}"#,
                "Invalid parameter type for 'mode', expected: string",
            ),
            (Command::FileOpen, r#"{"path":"/x","mode":"zz"}"#, "invalid file open mode 'zz'"),
            (
                Command::Shutdown,
                r#"{"mode":5}"#,
                "Invalid parameter type for 'mode', expected: string",
            ),
            (
                Command::Shutdown,
                r#"{"mode":"bad"}"#,
                "mode is invalid (valid values are: halt|powerdown|reboot",
            ),
            (Command::Ping, r#"{"a":1}"#, "Parameter 'a' is unexpected"),
            (
                Command::SetUserPassword,
                r#"{"username":"x","password":"!!!","crypted":false}"#,
                "Base64 data contains invalid characters",
            ),
        ];
        for (command, text, want) in cases {
            assert_eq!(err(command, text), want, "{command} {text}");
        }
    }

    #[test]
    fn typed_requests() {
        assert_eq!(
            build(
                Command::SetMemoryBlocks,
                &args_of(r#"{"mem-blks":[{"phys-index":-1,"online":true}]}"#)
            ),
            Ok(Request::SetMemoryBlocks {
                blocks: vec![MemoryBlock { phys_index: u64::MAX, online: true, can_offline: None }]
            })
        );
        assert_eq!(
            build(Command::Shutdown, &args_of("{}")),
            Ok(Request::Shutdown { mode: ShutdownMode::Powerdown })
        );
        assert_eq!(
            build(Command::FileOpen, &args_of(r#"{"path":"/x","mode":"r+b"}"#)),
            Ok(Request::FileOpen { path: "/x".into(), mode: FileMode::RPlusB })
        );
        let Ok(Request::Exec(e)) = build(
            Command::Exec,
            &args_of(
                r#"{"path":"/bin/echo","arg":["a"],"input-data":"aGk=","capture-output":true}"#,
            ),
        ) else {
            panic!("exec not built")
        };
        assert_eq!(e.input, Some(Bytes(b"hi".to_vec())));
        assert_eq!(e.capture, CaptureOutput::Separated);
        assert_eq!(e.args, vec!["a".to_string()]);
        for (mode, want) in [
            ("\"merged\"", CaptureOutput::Merged),
            ("\"stdout\"", CaptureOutput::Stdout),
            ("\"stderr\"", CaptureOutput::Stderr),
            ("\"none\"", CaptureOutput::None),
            ("false", CaptureOutput::None),
        ] {
            let text = format!(r#"{{"path":"/bin/true","capture-output":{mode}}}"#);
            let Ok(Request::Exec(e)) = build(Command::Exec, &args_of(&text)) else {
                panic!("exec not built")
            };
            assert_eq!(e.capture, want, "{mode}");
        }
        assert_eq!(
            build(Command::SshAddAuthorizedKeys, &args_of(r#"{"username":"u","keys":["k"]}"#)),
            Ok(Request::SshAddAuthorizedKeys {
                username: "u".into(),
                keys: vec![SshKey { line: "k".into(), blob: None }],
                reset: false
            })
        );
        // A key line comes with the blob its base64 body decodes to.
        let line = "from=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIIkpnHIoGT8CbE92RDb0j0ey9oPJUKfPyt++VBFvj1 c";
        let text = format!(r#"{{"username":"u","keys":["{}"]}}"#, line.replace('"', "\\\""));
        let Ok(Request::SshRemoveAuthorizedKeys { keys, .. }) =
            build(Command::SshRemoveAuthorizedKeys, &args_of(&text))
        else {
            panic!("remove not built")
        };
        let blob = keys[0].blob.as_ref().expect("a blob");
        assert_eq!(blob.0.len(), 51);
        assert_eq!(&blob.0[4..15], b"ssh-ed25519");
    }
}
