//! Fuzzes the PROXY protocol reader (`proto::proxy::parse`).
//!
//! Input: the bytes a client sends first. The reader is run on every prefix, as the
//! loop runs it on everything received so far. Checked:
//! - once a prefix is decided (a header, or bad), every longer prefix gives the same
//!   answer: more bytes never change a verdict;
//! - a header's length is within the input and within `MAX_HEADER`;
//! - nothing of `MAX_HEADER` bytes or more is still incomplete;
//! - a header with addresses, built again in its version, reads back to the same ones
//!   (IPv4-mapped IPv6 addresses compared as IPv4: the builder writes those as TCP4).

#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use tcpbridge::proto::proxy::{parse, v1, v2, Parsed, Version, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_HEADER + 64)];
    let mut decided: Option<Parsed> = None;
    // Every cut in the first 256 bytes (a v1 line, a v2 header's start), then every 61st.
    let cuts = (0..=data.len()).filter(|&c| c <= 256 || c % 61 == 0 || c == data.len());
    for cut in cuts {
        let parsed = parse(&data[..cut]);
        if cut >= MAX_HEADER {
            assert_ne!(parsed, Parsed::Incomplete, "{cut} bytes still incomplete");
        }
        match decided {
            Some(earlier) => assert_eq!(parsed, earlier, "verdict changed at {cut}"),
            None if parsed != Parsed::Incomplete => decided = Some(parsed),
            None => {}
        }
        if let Parsed::Header { header, len } = parsed {
            assert!(len <= cut && len <= MAX_HEADER, "length {len} of {cut}");
            if let Some((src, dst)) = header.addresses {
                let again = match header.version {
                    Version::V1 => v1(src, dst),
                    Version::V2 => v2(src, dst),
                };
                let Parsed::Header { header: back, .. } = parse(&again) else {
                    panic!("a built header does not read back");
                };
                let plain = |a: SocketAddr| match a.ip() {
                    IpAddr::V6(ip) => ip
                        .to_ipv4_mapped()
                        .map_or(a, |v4| SocketAddr::new(v4.into(), a.port())),
                    IpAddr::V4(_) => a,
                };
                let (s, d) = back.addresses.expect("addresses read back");
                assert_eq!((plain(s), plain(d)), (plain(src), plain(dst)));
            }
        }
    }
});
