//! Splits the host's byte stream into JSON messages, as qemu's JSON lexer and
//! streamer do: a message ends when its brackets balance, any byte that cannot
//! be part of a token is an error after which input is skipped up to the next
//! structural character, control character or 0xFE/0xFF (so the host can
//! always resynchronise by sending 0xFF), and the size, token count and
//! nesting of a message are bounded.

use super::parser;
use super::{Json, MAX_ECHOED_BYTES, MAX_MESSAGE_BYTES, MAX_NESTING, MAX_TOKENS, ParseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Comma,
    Colon,
    Integer,
    Float,
    Keyword,
    String,
}

/// A token: its kind and its span in the message text.
#[derive(Debug, Clone, Copy)]
pub struct Token {
    pub kind: TokenKind,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Recovery,
    Str { quote: u8, escape: bool },
    Zero,
    Digits,
    Sign,
    Dot,
    Fraction,
    ExpE,
    ExpSign,
    ExpDigits,
    Keyword,
}

/// What the splitter produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Value(Json),
    Error(ParseError),
}

#[derive(Debug)]
pub struct Splitter {
    state: State,
    /// The bytes of every token of the current message, back to back.
    text: Vec<u8>,
    /// Where the token being lexed starts in `text`.
    token_start: usize,
    tokens: Vec<Token>,
    braces: i64,
    brackets: i64,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

fn is_structural(b: u8) -> bool {
    matches!(b, b'{' | b'}' | b'[' | b']' | b',' | b':')
}

impl Splitter {
    pub fn new() -> Self {
        Splitter {
            state: State::Start,
            text: Vec::new(),
            token_start: 0,
            tokens: Vec::new(),
            braces: 0,
            brackets: 0,
        }
    }

    /// Forgets any partial message (a new host connection).
    /// Overwrites the buffer that held the last message's text (it held a
    /// secret), including the space beyond its length.
    pub fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.text);
    }

    pub fn reset(&mut self) {
        self.clear_message();
        self.state = State::Start;
    }

    fn clear_message(&mut self) {
        self.text.clear();
        if self.text.capacity() > 64 * 1024 {
            self.text = Vec::new();
        }
        self.tokens.clear();
        if self.tokens.capacity() > 4096 {
            self.tokens = Vec::new();
        }
        self.token_start = 0;
        self.braces = 0;
        self.brackets = 0;
    }

    /// Feeds bytes; calls `emit` for every message or error they complete.
    pub fn feed(&mut self, data: &[u8], emit: &mut impl FnMut(Event)) {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                State::Start => {
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b'"' | b'\'' => self.begin(b, State::Str { quote: b, escape: false }),
                        b'0' => self.begin(b, State::Zero),
                        b'1'..=b'9' => self.begin(b, State::Digits),
                        b'-' => self.begin(b, State::Sign),
                        b'a'..=b'z' => self.begin(b, State::Keyword),
                        b'{' | b'}' | b'[' | b']' | b',' | b':' => {
                            self.begin(b, State::Start);
                            let kind = match b {
                                b'{' => TokenKind::LCurly,
                                b'}' => TokenKind::RCurly,
                                b'[' => TokenKind::LSquare,
                                b']' => TokenKind::RSquare,
                                b',' => TokenKind::Comma,
                                _ => TokenKind::Colon,
                            };
                            self.finish_token(kind, emit);
                        }
                        _ => {
                            self.begin(b, State::Start);
                            self.stray(emit);
                        }
                    }
                }
                State::Recovery => {
                    // Skip until a byte that can resynchronise.
                    let rest = &data[i..];
                    let skip = rest
                        .iter()
                        .position(|&c| (c < 0x20 && c != b'\t') || c >= 0xFE || is_structural(c))
                        .unwrap_or(rest.len());
                    i += skip;
                    if i < data.len() {
                        self.state = State::Start;
                    }
                }
                State::Str { quote, escape: true } => {
                    i += 1;
                    self.text.push(b);
                    if (0x20..=0xFD).contains(&b) {
                        self.state = State::Str { quote, escape: false };
                    } else {
                        self.stray(emit);
                    }
                }
                State::Str { quote, escape: false } => {
                    // Take the run of ordinary string bytes at once.
                    let rest = &data[i..];
                    let run = rest
                        .iter()
                        .position(|&c| c == quote || c == b'\\' || !(0x20..=0xFD).contains(&c))
                        .unwrap_or(rest.len());
                    self.text.extend_from_slice(&rest[..run]);
                    i += run;
                    if self.text.len() > MAX_MESSAGE_BYTES {
                        self.fail(ParseError::TokenSizeLimit, emit);
                        continue;
                    }
                    let Some(&c) = data.get(i) else { break };
                    i += 1;
                    self.text.push(c);
                    if c == quote {
                        self.state = State::Start;
                        self.finish_token(TokenKind::String, emit);
                    } else if c == b'\\' {
                        self.state = State::Str { quote, escape: true };
                    } else {
                        self.stray(emit);
                    }
                }
                State::Zero => match b {
                    b'0'..=b'9' => self.consume_stray(b, &mut i, emit),
                    b'.' => self.consume(b, State::Dot, &mut i),
                    _ => self.end_token(TokenKind::Integer, emit),
                },
                State::Digits => match b {
                    b'0'..=b'9' => self.consume(b, State::Digits, &mut i),
                    b'e' | b'E' => self.consume(b, State::ExpE, &mut i),
                    b'.' => self.consume(b, State::Dot, &mut i),
                    _ => self.end_token(TokenKind::Integer, emit),
                },
                State::Sign => match b {
                    b'0' => self.consume(b, State::Zero, &mut i),
                    b'1'..=b'9' => self.consume(b, State::Digits, &mut i),
                    _ => self.consume_stray(b, &mut i, emit),
                },
                State::Dot => match b {
                    b'0'..=b'9' => self.consume(b, State::Fraction, &mut i),
                    _ => self.consume_stray(b, &mut i, emit),
                },
                State::Fraction => match b {
                    b'0'..=b'9' => self.consume(b, State::Fraction, &mut i),
                    b'e' | b'E' => self.consume(b, State::ExpE, &mut i),
                    _ => self.end_token(TokenKind::Float, emit),
                },
                State::ExpE => match b {
                    b'-' | b'+' => self.consume(b, State::ExpSign, &mut i),
                    b'0'..=b'9' => self.consume(b, State::ExpDigits, &mut i),
                    _ => self.consume_stray(b, &mut i, emit),
                },
                State::ExpSign => match b {
                    b'0'..=b'9' => self.consume(b, State::ExpDigits, &mut i),
                    _ => self.consume_stray(b, &mut i, emit),
                },
                State::ExpDigits => match b {
                    b'0'..=b'9' => self.consume(b, State::ExpDigits, &mut i),
                    _ => self.end_token(TokenKind::Float, emit),
                },
                State::Keyword => match b {
                    b'a'..=b'z' => self.consume(b, State::Keyword, &mut i),
                    _ => self.end_token(TokenKind::Keyword, emit),
                },
            }
            if self.text.len() > MAX_MESSAGE_BYTES {
                self.fail(ParseError::TokenSizeLimit, emit);
            }
        }
    }

    fn begin(&mut self, b: u8, next: State) {
        self.token_start = self.text.len();
        self.text.push(b);
        self.state = next;
    }

    fn consume(&mut self, b: u8, next: State, i: &mut usize) {
        self.text.push(b);
        self.state = next;
        *i += 1;
    }

    fn consume_stray(&mut self, b: u8, i: &mut usize, emit: &mut impl FnMut(Event)) {
        self.text.push(b);
        *i += 1;
        self.stray(emit);
    }

    /// The token being lexed ended at a byte that belongs to the next one
    /// (which is not consumed).
    fn end_token(&mut self, kind: TokenKind, emit: &mut impl FnMut(Event)) {
        self.state = State::Start;
        self.finish_token(kind, emit);
    }

    /// The bytes of the current token cannot form a token.
    fn stray(&mut self, emit: &mut impl FnMut(Event)) {
        let token = &self.text[self.token_start..];
        let truncated = token.len() > MAX_ECHOED_BYTES;
        let token = token[..token.len().min(MAX_ECHOED_BYTES)].to_vec();
        self.fail(ParseError::Stray { token, truncated }, emit);
    }

    /// Reports `error`, drops the partial message and skips input until a
    /// resynchronisation point.
    fn fail(&mut self, error: ParseError, emit: &mut impl FnMut(Event)) {
        self.clear_message();
        self.state = State::Recovery;
        emit(Event::Error(error));
    }

    fn finish_token(&mut self, kind: TokenKind, emit: &mut impl FnMut(Event)) {
        match kind {
            TokenKind::LCurly => self.braces += 1,
            TokenKind::RCurly => self.braces -= 1,
            TokenKind::LSquare => self.brackets += 1,
            TokenKind::RSquare => self.brackets -= 1,
            _ => {}
        }
        if self.tokens.len() + 1 > MAX_TOKENS {
            return self.fail(ParseError::TokenCountLimit, emit);
        }
        if self.braces + self.brackets > MAX_NESTING {
            return self.fail(ParseError::NestingLimit, emit);
        }
        // Cannot truncate: text is bounded by MAX_MESSAGE_BYTES (+1 byte).
        self.tokens.push(Token {
            kind,
            start: self.token_start as u32,
            end: self.text.len() as u32,
        });
        if (self.braces > 0 || self.brackets > 0) && self.braces >= 0 && self.brackets >= 0 {
            return;
        }
        let event = match parser::parse(&self.text, &self.tokens) {
            Ok(value) => Event::Value(value),
            Err(e) => Event::Error(e),
        };
        self.clear_message();
        emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<Event> {
        let mut s = Splitter::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |e| out.push(e));
        }
        out
    }

    fn stray(t: &[u8]) -> Event {
        Event::Error(ParseError::Stray { token: t.to_vec(), truncated: false })
    }

    #[test]
    fn splits_messages_however_they_arrive() {
        let msg = br#"{"execute": "guest-ping", "id": [1, "}"]}"#;
        let whole = run(&[msg]);
        assert_eq!(whole.len(), 1);
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
        let two = [msg.as_slice(), msg.as_slice()].concat();
        assert_eq!(run(&[&two]).len(), 2);
    }

    #[test]
    fn ff_discards_a_partial_message() {
        let out = run(&[b"{\"execute\":\"guest-pi", b"\xff", b"{\"execute\":\"guest-ping\"}"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], stray(b"\"guest-pi\xff"));
        assert!(matches!(out[1], Event::Value(_)));
    }

    #[test]
    fn ff_between_tokens_resets() {
        let out = run(&[b"{\"a\":1,", b"\xff", b"{}"]);
        assert_eq!(out, vec![stray(b"\xff"), Event::Value(Json::Object(Default::default()))]);
    }

    #[test]
    fn each_ff_is_its_own_error() {
        // Coalescing runs of errors is the caller's job.
        assert_eq!(run(&[b"\xff\xff"]), vec![stray(b"\xff"), stray(b"\xff")]);
    }

    #[test]
    fn bad_token_then_recovery_like_qemu() {
        let out = run(&[br#"{"execute": guest-ping}"#]);
        assert_eq!(out, vec![stray(b"-p"), Event::Error(ParseError::ExpectingValue)]);
    }

    #[test]
    fn scalars_are_messages_of_their_own() {
        let out = run(&[b"1 2 "]);
        assert_eq!(out, vec![Event::Value(Json::Int(1)), Event::Value(Json::Int(2))]);
        // A number is only complete once the next byte shows it ended.
        assert!(run(&[b"12"]).is_empty());
    }

    #[test]
    fn control_characters_in_strings_are_stray() {
        let out = run(&[b"{\"id\":\"a\tb\"}"]);
        assert_eq!(out[0], stray(b"\"a\t"));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = vec![b'['; 1025];
        let out = run(&[&deep]);
        assert_eq!(out, vec![Event::Error(ParseError::NestingLimit)]);
        let mut ok = vec![b'['; 1024];
        ok.extend(vec![b']'; 1024]);
        assert!(matches!(run(&[&ok])[..], [Event::Value(_)]));
    }

    #[test]
    fn size_is_bounded_and_memory_released() {
        let mut s = Splitter::new();
        let mut out = Vec::new();
        s.feed(b"{\"a\":\"", &mut |e| out.push(e));
        let chunk = vec![b'A'; 1 << 20];
        for _ in 0..65 {
            s.feed(&chunk, &mut |e| out.push(e));
        }
        assert_eq!(out, vec![Event::Error(ParseError::TokenSizeLimit)]);
        assert!(s.text.capacity() <= 64 * 1024);
        s.feed(b"\"}{\"b\":1}", &mut |e| out.push(e));
        assert_eq!(
            out.last(),
            Some(&Event::Value(Json::Object([("b".to_string(), Json::Int(1))].into())))
        );
    }

    #[test]
    fn long_stray_tokens_are_echoed_only_in_part() {
        let mut input = b"\"".to_vec();
        input.extend(vec![b'x'; 1000]);
        input.push(0x01);
        let out = run(&[&input]);
        match &out[0] {
            Event::Error(ParseError::Stray { token, truncated }) => {
                assert_eq!(token.len(), MAX_ECHOED_BYTES);
                assert!(truncated);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
