//! PROXY headers: the spec's forms, every refusal, and round trips (build, then parse in
//! every split, with the client's bytes after the header).

use std::net::SocketAddr;

use super::{
    parse, v1, v1_unknown, v2, v2_local, Error, Header, Parsed, Version, MAX_V1, MAX_V2_BODY,
    SIGNATURE,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

fn header(version: Version, src: &str, dst: &str) -> Header {
    Header {
        version,
        addresses: Some((addr(src), addr(dst))),
    }
}

#[test]
fn v1_lines_of_the_spec() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /";
    assert_eq!(
        parse(line),
        Parsed::Header {
            header: header(Version::V1, "192.168.0.1:56324", "192.168.0.11:443"),
            len: line.len() - 5,
        }
    );
    let six = b"PROXY TCP6 ::1 2001:db8::1 1 65535\r\n";
    assert_eq!(
        parse(six),
        Parsed::Header {
            header: header(Version::V1, "[::1]:1", "[2001:db8::1]:65535"),
            len: six.len(),
        }
    );
    for unknown in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff:: 1.2.3.4 1 2\r\n",
    ] {
        let want = Header {
            version: Version::V1,
            addresses: None,
        };
        assert_eq!(
            parse(unknown),
            Parsed::Header {
                header: want,
                len: unknown.len()
            }
        );
    }
}

/// The spec's longest lines of each form: 56 bytes (TCP4), 104 (TCP6), 107 (UNKNOWN).
#[test]
fn v1_longest_lines_of_the_spec() {
    let f39 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let lines = [
        "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_string(),
        format!("PROXY TCP6 {f39} {f39} 65535 65535\r\n"),
        format!("PROXY UNKNOWN {f39} {f39} 65535 65535\r\n"),
    ];
    for (line, want) in lines.iter().zip([56, 104, 107]) {
        assert_eq!(line.len(), want);
        assert!(
            matches!(parse(line.as_bytes()), Parsed::Header { len, .. } if len == want),
            "{line:?}"
        );
    }
    let unknown = v1_unknown();
    assert_eq!(unknown, b"PROXY UNKNOWN\r\n".to_vec());
    assert_eq!(
        parse(&unknown),
        Parsed::Header {
            header: Header {
                version: Version::V1,
                addresses: None
            },
            len: 15
        }
    );
}

/// Each refusal has its own short text (close lines and counters tell them apart).
#[test]
fn every_error_has_its_own_text() {
    let all = [
        Error::Signature,
        Error::V1TooLong,
        Error::V1LineEnd,
        Error::V1Protocol,
        Error::V1Field,
        Error::V2Version,
        Error::V2Command,
        Error::V2Family,
        Error::V2Transport,
        Error::V2TooLong,
        Error::V2Short,
        Error::V2Tlv,
    ];
    let texts: std::collections::BTreeSet<String> = all.iter().map(|e| e.to_string()).collect();
    assert_eq!(texts.len(), all.len());
    for e in all {
        assert_eq!(e.to_string(), e.as_str());
        assert!(!e.as_str().is_empty() && e.as_str().len() <= 40, "{e}");
    }
}

#[test]
fn v1_refusals() {
    let cases: &[(&[u8], Error)] = &[
        (b"GET / HTTP/1.1\r\n", Error::Signature),
        (b"proxy TCP4", Error::Signature),
        (b"PROXY TCP5 ", Error::V1Protocol),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Protocol),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Error::V1LineEnd),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", Error::V1LineEnd),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Error::V1Field),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Error::V1Field),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", Error::V1Field),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Error::V1Field),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", Error::V1Field),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", Error::V1Field),
        (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Field),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Error::V1Field),
        (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", Error::V1Field),
    ];
    for (input, error) in cases {
        assert_eq!(
            parse(input),
            Parsed::Bad(*error),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn v1_is_at_most_107_bytes() {
    // "PROXY UNKNOWN" padded: 105 bytes then CRLF is 107, accepted; one more is not.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(MAX_V1 - 2, b'x');
    let mut ok = line.clone();
    ok.extend_from_slice(b"\r\n");
    assert!(matches!(parse(&ok), Parsed::Header { len: MAX_V1, .. }));
    line.push(b'x');
    assert_eq!(parse(&line), Parsed::Bad(Error::V1TooLong));
    line.extend_from_slice(b"\r\n");
    assert_eq!(parse(&line), Parsed::Bad(Error::V1TooLong));
    // Without a line end, refused as soon as one cannot fit: at 106 bytes.
    let long = vec![b'x'; 200];
    let mut open = b"PROXY UNKNOWN ".to_vec();
    open.extend_from_slice(&long);
    assert_eq!(parse(&open[..MAX_V1 - 2]), Parsed::Incomplete);
    assert_eq!(parse(&open[..MAX_V1 - 1]), Parsed::Bad(Error::V1TooLong));
}

#[test]
fn v2_headers_and_refusals() {
    let built = v2(addr("10.0.0.1:1000"), addr("10.0.0.2:443"));
    assert_eq!(built.len(), 28);
    let mut with_tlv = built.clone();
    // A TLV of type 0xEE, 3 bytes: length field 12 + 6 = 18.
    with_tlv[15] = 18;
    with_tlv.extend_from_slice(&[0xEE, 0, 3, 1, 2, 3]);
    assert_eq!(
        parse(&with_tlv),
        Parsed::Header {
            header: header(Version::V2, "10.0.0.1:1000", "10.0.0.2:443"),
            len: 34
        }
    );
    let mut bad_tlv = with_tlv.clone();
    bad_tlv[30] = 9;
    assert_eq!(parse(&bad_tlv), Parsed::Bad(Error::V2Tlv));

    let local = v2_local();
    assert_eq!(
        parse(&local),
        Parsed::Header {
            header: Header {
                version: Version::V2,
                addresses: None
            },
            len: 16
        }
    );
    let with = |at: usize, byte: u8| {
        let mut h = built.clone();
        h[at] = byte;
        parse(&h)
    };
    assert_eq!(with(12, 0x11), Parsed::Bad(Error::V2Version));
    assert_eq!(with(12, 0x22), Parsed::Bad(Error::V2Command));
    assert_eq!(with(13, 0x31), Parsed::Bad(Error::V2Family));
    assert_eq!(with(13, 0x01), Parsed::Bad(Error::V2Family));
    assert_eq!(with(13, 0x12), Parsed::Bad(Error::V2Transport));
    assert_eq!(with(15, 11), Parsed::Bad(Error::V2Short));
    let mut long = built.clone();
    long[14] = 0x10;
    long[15] = 0x01;
    assert_eq!(parse(&long), Parsed::Bad(Error::V2TooLong));
    let mut sig = built.clone();
    sig[5] = b'X';
    assert_eq!(parse(&sig), Parsed::Bad(Error::Signature));
    // LOCAL with any family, its block skipped.
    let mut local_inet = built.clone();
    local_inet[12] = 0x20;
    assert!(matches!(
        parse(&local_inet),
        Parsed::Header {
            header: Header {
                addresses: None,
                ..
            },
            len: 28
        }
    ));
}

/// A v2 header of exactly 4096 bytes after its head (addresses and padding TLVs) is
/// read; one more byte is refused as soon as the length field is in.
#[test]
fn v2_is_at_most_4_kib_after_its_head() {
    let mut wire = v2(addr("10.0.0.1:1"), addr("10.0.0.2:2"));
    // One NOOP TLV (type 0x04) filling the rest: 3 bytes of type and length.
    let pad = MAX_V2_BODY - 12 - 3;
    wire.extend_from_slice(&[0x04]);
    wire.extend_from_slice(&u16::try_from(pad).expect("fits").to_be_bytes());
    wire.resize(16 + MAX_V2_BODY, 0);
    wire[14..16].copy_from_slice(&u16::try_from(MAX_V2_BODY).expect("fits").to_be_bytes());
    assert_eq!(
        parse(&wire),
        Parsed::Header {
            header: header(Version::V2, "10.0.0.1:1", "10.0.0.2:2"),
            len: 16 + MAX_V2_BODY
        }
    );
    assert_eq!(parse(&wire[..wire.len() - 1]), Parsed::Incomplete);
    wire[14..16].copy_from_slice(&u16::try_from(MAX_V2_BODY + 1).expect("fits").to_be_bytes());
    assert_eq!(parse(&wire[..16]), Parsed::Bad(Error::V2TooLong));
}

#[test]
fn signatures_are_told_apart_from_client_bytes() {
    use super::{signature, Signature};
    assert_eq!(signature(b""), Signature::Absent);
    assert_eq!(signature(b"GET / HTTP/1.1"), Signature::Absent);
    assert_eq!(signature(b"PR"), Signature::Partial);
    assert_eq!(signature(b"PROXY"), Signature::Partial);
    assert_eq!(signature(b"PROXY "), Signature::Present);
    assert_eq!(signature(b"PROXYZ"), Signature::Absent);
    assert_eq!(signature(b"POST /"), Signature::Absent);
    assert_eq!(signature(&SIGNATURE[..5]), Signature::Partial);
    assert_eq!(signature(&SIGNATURE), Signature::Present);
    assert_eq!(signature(b"\r\n\r\nX"), Signature::Absent);
    assert_eq!(signature(b"SSH-2.0-x"), Signature::Absent);
}

#[test]
fn a_wrong_first_byte_is_refused_at_once() {
    for b in 0..=255u8 {
        let verdict = parse(&[b]);
        if b == b'P' || b == SIGNATURE[0] {
            assert_eq!(verdict, Parsed::Incomplete, "{b:#x}");
        } else {
            assert_eq!(verdict, Parsed::Bad(Error::Signature), "{b:#x}");
        }
    }
}

#[test]
fn mixed_families_keep_the_client_address() {
    let (v4, v6) = (addr("203.0.113.7:5000"), addr("[2001:db8::1]:443"));
    assert_eq!(
        v1(v4, v6),
        b"PROXY TCP6 ::ffff:203.0.113.7 2001:db8::1 5000 443\r\n".to_vec()
    );
    // A dual-stack socket's IPv4-mapped peer goes out as TCP4.
    let mapped = addr("[::ffff:203.0.113.7]:5000");
    assert_eq!(
        v1(mapped, addr("192.0.2.1:80")),
        b"PROXY TCP4 203.0.113.7 192.0.2.1 5000 80\r\n".to_vec()
    );
    let Parsed::Header { header: h, .. } = parse(&v2(v4, v6)) else {
        panic!("a v2 header");
    };
    assert_eq!(h.addresses, Some((addr("[::ffff:203.0.113.7]:5000"), v6)));
}

/// splitmix64, for the round trips' addresses.
struct Seq(u64);

impl Seq {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn addr(&mut self) -> SocketAddr {
        let n = self.next();
        let port = (n >> 48) as u16;
        if n & 1 == 0 {
            let ip = std::net::Ipv4Addr::from((n >> 8) as u32);
            SocketAddr::new(ip.into(), port)
        } else {
            let hi = u128::from(self.next()) << 64 | u128::from(self.next());
            SocketAddr::new(std::net::Ipv6Addr::from(hi).into(), port)
        }
    }
}

/// Build, then parse in every split: every proper prefix is incomplete, the whole header
/// (with the client's bytes after it) parses to the same addresses and length.
#[test]
fn round_trips_in_every_split() {
    let mut seq = Seq(0x5eed_0013);
    for round in 0..300 {
        let (src, dst) = (seq.addr(), seq.addr());
        for (version, built) in [(Version::V1, v1(src, dst)), (Version::V2, v2(src, dst))] {
            let mut wire = built.clone();
            wire.extend_from_slice(b"client bytes");
            for cut in 0..built.len() {
                assert_eq!(
                    parse(&wire[..cut]),
                    Parsed::Incomplete,
                    "round {round} {version:?} {src} {dst}: prefix of {cut}"
                );
            }
            for cut in built.len()..=wire.len() {
                let Parsed::Header { header, len } = parse(&wire[..cut]) else {
                    panic!("round {round} {version:?} {src} {dst}: no header at {cut}");
                };
                assert_eq!(len, built.len());
                assert_eq!(header.version, version);
                let (s, d) = header.addresses.expect("addresses");
                let plain = |a: SocketAddr| match a.ip() {
                    std::net::IpAddr::V6(ip) => ip
                        .to_ipv4_mapped()
                        .map_or(a, |v4| SocketAddr::new(v4.into(), a.port())),
                    _ => a,
                };
                assert_eq!((plain(s), plain(d)), (plain(src), plain(dst)));
            }
        }
    }
}

/// Headers with random bytes changed: no panic, and a verdict, once given, holds for
/// every longer prefix (what the loop relies on when it parses again after each read).
#[test]
fn damaged_headers_keep_their_first_verdict() {
    let mut seq = Seq(0xdead_0013);
    for _ in 0..2000 {
        let (src, dst) = (seq.addr(), seq.addr());
        let mut wire = if seq.next() & 1 == 0 {
            v1(src, dst)
        } else {
            v2(src, dst)
        };
        wire.extend_from_slice(b"after");
        for _ in 0..=(seq.next() % 3) {
            let at = (seq.next() % wire.len() as u64) as usize;
            wire[at] = seq.next() as u8;
        }
        let mut decided = None;
        for cut in 0..=wire.len() {
            let parsed = parse(&wire[..cut]);
            match decided {
                Some(earlier) => assert_eq!(parsed, earlier, "{wire:?} at {cut}"),
                None if parsed != Parsed::Incomplete => decided = Some(parsed),
                None => {}
            }
        }
    }
}
