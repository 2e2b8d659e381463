//! Fuzzes the HTTP CONNECT request reader (`proto::connect::parse`).
//!
//! Input: the bytes a proxy client sends. The reader runs on everything received so far,
//! so it is run on every prefix up to 512 bytes and every 97th after. Checked:
//! - once a prefix is decided (a request, refused), every longer prefix gives the same
//!   answer: more bytes never change a verdict, and a request's length never moves;
//! - nothing of `MAX_HEAD` bytes or more is still incomplete;
//! - a request's length is within the input, its port is not 0, and a name is lower case;
//! - every answer ends its head with a blank line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpbridge::proto::connect::{parse, response, Host, Parsed, Status, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_HEAD + 256)];
    let cuts = (0..=data.len()).filter(|&c| c <= 512 || c % 97 == 0 || c == data.len());
    let mut decided: Option<Parsed> = None;
    for cut in cuts {
        let parsed = parse(&data[..cut]);
        if cut >= MAX_HEAD {
            assert_ne!(parsed, Parsed::Incomplete, "{cut} bytes still incomplete");
        }
        if let Parsed::Request(r) = &parsed {
            assert!(r.len <= cut && r.port != 0);
            if let Host::Name(n) = &r.host {
                assert_eq!(n, &n.to_ascii_lowercase());
            }
        }
        match &decided {
            Some(earlier) => assert_eq!(&parsed, earlier, "verdict changed at {cut}"),
            None if parsed != Parsed::Incomplete => decided = Some(parsed),
            None => {}
        }
    }
    if let Some(Parsed::Bad { status, .. }) = decided {
        assert!(response(status, None, "r").ends_with(b"\r\n\r\n"));
    }
    assert!(response(Status::Established, None, "r").ends_with(b"\r\n\r\n"));
});
