//! Fuzzes the reader of pinned key fingerprints (`os::fingerprint::Fingerprint::parse`),
//! which reads an operator's text.
//!
//! Input: any bytes, taken as text where they are UTF-8. Checked:
//! - reading never panics;
//! - a fingerprint read prints as `sha256:` and 64 lower-case hex digits, which reads
//!   back to the same fingerprint;
//! - one that was read holds exactly 64 hex digits once `sha256:`, colons and the
//!   surrounding white space are taken away.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpbridge::os::fingerprint::Fingerprint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(f) = Fingerprint::parse(text) else {
        return;
    };
    let printed = f.to_string();
    assert_eq!(printed.len(), 7 + 64);
    assert!(printed.starts_with("sha256:"));
    assert!(printed[7..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(Fingerprint::parse(&printed), Some(f));
    let trimmed = text.trim();
    let digits: Vec<u8> = trimmed
        .strip_prefix("sha256:")
        .unwrap_or(trimmed)
        .bytes()
        .filter(|&b| b != b':')
        .collect();
    assert_eq!(digits.len(), 64);
    assert!(digits.iter().all(u8::is_ascii_hexdigit));
});
