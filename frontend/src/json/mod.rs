//! JSON as qemu-ga speaks it: a streaming splitter that turns a byte stream
//! into messages (with 0xFF resynchronisation), a parser with qemu's grammar
//! extensions and error texts, and a writer with qemu's output format.

pub mod parser;
pub mod splitter;
pub mod utf8;
pub mod value;
pub mod writer;

pub use splitter::{Event, Splitter};
pub use value::Json;

/// Largest message: the sum of its token sizes (qemu's 64 MiB limit, which
/// admits a `guest-file-write` of 48 MiB in base64).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Most tokens in one message.
pub const MAX_TOKENS: usize = 1 << 20;
/// Deepest nesting of arrays and objects (qemu's limit).
pub const MAX_NESTING: i64 = 1024;
/// Most bytes of offending input quoted back in a "stray" error, so that
/// garbage never makes the agent write more than it read.
pub const MAX_ECHOED_BYTES: usize = 32;

/// Host-chosen text quoted in an error message (a member name, a command
/// name, a mode): at most [`MAX_ECHOED_BYTES`] of it, then "..." when cut.
/// qemu-ga quotes it whole; the texts agree for anything shorter.
pub fn echo(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_ECHOED_BYTES {
        return text.into();
    }
    let mut end = MAX_ECHOED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

/// Why the input did not form a JSON value. Each maps to qemu's text in
/// [`ParseError::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A byte that cannot start or continue a token; holds (a prefix of) the
    /// token so far, and whether it was cut short.
    Stray {
        token: Vec<u8>,
        truncated: bool,
    },
    TokenSizeLimit,
    TokenCountLimit,
    NestingLimit,
    ExpectingValue,
    KeyNotString,
    MissingColon,
    DuplicateKey,
    ExpectedDictSeparator,
    ExpectedListSeparator,
    InvalidKeyword(String),
    InvalidEscape,
    InvalidUnicodeEscape(String),
    InvalidUtf8,
}

impl ParseError {
    /// The `desc` qemu-ga sends, as bytes (a stray token may hold invalid
    /// UTF-8, which the writer replaces as qemu does).
    pub fn describe(&self) -> Vec<u8> {
        let mut s = b"JSON ".to_vec();
        match self {
            ParseError::Stray { token, truncated } => {
                s.extend_from_slice(b"parse error, stray '");
                // qemu's token is a C string: it ends at a NUL byte.
                let end = token.iter().position(|&b| b == 0).unwrap_or(token.len());
                s.extend_from_slice(&token[..end]);
                if *truncated {
                    s.extend_from_slice(b"...");
                }
                s.push(b'\'');
            }
            ParseError::TokenSizeLimit => s.extend_from_slice(b"token size limit exceeded"),
            ParseError::TokenCountLimit => s.extend_from_slice(b"token count limit exceeded"),
            ParseError::NestingLimit => s.extend_from_slice(b"nesting depth limit exceeded"),
            ParseError::InvalidKeyword(k) => {
                s.extend_from_slice(b"parse error, invalid keyword '");
                s.extend_from_slice(k.as_bytes());
                s.push(b'\'');
            }
            ParseError::InvalidUnicodeEscape(e) => {
                s.extend_from_slice(b"parse error, ");
                s.extend_from_slice(e.as_bytes());
                s.extend_from_slice(b" is not a valid Unicode character");
            }
            ParseError::ExpectingValue => s.extend_from_slice(b"parse error, expecting value"),
            ParseError::KeyNotString => {
                s.extend_from_slice(b"parse error, key is not a string in object")
            }
            ParseError::MissingColon => {
                s.extend_from_slice(b"parse error, missing : in object pair")
            }
            ParseError::DuplicateKey => s.extend_from_slice(b"parse error, duplicate key"),
            ParseError::ExpectedDictSeparator => {
                s.extend_from_slice(b"parse error, expected separator in dict")
            }
            ParseError::ExpectedListSeparator => {
                s.extend_from_slice(b"parse error, expected separator in list")
            }
            ParseError::InvalidEscape => {
                s.extend_from_slice(b"parse error, invalid escape sequence in string")
            }
            ParseError::InvalidUtf8 => {
                s.extend_from_slice(b"parse error, invalid UTF-8 sequence in string")
            }
        }
        s
    }
}
