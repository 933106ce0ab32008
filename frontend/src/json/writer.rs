//! JSON output exactly as qemu-ga formats it: `{"a": 1, "b": [1, 2]}`, every
//! non-ASCII or control character as an uppercase `\uXXXX` escape, doubles as
//! C's `%.17g`.

use std::io::Write;

use super::{Json, utf8};

/// Appends `s` as a JSON string. Bytes that are not (modified) UTF-8 become
/// U+FFFD, as in qemu.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        // Fast path: plain printable ASCII needs no escaping.
        let run = s[i..]
            .iter()
            .position(|&c| !(0x20..0x7F).contains(&c) || c == b'"' || c == b'\\')
            .unwrap_or(s.len() - i);
        out.extend_from_slice(&s[i..i + run]);
        i += run;
        if i == s.len() {
            break;
        }
        let (ch, used) = utf8::decode(&s[i..]);
        i += used.max(1);
        let cp = ch.map_or(0xFFFD, u32::from);
        match cp {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5C => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            0x0A => out.extend_from_slice(b"\\n"),
            0x0D => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x10000.. => {
                let v = cp - 0x10000;
                let _ = write!(out, "\\u{:04X}\\u{:04X}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            }
            _ => {
                let _ = write!(out, "\\u{cp:04X}");
            }
        }
    }
    out.push(b'"');
}

pub fn int(out: &mut Vec<u8>, v: i64) {
    let _ = write!(out, "{v}");
}

/// C's `printf("%.17g")`. Infinities (from literals too large for a double)
/// are written as `1e999`, which is valid JSON and reads back as infinity,
/// where qemu would write the invalid `inf`.
pub fn double(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(if v.is_sign_negative() { b"-1e999" } else { b"1e999" });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    const P: i32 = 17;
    let sci = format!("{:.*e}", (P - 1) as usize, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..P).contains(&exp) {
        out.extend_from_slice(strip_zeros(mantissa).as_bytes());
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else {
        let fixed = format!("{:.*}", (P - 1 - exp) as usize, v);
        out.extend_from_slice(strip_zeros(&fixed).as_bytes());
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s }
}

pub fn value(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Int(i) => int(out, *i),
        Json::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Json::Float(f) => double(out, *f),
        Json::Str(s) => string(out, s.as_bytes()),
        Json::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                value(out, item);
            }
            out.push(b']');
        }
        Json::Object(map) => {
            let mut obj = Object::new(out);
            for (k, item) in map {
                value(obj.key(k), item);
            }
            obj.end();
        }
    }
}

/// Writes an object member by member: `{"a": 1, "b": 2}`.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Writes the key of the next member; the caller writes its value into
    /// the returned buffer.
    pub fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.extend_from_slice(b", ");
        }
        self.first = false;
        string(self.out, k.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: f64) -> String {
        let mut out = Vec::new();
        double(&mut out, v);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn doubles_like_printf_17g() {
        // Each pair was observed from qemu-ga 7.2 echoing an id.
        assert_eq!(d(1.5), "1.5");
        assert_eq!(d(0.1), "0.10000000000000001");
        assert_eq!(d(100.0), "100");
        assert_eq!(d(18446744073709551616.0), "1.8446744073709552e+19");
        assert_eq!(d(-0.0), "-0");
        assert_eq!(d(1.2345678901234568e29), "1.2345678901234568e+29");
        assert_eq!(d(0.30000000000000004), "0.30000000000000004");
        assert_eq!(d(1e-7), "9.9999999999999995e-08");
        assert_eq!(d(1e16), "10000000000000000");
        assert_eq!(d(1e17), "1e+17");
        assert_eq!(d(-1.5e-300), "-1.5000000000000001e-300");
        assert_eq!(d(f64::INFINITY), "1e999");
    }

    #[test]
    fn strings_escape_like_qemu() {
        let mut out = Vec::new();
        string(&mut out, "é😀\u{1}/\"\\\n\0\u{7f}".as_bytes());
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            r#""\u00E9\uD83D\uDE00\u0001/\"\\\n\u0000\u007F""#
        );
        let mut out = Vec::new();
        string(&mut out, b"stray '\xff'");
        assert_eq!(out, br#""stray '\uFFFD'""#);
    }

    #[test]
    fn objects_and_arrays() {
        let v = Json::Object(
            [
                ("b".to_string(), Json::Int(1)),
                ("a".to_string(), Json::Array(vec![Json::Null, Json::Bool(true)])),
                ("c".to_string(), Json::Object(Default::default())),
            ]
            .into(),
        );
        let mut out = Vec::new();
        value(&mut out, &v);
        assert_eq!(out, br#"{"a": [null, true], "b": 1, "c": {}}"#);
    }
}
