//! Argument validation as qemu's QObject input visitor does it: members in
//! schema order (missing or mistyped members reported by their full name,
//! e.g. `vcpus[0].logical-id`), then any member the schema does not know.

use std::collections::BTreeMap;

use ipc::CaptureOutput;

use crate::json::{Json, echo};

/// A rejected argument; texts are qemu-ga's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// `Parameter 'x' is missing`
    Missing(String),
    /// `Parameter 'x' is unexpected`
    Unexpected(String),
    /// `Invalid parameter type for 'x', expected: T`
    Type { name: String, expected: &'static str },
    /// `Parameter 'x' expects T`
    Value { name: String, expected: &'static str },
    /// `Parameter 'x' does not accept value 'v'`
    NotAccepted { name: String, value: String },
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgError::Missing(n) => write!(f, "Parameter '{n}' is missing"),
            ArgError::Unexpected(n) => write!(f, "Parameter '{}' is unexpected", echo(n)),
            ArgError::Type { name, expected } => {
                write!(f, "Invalid parameter type for '{name}', expected: {expected}")
            }
            ArgError::Value { name, expected } => {
                write!(f, "Parameter '{name}' expects {expected}")
            }
            ArgError::NotAccepted { name, value } => {
                write!(f, "Parameter '{name}' does not accept value '{}'", echo(value))
            }
        }
    }
}

type Result<T> = std::result::Result<T, ArgError>;

/// The members of one object being visited.
pub struct Args<'a> {
    map: &'a BTreeMap<String, Json>,
    prefix: String,
    used: Vec<&'a str>,
}

impl<'a> Args<'a> {
    /// The top-level `arguments` object.
    pub fn new(map: &'a BTreeMap<String, Json>) -> Self {
        Args { map, prefix: String::new(), used: Vec::new() }
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn take(&mut self, name: &'static str) -> Option<&'a Json> {
        let (key, value) = self.map.get_key_value(name)?;
        self.used.push(key.as_str());
        Some(value)
    }

    fn required(&mut self, name: &'static str) -> Result<&'a Json> {
        self.take(name).ok_or_else(|| ArgError::Missing(self.full(name)))
    }

    pub fn int(&mut self, name: &'static str) -> Result<i64> {
        let v = self.required(name)?;
        as_int(v, || self.full(name))
    }

    /// A `GuestFileWhence` (QEMU 2.6 and later): an integer, or one of the
    /// names `set`, `cur`, `end` for 0, 1, 2.
    pub fn whence(&mut self, name: &'static str) -> Result<i64> {
        match self.required(name)? {
            Json::Str(s) => match s.as_str() {
                "set" => Ok(0),
                "cur" => Ok(1),
                "end" => Ok(2),
                other => Err(ArgError::NotAccepted { name: self.full(name), value: other.into() }),
            },
            v @ (Json::Int(_) | Json::UInt(_) | Json::Float(_)) => as_int(v, || self.full(name)),
            _ => Err(ArgError::Type { name: self.full(name), expected: "GuestFileWhence" }),
        }
    }

    /// `GuestExecCaptureOutput` (QEMU 8.0 and later): a boolean (true is
    /// `separated`), or a `GuestExecCaptureOutputMode` name.
    pub fn capture_output(&mut self, name: &'static str) -> Result<Option<CaptureOutput>> {
        let Some(v) = self.take(name) else { return Ok(None) };
        match v {
            Json::Bool(true) => Ok(Some(CaptureOutput::Separated)),
            Json::Bool(false) => Ok(Some(CaptureOutput::None)),
            Json::Str(s) => Ok(Some(match s.as_str() {
                "none" => CaptureOutput::None,
                "stdout" => CaptureOutput::Stdout,
                "stderr" => CaptureOutput::Stderr,
                "separated" => CaptureOutput::Separated,
                "merged" => CaptureOutput::Merged,
                other => {
                    return Err(ArgError::NotAccepted {
                        name: self.full(name),
                        value: other.into(),
                    });
                }
            })),
            _ => Err(ArgError::Type { name: self.full(name), expected: "GuestExecCaptureOutput" }),
        }
    }

    pub fn opt_int(&mut self, name: &'static str) -> Result<Option<i64>> {
        self.take(name).map(|v| as_int(v, || self.full(name))).transpose()
    }

    pub fn uint64(&mut self, name: &'static str) -> Result<u64> {
        let v = self.required(name)?;
        match v {
            Json::UInt(u) => Ok(*u),
            // qemu accepts negative values for uint64 and wraps them.
            Json::Int(i) => Ok(*i as u64),
            _ => Err(ArgError::Value { name: self.full(name), expected: "uint64" }),
        }
    }

    pub fn string(&mut self, name: &'static str) -> Result<&'a str> {
        let v = self.required(name)?;
        as_str(v, || self.full(name))
    }

    pub fn opt_string(&mut self, name: &'static str) -> Result<Option<&'a str>> {
        self.take(name).map(|v| as_str(v, || self.full(name))).transpose()
    }

    pub fn bool(&mut self, name: &'static str) -> Result<bool> {
        let v = self.required(name)?;
        as_bool(v, || self.full(name))
    }

    pub fn opt_bool(&mut self, name: &'static str) -> Result<Option<bool>> {
        self.take(name).map(|v| as_bool(v, || self.full(name))).transpose()
    }

    /// A list whose elements `each` converts; `each` gets the element and its
    /// full name (`name[i]`).
    pub fn list<T>(
        &mut self,
        name: &'static str,
        each: impl FnMut(&'a Json, String) -> Result<T>,
    ) -> Result<Vec<T>> {
        let v = self.required(name)?;
        self.list_of(v, name, each)
    }

    pub fn opt_list<T>(
        &mut self,
        name: &'static str,
        each: impl FnMut(&'a Json, String) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => self.list_of(v, name, each).map(Some),
        }
    }

    fn list_of<T>(
        &self,
        v: &'a Json,
        name: &'static str,
        mut each: impl FnMut(&'a Json, String) -> Result<T>,
    ) -> Result<Vec<T>> {
        let Json::Array(items) = v else {
            return Err(ArgError::Type { name: self.full(name), expected: "array" });
        };
        let base = self.full(name);
        items.iter().enumerate().map(|(i, item)| each(item, format!("{base}[{i}]"))).collect()
    }

    /// All members have been visited: anything left is unexpected.
    pub fn finish(self) -> Result<()> {
        match self.map.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(k) => Err(ArgError::Unexpected(self.full(k))),
            None => Ok(()),
        }
    }
}

/// An element of a list of structs: visits its members under `name.`.
pub fn object<'a>(v: &'a Json, name: String) -> Result<Args<'a>> {
    match v {
        Json::Object(map) => Ok(Args { map, prefix: format!("{name}."), used: Vec::new() }),
        _ => Err(ArgError::Type { name, expected: "object" }),
    }
}

/// A list element that must be a string.
pub fn element_string(v: &Json, name: String) -> Result<String> {
    as_str(v, || name).map(str::to_owned)
}

fn as_int(v: &Json, name: impl FnOnce() -> String) -> Result<i64> {
    match v {
        Json::Int(i) => Ok(*i),
        _ => Err(ArgError::Type { name: name(), expected: "integer" }),
    }
}

fn as_str(v: &Json, name: impl FnOnce() -> String) -> Result<&str> {
    match v {
        Json::Str(s) => Ok(s),
        _ => Err(ArgError::Type { name: name(), expected: "string" }),
    }
}

fn as_bool(v: &Json, name: impl FnOnce() -> String) -> Result<bool> {
    match v {
        Json::Bool(b) => Ok(*b),
        _ => Err(ArgError::Type { name: name(), expected: "boolean" }),
    }
}
