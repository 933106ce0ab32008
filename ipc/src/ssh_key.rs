//! `authorized_keys` lines, split as sshd reads them: `[options] type body
//! [comment]`. Pure text: whether a (type, body) pair is a key is the
//! caller's to say. The frontend says so by decoding the base64 body (and
//! sends the blob with the line); the broker by comparing the body with the
//! encoding of that blob, so that only the frontend decodes base64.

/// A key line's parts, borrowed from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLine<'a> {
    pub options: Option<&'a str>,
    pub key_type: &'a str,
    /// The base64 text of the key blob.
    pub body: &'a str,
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The first word of `s` and what follows it.
fn word(s: &str) -> (&str, &str) {
    s.find(is_blank).map_or((s, ""), |at| s.split_at(at))
}

/// Reads a line as sshd reads `authorized_keys`: a key, or else options
/// followed by a key; `is_key(type, body)` decides whether a pair is one.
pub fn split<'a>(line: &'a str, is_key: impl Fn(&str, &str) -> bool) -> Option<KeyLine<'a>> {
    let line = line.trim_start_matches(is_blank);
    let key = |s: &'a str| {
        let (key_type, rest) = word(s);
        let (body, _comment) = word(rest.trim_start_matches(is_blank));
        (!key_type.is_empty() && !body.is_empty() && is_key(key_type, body))
            .then_some((key_type, body))
    };
    if let Some((key_type, body)) = key(line) {
        return Some(KeyLine { options: None, key_type, body });
    }
    let (options, rest) = line.split_at(options_end(line)?);
    let (key_type, body) = key(rest.trim_start_matches(is_blank))?;
    Some(KeyLine { options: Some(options), key_type, body })
}

/// Where the options in front of a key end, as OpenSSH's
/// `sshkey_advance_past_options` finds it: at the first blank outside
/// double quotes (`\"` does not end a quoted part). None when a quote is
/// left open.
fn options_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut quoted = false;
    let mut at = 0;
    while at < b.len() && (quoted || (b[at] != b' ' && b[at] != b'\t')) {
        if b[at] == b'\\' && b.get(at + 1) == Some(&b'"') {
            at += 1;
        } else if b[at] == b'"' {
            quoted = !quoted;
        }
        at += 1;
    }
    (!quoted).then_some(at)
}

/// The type a key blob names for a key type written in a line: the RSA
/// signature algorithm names stand for RSA keys (OpenSSH reads them so).
fn blob_type(key_type: &str) -> &str {
    match key_type {
        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
        "rsa-sha2-256-cert-v01@openssh.com" | "rsa-sha2-512-cert-v01@openssh.com" => {
            "ssh-rsa-cert-v01@openssh.com"
        }
        other => other,
    }
}

/// The key blob of `line`, found with `decode` (the frontend's base64
/// decoder): the body of the first pair whose body decodes to a blob naming
/// its type.
pub fn decoded_blob(line: &str, decode: impl Fn(&str) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    let key = split(line, |key_type, body| decode(body).is_some_and(|b| blob_names(&b, key_type)))?;
    decode(key.body)
}

/// Whether `blob` starts with `key_type` (as the blob names it) as an SSH
/// string (u32 big-endian length, then the name) and holds more than that.
pub fn blob_names(blob: &[u8], key_type: &str) -> bool {
    let named = blob_type(key_type).as_bytes();
    let Some(len) = blob.get(..4).map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
    else {
        return false;
    };
    len == named.len() && blob.get(4..4 + len) == Some(named) && blob.len() > 4 + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_quotes_and_blanks() {
        let any = |_: &str, body: &str| body == "BODY";
        assert_eq!(
            split("\tssh-ed25519 BODY comment here", any),
            Some(KeyLine { options: None, key_type: "ssh-ed25519", body: "BODY" })
        );
        assert_eq!(
            split(r#"command="a \" b",no-pty ssh-ed25519 BODY"#, any),
            Some(KeyLine {
                options: Some(r#"command="a \" b",no-pty"#),
                key_type: "ssh-ed25519",
                body: "BODY"
            })
        );
        assert_eq!(split(r#"command="open ssh-ed25519 BODY"#, any), None);
        assert_eq!(split("ssh-ed25519 OTHER", any), None);
        assert_eq!(split("", any), None);
    }

    #[test]
    fn blobs_name_their_type() {
        let blob = |name: &[u8], rest: &[u8]| {
            let mut b = (name.len() as u32).to_be_bytes().to_vec();
            b.extend_from_slice(name);
            b.extend_from_slice(rest);
            b
        };
        assert!(blob_names(&blob(b"ssh-ed25519", b"k"), "ssh-ed25519"));
        assert!(!blob_names(&blob(b"ssh-ed25519", b""), "ssh-ed25519"), "nothing after the name");
        assert!(!blob_names(&blob(b"ssh-ed25519", b"k"), "ssh-rsa"));
        assert!(blob_names(&blob(b"ssh-rsa", b"k"), "rsa-sha2-512"));
        assert!(!blob_names(b"\0\0", "ssh-rsa"));
    }
}
