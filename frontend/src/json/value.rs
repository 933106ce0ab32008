use std::collections::BTreeMap;

/// A parsed JSON value. Numbers keep qemu's three kinds: a signed 64-bit
/// integer when the literal fits, else an unsigned one, else a double.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}
