//! qemu's "modified UTF-8": standard UTF-8 plus `C0 80` for U+0000, with
//! surrogates, noncharacters and overlong forms rejected.

fn is_valid_codepoint(cp: u32) -> bool {
    !(cp > 0x10FFFF
        || (0xFDD0..=0xFDEF).contains(&cp)
        || (cp & 0xFFFE) == 0xFFFE
        || (0xD800..=0xDFFF).contains(&cp))
}

/// Decodes one code point at the start of `s`. Returns the code point (`None`
/// if invalid) and how many bytes to skip, exactly as qemu advances.
pub fn decode(s: &[u8]) -> (Option<char>, usize) {
    const MIN: [u32; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    let Some(&first) = s.first() else {
        return (None, 0);
    };
    if first < 0x80 {
        return (Some(char::from(first)), 1);
    }
    if first >= 0xFE || first & 0x40 == 0 {
        return (None, 1);
    }
    let len = first.leading_ones() as usize;
    let mut cp = u32::from(first) & (0x7F >> len);
    for i in 1..len {
        match s.get(i) {
            Some(&b) if b & 0xC0 == 0x80 => cp = (cp << 6) | u32::from(b & 0x3F),
            _ => return (None, i),
        }
    }
    let valid = is_valid_codepoint(cp) && (cp >= MIN[len - 2] || (cp == 0 && len == 2));
    (if valid { char::from_u32(cp) } else { None }, len)
}

/// Whether `cp` may appear in a string (used for `\u` escapes).
pub fn valid_scalar(cp: u32) -> Option<char> {
    if is_valid_codepoint(cp) { char::from_u32(cp) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_qemu_accepts() {
        assert_eq!(decode(b"a"), (Some('a'), 1));
        assert_eq!(decode("é".as_bytes()), (Some('é'), 2));
        assert_eq!(decode("😀".as_bytes()), (Some('😀'), 4));
        assert_eq!(decode(b"\xC0\x80"), (Some('\0'), 2));
    }

    #[test]
    fn rejects_what_qemu_rejects() {
        assert_eq!(decode(b"\xFF").0, None);
        assert_eq!(decode(b"\x80").0, None);
        assert_eq!(decode(b"\xC3\x28"), (None, 1));
        assert_eq!(decode(b"\xED\xA0\x80").0, None, "surrogate");
        assert_eq!(decode(b"\xC1\xBF").0, None, "overlong");
        assert_eq!(decode("\u{FFFE}".as_bytes()).0, None, "noncharacter");
        assert_eq!(decode("\u{FDD0}".as_bytes()).0, None, "noncharacter");
        assert_eq!(decode(b"\xF8\x88\x80\x80\x80").0, None, "five bytes");
    }
}
