//! Tokens of one message to a [`Json`] value, with qemu's grammar (single-
//! quoted strings, `\'` escapes) and its error texts. The first error wins.

use std::collections::BTreeMap;

use super::splitter::{Token, TokenKind};
use super::{Json, ParseError, utf8};

struct Parser<'a> {
    text: &'a [u8],
    tokens: &'a [Token],
    pos: usize,
}

/// Parses one complete message. Nesting is bounded by the splitter, so the
/// recursion here is too.
pub fn parse(text: &[u8], tokens: &[Token]) -> Result<Json, ParseError> {
    let mut p = Parser { text, tokens, pos: 0 };
    p.value()
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.pos).copied()
    }

    /// The next token; a message always ends with a token that balances it,
    /// so running out early can only mean it did not balance.
    fn pop(&mut self) -> Result<Token, ParseError> {
        let t = self.peek().ok_or(ParseError::ExpectingValue)?;
        self.pos += 1;
        Ok(t)
    }

    fn slice(&self, t: Token) -> &'a [u8] {
        &self.text[t.start as usize..t.end as usize]
    }

    fn value(&mut self) -> Result<Json, ParseError> {
        let t = self.peek().ok_or(ParseError::ExpectingValue)?;
        match t.kind {
            TokenKind::LCurly => self.object(),
            TokenKind::LSquare => self.array(),
            TokenKind::String => {
                self.pos += 1;
                string(self.slice(t)).map(Json::Str)
            }
            TokenKind::Integer => {
                self.pos += 1;
                Ok(integer(self.slice(t)))
            }
            TokenKind::Float => {
                self.pos += 1;
                Ok(Json::Float(float(self.slice(t))))
            }
            TokenKind::Keyword => {
                self.pos += 1;
                match self.slice(t) {
                    b"true" => Ok(Json::Bool(true)),
                    b"false" => Ok(Json::Bool(false)),
                    b"null" => Ok(Json::Null),
                    other => Err(invalid_keyword(other)),
                }
            }
            _ => Err(ParseError::ExpectingValue),
        }
    }

    fn object(&mut self) -> Result<Json, ParseError> {
        self.pos += 1; // '{'
        let mut map = BTreeMap::new();
        let first = self.peek().ok_or(ParseError::ExpectingValue)?;
        if first.kind == TokenKind::RCurly {
            self.pos += 1;
            return Ok(Json::Object(map));
        }
        self.pair(&mut map)?;
        loop {
            let t = self.pop()?;
            match t.kind {
                TokenKind::RCurly => return Ok(Json::Object(map)),
                TokenKind::Comma => self.pair(&mut map)?,
                _ => return Err(ParseError::ExpectedDictSeparator),
            }
        }
    }

    fn pair(&mut self, map: &mut BTreeMap<String, Json>) -> Result<(), ParseError> {
        let Json::Str(key) = self.value()? else {
            return Err(ParseError::KeyNotString);
        };
        if self.pop()?.kind != TokenKind::Colon {
            return Err(ParseError::MissingColon);
        }
        let value = self.value()?;
        if map.contains_key(&key) {
            return Err(ParseError::DuplicateKey);
        }
        map.insert(key, value);
        Ok(())
    }

    fn array(&mut self) -> Result<Json, ParseError> {
        self.pos += 1; // '['
        let mut list = Vec::new();
        let first = self.peek().ok_or(ParseError::ExpectingValue)?;
        if first.kind == TokenKind::RSquare {
            self.pos += 1;
            return Ok(Json::Array(list));
        }
        list.push(self.value()?);
        loop {
            let t = self.pop()?;
            match t.kind {
                TokenKind::RSquare => return Ok(Json::Array(list)),
                TokenKind::Comma => list.push(self.value()?),
                _ => return Err(ParseError::ExpectedListSeparator),
            }
        }
    }
}

/// A signed integer when it fits, else unsigned, else a double (qemu's rule).
fn integer(t: &[u8]) -> Json {
    // The lexer only produces ASCII digits with an optional leading '-'.
    let s = std::str::from_utf8(t).unwrap_or("0");
    if let Ok(v) = s.parse::<i64>() {
        Json::Int(v)
    } else if let (false, Ok(v)) = (s.starts_with('-'), s.parse::<u64>()) {
        Json::UInt(v)
    } else {
        Json::Float(float(t))
    }
}

fn float(t: &[u8]) -> f64 {
    std::str::from_utf8(t).ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN)
}

/// qemu quotes the whole keyword; a long one is cut short (as stray tokens
/// are), so that garbage cannot make the agent echo megabytes. Out of line:
/// the parser recurses once per nesting level, and its frame stays small.
#[cold]
#[inline(never)]
fn invalid_keyword(k: &[u8]) -> ParseError {
    if k.len() > super::MAX_ECHOED_BYTES {
        let prefix = &k[..super::MAX_ECHOED_BYTES];
        return ParseError::InvalidKeyword(format!("{}...", String::from_utf8_lossy(prefix)));
    }
    ParseError::InvalidKeyword(String::from_utf8_lossy(k).into_owned())
}

fn hex4(s: &[u8]) -> Option<u32> {
    let digits = s.get(..4)?;
    digits.iter().try_fold(0u32, |acc, &c| char::from(c).to_digit(16).map(|d| (acc << 4) | d))
}

/// Decodes a string token (quotes included).
fn string(t: &[u8]) -> Result<String, ParseError> {
    let quote = t[0];
    let body = &t[1..];
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() && body[i] != quote {
        if body[i] == b'\\' {
            let begin = i;
            i += 1;
            let c = body.get(i).copied().unwrap_or(0);
            i += 1;
            match c {
                b'"' => out.push('"'),
                b'\'' => out.push('\''),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let mut cp = hex4(&body[i..]);
                    i += 4;
                    if let Some(high @ 0xD800..=0xDBFF) = cp {
                        if body.get(i..i + 2) == Some(b"\\u".as_slice()) {
                            match hex4(&body[i + 2..]) {
                                Some(low @ 0xDC00..=0xDFFF) => {
                                    cp = Some(0x10000 + ((high & 0x3FF) << 10) + (low & 0x3FF));
                                    i += 6;
                                }
                                _ => cp = None,
                            }
                        }
                    }
                    match cp.and_then(utf8::valid_scalar) {
                        Some(ch) => out.push(ch),
                        None => {
                            // Quote the escape as far as the token goes (qemu
                            // prints up to its end of string).
                            let shown = &body[begin..i.min(body.len())];
                            return Err(ParseError::InvalidUnicodeEscape(
                                String::from_utf8_lossy(shown).into_owned(),
                            ));
                        }
                    }
                }
                _ => return Err(ParseError::InvalidEscape),
            }
        } else {
            let (ch, used) = utf8::decode(&body[i..]);
            match ch {
                Some(ch) => out.push(ch),
                None => return Err(ParseError::InvalidUtf8),
            }
            i += used;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Splitter};
    use super::*;

    fn parse_str(s: &[u8]) -> Result<Json, ParseError> {
        let mut sp = Splitter::new();
        let mut out = Vec::new();
        let mut input = s.to_vec();
        input.push(b' ');
        sp.feed(&input, &mut |e| out.push(e));
        match out.into_iter().next() {
            Some(Event::Value(v)) => Ok(v),
            Some(Event::Error(e)) => Err(e),
            None => panic!("no event for {:?}", String::from_utf8_lossy(s)),
        }
    }

    #[test]
    fn qemu_error_texts() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (br#"{"a":1,"a":2}"#, DuplicateKey),
            (br#"{"a":1,}"#, ExpectingValue),
            (br#"{"a" 1}"#, MissingColon),
            (b"{1:2}", KeyNotString),
            (br#"{"a":}"#, ExpectingValue),
            (b"[1 2]", ExpectedListSeparator),
            (br#"{"a":1 "b":2}"#, ExpectedDictSeparator),
            (b"[1,]", ExpectingValue),
            (b"nul", InvalidKeyword("nul".into())),
            (
                b"truuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuue",
                InvalidKeyword("truuuuuuuuuuuuuuuuuuuuuuuuuuuuuu...".into()),
            ),
            (br#""\x""#, InvalidEscape),
            (br#""\ud800""#, InvalidUnicodeEscape("\\ud800".into())),
            (br#""\ud800\u0041""#, InvalidUnicodeEscape("\\ud800".into())),
            (br#""\uFFFE""#, InvalidUnicodeEscape("\\uFFFE".into())),
            (br#""\u12G4""#, InvalidUnicodeEscape("\\u12G4".into())),
            (br#""\u1""#, InvalidUnicodeEscape("\\u1\"".into())),
            (b"\"\xc3\x28\"", InvalidUtf8),
            (b"\"\xed\xa0\x80\"", InvalidUtf8),
            (b"}", ExpectingValue),
            (b"]", ExpectingValue),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_str(input).as_ref(),
                Err(want),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn values() {
        assert_eq!(parse_str(b"-0"), Ok(Json::Int(0)));
        assert_eq!(parse_str(b"9223372036854775807"), Ok(Json::Int(i64::MAX)));
        assert_eq!(parse_str(b"9223372036854775808"), Ok(Json::UInt(1 << 63)));
        assert_eq!(parse_str(b"18446744073709551616"), Ok(Json::Float(18446744073709551616.0)));
        assert_eq!(parse_str(b"-9223372036854775809"), Ok(Json::Float(-9223372036854775809.0)));
        assert_eq!(parse_str(b"1.5e1"), Ok(Json::Float(15.0)));
        assert_eq!(parse_str(br"'it\'s'"), Ok(Json::Str("it's".into())));
        assert_eq!(parse_str(br#"'say "hi"'"#), Ok(Json::Str("say \"hi\"".into())));
        assert_eq!(parse_str(br#""\u00e9\ud83d\ude00\/\'""#), Ok(Json::Str("é😀/'".into())));
        assert_eq!(parse_str(b"\"\xc0\x80\""), Ok(Json::Str("\0".into())));
        assert_eq!(parse_str(b"true"), Ok(Json::Bool(true)));
        assert_eq!(parse_str(b"null"), Ok(Json::Null));
    }
}
