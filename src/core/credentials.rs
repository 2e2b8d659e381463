//! The credentials a `connect` or `socks` listener accepts: user names and passwords read
//! from a credentials file, one `user:password` per line (`#` starts a comment line,
//! blank lines are skipped). Only SHA-256 digests are kept, and a check compares every
//! entry in constant time, so how long it takes tells nothing about which byte differed
//! or which user exists (only how many entries there are).
//!
//! The file itself is read by the configuration (which refuses one readable by others);
//! this module only parses its text and checks what clients send.

use std::fmt;

use sha2::{Digest, Sha256};

/// Longest user name or password (RFC 1929 carries each in one length byte).
pub const MAX_FIELD: usize = 255;

/// One accepted user.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    user: [u8; 32],
    password: [u8; 32],
}

/// The users a listener accepts (empty: none is asked for).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    entries: Vec<Entry>,
}

/// Never printed: a digest is still a guessing aid.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} users)", self.entries.len())
    }
}

/// Why a credentials file was refused: the line (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality that looks at every byte whatever differs.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Credentials {
    /// Reads a credentials file's text.
    pub fn parse(text: &str) -> Result<Credentials, CredentialsError> {
        let mut entries = Vec::new();
        let mut users: Vec<&str> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let err = |problem| CredentialsError {
                line: n + 1,
                problem,
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(err("expected user:password"));
            };
            if user.is_empty() || password.is_empty() {
                return Err(err("empty user or password"));
            }
            if user.len() > MAX_FIELD || password.len() > MAX_FIELD {
                return Err(err("user or password over 255 bytes"));
            }
            if users.contains(&user) {
                return Err(err("user listed twice"));
            }
            users.push(user);
            entries.push(Entry {
                user: digest(user.as_bytes()),
                password: digest(password.as_bytes()),
            });
        }
        if entries.is_empty() {
            return Err(CredentialsError {
                line: 0,
                problem: "no user:password line",
            });
        }
        Ok(Credentials { entries })
    }

    /// Whether no credentials are asked for.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Users listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `user` and `password` are one of the entries, compared in constant time
    /// over every entry.
    pub fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        let (u, p) = (digest(user), digest(password));
        self.entries.iter().fold(false, |found, e| {
            let both = same(&e.user, &u) & same(&e.password, &p);
            found | both
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_passwords_are_checked_together() {
        let c = Credentials::parse("# users\nalice:s3cret\n\nbob:pa:ss\r\n").expect("parses");
        assert_eq!(c.len(), 2);
        assert!(c.verify(b"alice", b"s3cret"));
        assert!(c.verify(b"bob", b"pa:ss"), "a password may hold ':'");
        assert!(!c.verify(b"alice", b"pa:ss"), "another user's password");
        assert!(!c.verify(b"alice", b"s3cre"));
        assert!(!c.verify(b"carol", b"s3cret"));
        assert!(!c.verify(b"", b""));
    }

    #[test]
    fn bad_files_name_their_line() {
        let long = format!("{}:x", "u".repeat(256));
        for (text, line, problem) in [
            ("alice", 1, "expected user:password"),
            ("a:b\n:x", 2, "empty user or password"),
            ("a:", 1, "empty user or password"),
            ("a:b\na:c", 2, "user listed twice"),
            (long.as_str(), 1, "user or password over 255 bytes"),
            ("# nothing\n", 0, "no user:password line"),
        ] {
            assert_eq!(
                Credentials::parse(text),
                Err(CredentialsError { line, problem }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn debug_shows_no_digest() {
        let c = Credentials::parse("a:b").expect("parses");
        assert_eq!(format!("{c:?}"), "Credentials(1 users)");
    }
}
