//! Random bytes from the kernel, without holding a descriptor: nonces, secrets and
//! backoff jitter. `getrandom` uses the `getrandom(2)` system call (and falls back to
//! `/dev/urandom` on kernels older than 3.17, as some gateways run).

use std::io;

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(e.to_string()))
}

/// A fresh 32-byte nonce.
pub fn nonce() -> io::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    fill(&mut n)?;
    Ok(n)
}

/// A number in `0..n` (n > 0), for jitter (0 if the kernel has no random bytes).
pub fn below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    match fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b) % n.max(1),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_and_jitter_stays_below() {
        let (a, b) = (nonce().expect("random"), nonce().expect("random"));
        assert_ne!(a, b);
        for n in [1, 2, 1000] {
            assert!(below(n) < n);
        }
    }
}
