//! [`Fingerprint`]: SHA-256 over a public key's DER SubjectPublicKeyInfo, the form an
//! agent pins the relay's TLS key in (`tunnel_tls_pin`). Plain bytes and text, without
//! TLS: the option parses in every build, also one without the `tls` feature (which then
//! refuses it).

use std::fmt;

use sha2::{Digest, Sha256};

/// SHA-256 over a public key's DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER SubjectPublicKeyInfo.
    pub fn of_key(spki: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(spki).into())
    }

    /// Reads 64 hexadecimal digits, upper or lower case, optionally after `sha256:` and
    /// optionally in pairs separated by `:` (as `openssl -fingerprint` prints them).
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let text = text.trim();
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        let mut out = [0u8; 32];
        let mut digits = hex.bytes().filter(|&b| b != b':');
        for byte in out.iter_mut() {
            let high = hex_value(digits.next()?)?;
            let low = hex_value(digits.next()?)?;
            *byte = high << 4 | low;
        }
        match digits.next() {
            None => Some(Fingerprint(out)),
            Some(_) => None,
        }
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Fingerprint {
    /// `sha256:` and 64 lower-case hexadecimal digits, the form [`Fingerprint::parse`]
    /// reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
