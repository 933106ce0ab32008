//! The two pattern languages of the policy file, both compiled to linear-time
//! matchers (regex-lite: no backtracking blow-up, whatever the pattern).
//!
//! - **Globs** for paths, mount points, account and variable names: `*`
//!   matches within one path component, `**` across components (`**/` also
//!   matches no directory), `?` one character, `[abc]`, `[a-z]`, `[!x]`
//!   classes. Everything else is literal.
//! - **Regular expressions** for program arguments, anchored at both ends.

use std::fmt;

use regex_lite::Regex;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;

#[derive(Clone)]
pub struct Glob {
    source: String,
    re: Regex,
}

#[derive(Clone)]
pub struct ArgPattern {
    source: String,
    re: Regex,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Debug for ArgPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArgPattern({:?})", self.source)
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl PartialEq for ArgPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

fn check_len(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty pattern".into());
    }
    if p.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern longer than {MAX_PATTERN_LEN} bytes"));
    }
    if p.contains('\0') {
        return Err("pattern contains a NUL character".into());
    }
    Ok(())
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        check_len(pattern)?;
        let mut re = String::from("(?s)^");
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    // "**/" also matches no directory at all: "**/*.log" covers "a.log".
                    if chars.get(i + 2) == Some(&'/') {
                        re.push_str("(?:.*/)?");
                        i += 3;
                    } else {
                        re.push_str(".*");
                        i += 2;
                    }
                    continue;
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => {
                    // A ']' right after '[' is part of the class, as in fnmatch.
                    let close = chars[i + 1..]
                        .iter()
                        .enumerate()
                        .position(|(k, &c)| c == ']' && k > 0)
                        .map(|k| i + 1 + k)
                        .ok_or_else(|| format!("unclosed '[' in pattern '{pattern}'"))?;
                    let mut body: Vec<char> = chars[i + 1..close].to_vec();
                    if body.is_empty() {
                        return Err(format!("empty '[]' in pattern '{pattern}'"));
                    }
                    re.push('[');
                    if body[0] == '!' {
                        re.push('^');
                        body.remove(0);
                        if body.is_empty() {
                            return Err(format!("empty '[!]' in pattern '{pattern}'"));
                        }
                    }
                    for c in body {
                        if matches!(c, '\\' | '[' | ']' | '^' | '&' | '~') {
                            re.push('\\');
                        }
                        re.push(c);
                    }
                    re.push(']');
                    i = close + 1;
                    continue;
                }
                c => {
                    let mut buf = [0u8; 4];
                    re.push_str(&regex_lite::escape(c.encode_utf8(&mut buf)));
                }
            }
            i += 1;
        }
        re.push('$');
        let re = Regex::new(&re).map_err(|e| format!("bad pattern '{pattern}': {e}"))?;
        Ok(Glob { source: pattern.to_owned(), re })
    }

    pub fn matches(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl ArgPattern {
    pub fn new(pattern: &str) -> Result<ArgPattern, String> {
        check_len(pattern)?;
        let re = Regex::new(&format!("(?s)^(?:{pattern})$"))
            .map_err(|e| format!("bad pattern '{pattern}': {e}"))?;
        Ok(ArgPattern { source: pattern.to_owned(), re })
    }

    pub fn matches(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).expect("valid glob")
    }

    #[test]
    fn globs() {
        assert!(g("/var/log/*.log").matches("/var/log/syslog.log"));
        assert!(!g("/var/log/*.log").matches("/var/log/a/b.log"));
        assert!(g("/var/log/**").matches("/var/log/a/b.log"));
        assert!(g("**/*.log").matches("a.log"));
        assert!(g("**/*.log").matches("x/y/a.log"));
        assert!(!g("**/*.log").matches("x/y/a.txt"));
        assert!(g("**").matches("anything/at/all"));
        assert!(g("file?.txt").matches("file1.txt"));
        assert!(!g("file?.txt").matches("file/.txt"));
        assert!(g("[a-c]x").matches("bx"));
        assert!(!g("[!a-c]x").matches("bx"));
        assert!(g("a.b+c(d)").matches("a.b+c(d)"), "regex syntax is literal in globs");
        assert!(!g("a.b").matches("axb"));
        assert!(g("dev-[0-9]").matches("dev-7"));
    }

    #[test]
    fn bad_globs() {
        assert!(Glob::new("").is_err());
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("[]").is_err());
        assert!(Glob::new("[!]").is_err());
        assert!(Glob::new(&"a".repeat(MAX_PATTERN_LEN + 1)).is_err());
    }

    #[test]
    fn arg_patterns_are_anchored() {
        let p = ArgPattern::new("[0-9]+").expect("valid");
        assert!(p.matches("123"));
        assert!(!p.matches("12a"));
        assert!(!p.matches("a12"));
        let alt = ArgPattern::new("start|stop").expect("valid");
        assert!(alt.matches("stop"));
        assert!(!alt.matches("stopx"), "alternation stays anchored");
        assert!(ArgPattern::new("(").is_err());
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        // Classic catastrophic-backtracking shapes match quickly here.
        let p = ArgPattern::new("(a+)+$").expect("valid");
        // With a backtracking engine this input would not finish.
        let s = "a".repeat(10_000) + "b";
        assert!(!p.matches(&s));
        let glob = g(&"*a".repeat(100));
        assert!(!glob.matches(&"a".repeat(5000).replace('a', "b")));
    }
}
