//! One parsed message to a call or a rejection, as qemu's QMP dispatcher
//! checks it: an object; only `execute`, `arguments` and `id` members;
//! `execute` a string naming a known, enabled command; arguments per schema.

use std::collections::BTreeMap;

use ipc::{CommandStates, ErrorClass, Request};

use crate::commands::{self, ArgsError};
use crate::json::{Json, ParseError, echo};

/// Why a request was not passed on to the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    Parse(ParseError),
    NotAnObject,
    LacksExecute,
    ExecuteNotString,
    ArgumentsNotObject,
    UnexpectedMember(String),
    CommandNotFound(String),
    Args(ArgsError),
}

impl RequestError {
    /// Errors about input that never named a command. A run of them is
    /// answered once (see [`crate::server`]), so that garbage cannot make the
    /// agent write more than a small multiple of what it reads.
    pub fn is_garbage(&self) -> bool {
        matches!(
            self,
            RequestError::Parse(_)
                | RequestError::NotAnObject
                | RequestError::LacksExecute
                | RequestError::ExecuteNotString
                | RequestError::ArgumentsNotObject
                | RequestError::UnexpectedMember(_)
        )
    }

    /// qemu-ga's error class and description.
    pub fn describe(&self) -> (ErrorClass, Vec<u8>) {
        let text = match self {
            RequestError::Parse(e) => return (ErrorClass::GenericError, e.describe()),
            RequestError::NotAnObject => "QMP input must be a JSON object".to_owned(),
            RequestError::LacksExecute => "QMP input lacks member 'execute'".to_owned(),
            RequestError::ExecuteNotString => {
                "QMP input member 'execute' must be a string".to_owned()
            }
            RequestError::ArgumentsNotObject => {
                "QMP input member 'arguments' must be an object".to_owned()
            }
            RequestError::UnexpectedMember(m) => {
                format!("QMP input member '{}' is unexpected", echo(m))
            }
            RequestError::CommandNotFound(name) => {
                return (
                    ErrorClass::CommandNotFound,
                    format!("The command {} has not been found", echo(name)).into_bytes(),
                );
            }
            RequestError::Args(ArgsError::Arg(e)) => e.to_string(),
            RequestError::Args(ArgsError::Invalid(e)) => e.to_string(),
        };
        (ErrorClass::GenericError, text.into_bytes())
    }
}

/// What goes to the broker, with the id to echo in the reply.
#[derive(Debug)]
pub struct Call {
    pub id: Option<Json>,
    pub kind: CallKind,
}

#[derive(Debug)]
pub enum CallKind {
    /// A valid request.
    Request(Request),
    /// A command the broker said is disabled: refused before its arguments
    /// are looked at, as qemu-ga orders its errors, but the broker still
    /// decides the reply and records the attempt.
    Disabled(ipc::Command),
}

/// A request answered with an error without asking the broker.
#[derive(Debug)]
pub struct Rejection {
    pub id: Option<Json>,
    pub error: RequestError,
}

pub fn interpret(value: Json, states: &CommandStates) -> Result<Call, Rejection> {
    let Json::Object(mut map) = value else {
        return Err(Rejection { id: None, error: RequestError::NotAnObject });
    };
    let id = map.remove("id");
    let result = check(&map, states);
    if carries_secret(&map) {
        // The password (as base64 text) is wiped, not just freed.
        map.values_mut().for_each(wipe);
    }
    match result {
        Ok(kind) => Ok(Call { id, kind }),
        Err(error) => Err(Rejection { id, error }),
    }
}

/// Whether this message names a command whose arguments hold a secret.
pub fn carries_secret(map: &BTreeMap<String, Json>) -> bool {
    matches!(map.get("execute"), Some(Json::Str(s)) if s == "guest-set-user-password")
}

/// Overwrites every string in `v` before it is freed.
fn wipe(v: &mut Json) {
    use zeroize::Zeroize;
    match v {
        Json::Str(s) => s.zeroize(),
        Json::Array(items) => items.iter_mut().for_each(wipe),
        Json::Object(members) => members.values_mut().for_each(wipe),
        _ => {}
    }
}

fn check(map: &BTreeMap<String, Json>, states: &CommandStates) -> Result<CallKind, RequestError> {
    let mut execute = None;
    let mut arguments = None;
    for (key, value) in map {
        match (key.as_str(), value) {
            ("execute", Json::Str(name)) => execute = Some(name.as_str()),
            ("execute", _) => return Err(RequestError::ExecuteNotString),
            ("arguments", Json::Object(args)) => arguments = Some(args),
            ("arguments", _) => return Err(RequestError::ArgumentsNotObject),
            (other, _) => return Err(RequestError::UnexpectedMember(other.to_owned())),
        }
    }
    let name = execute.ok_or(RequestError::LacksExecute)?;
    let command = ipc::Command::from_name(name)
        .ok_or_else(|| RequestError::CommandNotFound(name.to_owned()))?;
    if states.refusal(command).is_some() {
        return Ok(CallKind::Disabled(command));
    }
    let empty = BTreeMap::new();
    commands::build(command, arguments.unwrap_or(&empty))
        .map(CallKind::Request)
        .map_err(RequestError::Args)
}
