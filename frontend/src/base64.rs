//! Base64 as qemu-ga accepts it: only the standard alphabet, `=` and newlines
//! are allowed, and decoding is then as lenient as GLib's (newlines skipped,
//! `=` read as zero bits that shorten the group it ends, a trailing partial
//! group dropped).

use zeroize::Zeroizing;

/// qemu-ga's text for input outside the alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

const INVALID: u8 = 0xFF;
const SKIP: u8 = 0xFE;

const fn rank_table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t[b'=' as usize] = 0;
    t[b'\n' as usize] = SKIP;
    t
}

static RANK: [u8; 256] = rank_table();

/// Decodes into `out` (cleared first).
pub fn decode_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidBase64> {
    out.clear();
    out.reserve(input.len() / 4 * 3 + 3);
    let mut v: u32 = 0;
    let mut n = 0;
    let mut last = [0u8; 2];
    for &c in input {
        let rank = RANK[c as usize];
        match rank {
            INVALID => return Err(InvalidBase64),
            SKIP => continue,
            _ => {}
        }
        last = [c, last[0]];
        v = (v << 6) | u32::from(rank);
        n += 1;
        if n == 4 {
            out.push((v >> 16) as u8);
            if last[1] != b'=' {
                out.push((v >> 8) as u8);
            }
            if last[0] != b'=' {
                out.push(v as u8);
            }
            n = 0;
            v = 0;
        }
    }
    Ok(())
}

pub fn decode(input: &[u8]) -> Result<Vec<u8>, InvalidBase64> {
    let mut out = Vec::new();
    decode_into(input, &mut out)?;
    Ok(out)
}

/// Decodes a secret into a buffer that is wiped when dropped.
pub fn decode_secret(input: &[u8]) -> Result<Zeroizing<Vec<u8>>, InvalidBase64> {
    let mut out = Zeroizing::new(Vec::new());
    decode_into(input, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_input() {
        assert_eq!(decode(b"aGVsbG8="), Ok(b"hello".to_vec()));
        assert_eq!(decode(b"aGVsbG8h"), Ok(b"hello!".to_vec()));
        assert_eq!(decode(b"aGVs\nbG8h\n"), Ok(b"hello!".to_vec()));
        assert_eq!(decode(b"YQ=="), Ok(b"a".to_vec()));
        assert_eq!(decode(b""), Ok(vec![]));
    }

    #[test]
    fn lenient_like_glib() {
        assert_eq!(decode(b"YQ"), Ok(vec![]), "partial group dropped");
        assert_eq!(decode(b"YWJj="), Ok(b"abc".to_vec()));
    }

    #[test]
    fn alphabet_is_enforced() {
        for bad in [&b"!!!"[..], b"aGVs bG8=", b"aGVs\rbG8=", b"a-_b", b"\0"] {
            assert_eq!(decode(bad), Err(InvalidBase64), "{bad:?}");
        }
    }
}
