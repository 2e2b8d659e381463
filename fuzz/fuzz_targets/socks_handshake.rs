//! Fuzzes the SOCKS5 readers (`proto::socks`): the greeting, the RFC 1929 credentials
//! and the request, in the order a server reads them.
//!
//! Input: byte 0 says whether credentials are configured; the rest is what a client
//! sends. Each reader runs on every prefix of what is left, as the server runs it on
//! everything received so far. Checked:
//! - once a prefix is decided, every longer prefix gives the same answer (more bytes
//!   never change a verdict or a message's length);
//! - a message's length is within the input, and the next reader starts right after it;
//! - with credentials configured, "no authentication" is never chosen;
//! - every reply built for a verdict is a well-formed SOCKS5 reply.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpbridge::proto::socks::{credentials, greeting, reply, request, Method, Read};

/// The first decided verdict over the prefixes of `data`, and its length.
fn decide<T: PartialEq + std::fmt::Debug + Clone>(
    data: &[u8],
    read: impl Fn(&[u8]) -> Read<T>,
) -> Option<Read<T>> {
    let mut decided: Option<Read<T>> = None;
    for cut in 0..=data.len().min(600) {
        let got = read(&data[..cut]);
        match &decided {
            Some(d) => assert_eq!(&got, d, "verdict changed at {cut}"),
            None if got != Read::Incomplete => decided = Some(got),
            None => {}
        }
        if let Some(Read::Done(_, len)) = &decided {
            assert!(*len <= cut);
        }
    }
    decided
}

fuzz_target!(|data: &[u8]| {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let password = flag & 1 == 1;
    let Some(Read::Done(method, len)) = decide(rest, |b| greeting(b, password)) else {
        return;
    };
    if password {
        assert_ne!(method, Method::NoAuth);
    }
    let mut rest = &rest[len..];
    if method == Method::Password {
        let Some(Read::Done(_, len)) = decide(rest, credentials) else {
            return;
        };
        rest = &rest[len..];
    }
    match decide(rest, request) {
        Some(Read::Bad(Some(code), _)) => {
            let r = reply(code, None);
            assert_eq!((r.len(), r[0], r[1]), (10, 5, code.code()));
        }
        Some(Read::Done(_, len)) => assert!(len <= rest.len()),
        _ => {}
    }
});
