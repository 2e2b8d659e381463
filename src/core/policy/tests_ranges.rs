//! The internal ranges: the first and last address of every block, one just outside on
//! each side, and the IPv6 forms that carry an IPv4 address.

use std::net::IpAddr;

use super::{internal, Form};

/// The range's name and the form that carried it, if internal.
type Judged = Option<(&'static str, Option<Form>)>;

fn judge(ip: &str) -> Judged {
    let ip: IpAddr = ip.parse().expect("an address");
    internal(ip).map(|i| (i.range, i.form))
}

fn table(cases: &[(&str, Option<&str>)]) {
    for &(ip, want) in cases {
        let got = judge(ip);
        assert_eq!(got.map(|(r, _)| r), want, "{ip}");
        if want.is_some() && ip.parse::<std::net::Ipv4Addr>().is_ok() {
            assert_eq!(got.and_then(|(_, f)| f), None, "{ip} is plain IPv4");
        }
    }
}

#[test]
fn ipv4_blocks_edge_to_edge() {
    table(&[
        ("0.0.0.0", Some("unspecified")),
        ("0.255.255.255", Some("unspecified")),
        ("1.0.0.0", None),
        ("9.255.255.255", None),
        ("10.0.0.0", Some("private")),
        ("10.255.255.255", Some("private")),
        ("11.0.0.0", None),
        ("100.63.255.255", None),
        ("100.64.0.0", Some("carrier-grade-nat")),
        ("100.127.255.255", Some("carrier-grade-nat")),
        ("100.128.0.0", None),
        ("126.255.255.255", None),
        ("127.0.0.0", Some("loopback")),
        ("127.255.255.255", Some("loopback")),
        ("128.0.0.0", None),
        ("169.253.255.255", None),
        ("169.254.0.0", Some("link-local")),
        ("169.254.255.255", Some("link-local")),
        ("169.255.0.0", None),
        ("172.15.255.255", None),
        ("172.16.0.0", Some("private")),
        ("172.31.255.255", Some("private")),
        ("172.32.0.0", None),
        ("191.255.255.255", None),
        ("192.0.0.0", Some("ietf-protocol")),
        ("192.0.0.255", Some("ietf-protocol")),
        ("192.0.1.0", None),
        ("192.0.1.255", None),
        ("192.0.2.0", Some("documentation")),
        ("192.0.2.255", Some("documentation")),
        ("192.0.3.0", None),
        ("192.88.98.255", None),
        ("192.88.99.0", Some("6to4-relay")),
        ("192.88.99.255", Some("6to4-relay")),
        ("192.88.100.0", None),
        ("192.167.255.255", None),
        ("192.168.0.0", Some("private")),
        ("192.168.255.255", Some("private")),
        ("192.169.0.0", None),
        ("198.17.255.255", None),
        ("198.18.0.0", Some("benchmarking")),
        ("198.19.255.255", Some("benchmarking")),
        ("198.20.0.0", None),
        ("198.51.99.255", None),
        ("198.51.100.0", Some("documentation")),
        ("198.51.100.255", Some("documentation")),
        ("198.51.101.0", None),
        ("203.0.112.255", None),
        ("203.0.113.0", Some("documentation")),
        ("203.0.113.255", Some("documentation")),
        ("203.0.114.0", None),
        ("223.255.255.255", None),
        ("224.0.0.0", Some("multicast")),
        ("239.255.255.255", Some("multicast")),
        ("240.0.0.0", Some("reserved")),
        ("255.255.255.254", Some("reserved")),
        ("255.255.255.255", Some("broadcast")),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("192.31.196.1", None),
    ]);
}

#[test]
fn ipv6_blocks_edge_to_edge() {
    table(&[
        ("::", Some("unspecified")),
        ("::1", Some("loopback")),
        ("100::", Some("discard")),
        ("100::ffff:ffff:ffff:ffff", Some("discard")),
        ("100:0:0:1::", Some("reserved")),
        ("ff::ffff", Some("reserved")),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("2000::", None),
        ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:1::", Some("ietf-protocol")),
        ("2001:2::1", Some("ietf-protocol")),
        (
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("ietf-protocol"),
        ),
        ("2001:200::", None),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:db8::", Some("documentation")),
        (
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("documentation"),
        ),
        ("2001:db9::", None),
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("3fff::", Some("documentation")),
        (
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("documentation"),
        ),
        ("3fff:1000::", None),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("4000::", Some("reserved")),
        ("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("5f00::", Some("segment-routing")),
        (
            "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("segment-routing"),
        ),
        ("5f01::", Some("reserved")),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("fc00::", Some("unique-local")),
        (
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("unique-local"),
        ),
        ("fe00::", Some("reserved")),
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("fe80::", Some("link-local")),
        (
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("link-local"),
        ),
        ("fec0::", Some("site-local")),
        (
            "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("site-local"),
        ),
        ("ff00::", Some("multicast")),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("multicast")),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001::200e", None),
    ]);
}

#[test]
fn ipv4_inside_ipv6_is_judged_as_ipv4() {
    use Form::*;
    let cases: &[(&str, Judged)] = &[
        ("::ffff:127.0.0.1", Some(("loopback", Some(Mapped)))),
        ("::ffff:10.1.2.3", Some(("private", Some(Mapped)))),
        ("::ffff:0.0.0.0", Some(("unspecified", Some(Mapped)))),
        ("::ffff:255.255.255.255", Some(("broadcast", Some(Mapped)))),
        ("::ffff:8.8.8.8", None),
        ("::127.0.0.1", Some(("loopback", Some(Compatible)))),
        ("::2", Some(("unspecified", Some(Compatible)))),
        ("::169.254.169.254", Some(("link-local", Some(Compatible)))),
        ("::8.8.8.8", None),
        ("::ffff:0:127.0.0.1", Some(("loopback", Some(Translated)))),
        ("::ffff:0:8.8.8.8", None),
        ("64:ff9b::7f00:1", Some(("loopback", Some(Nat64)))),
        ("64:ff9b::a9fe:a9fe", Some(("link-local", Some(Nat64)))),
        ("64:ff9b::c0a8:1", Some(("private", Some(Nat64)))),
        ("64:ff9b::808:808", None),
        ("64:ff9b::1:0:808:808", Some(("reserved", None))),
        ("64:ff9b:1::7f00:1", Some(("loopback", Some(Nat64Local)))),
        ("64:ff9b:1::808:808", Some(("nat64-local", None))),
        // 127.0.0.1 under a /48 prefix: internal as the whole block is; its last 32 bits
        // (a /96 reading) are 0.0.0.0.
        (
            "64:ff9b:1:7f00:0:100::",
            Some(("unspecified", Some(Nat64Local))),
        ),
        ("64:ff9b:1:7f00:0:100:808:808", Some(("nat64-local", None))),
        ("2002:7f00:1::", Some(("loopback", Some(SixToFour)))),
        ("2002:a00:1:ffff::1", Some(("private", Some(SixToFour)))),
        ("2002:c000:204::", Some(("documentation", Some(SixToFour)))),
        ("2002:808:808::1", None),
        // Teredo: server 65.54.227.120, client 127.0.0.1 stored inverted (80ff:fffe).
        (
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            Some(("loopback", Some(TeredoClient))),
        ),
        // Client 192.0.2.45, the example of RFC 4380 §4.
        (
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            Some(("documentation", Some(TeredoClient))),
        ),
        // Server 10.0.0.1, client 8.8.8.8.
        (
            "2001:0:a00:1:8000:63bf:f7f7:f7f7",
            Some(("private", Some(TeredoServer))),
        ),
        // Client bits all zero: the client is 255.255.255.255.
        (
            "2001:0:4136:e378::",
            Some(("broadcast", Some(TeredoClient))),
        ),
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),
    ];
    for &(ip, want) in cases {
        assert_eq!(judge(ip), want, "{ip}");
    }
}

/// Every IPv4 address (a seeded sample, and each block's edges) is judged alike in each
/// IPv6 form that carries it, the form named when it is internal.
#[test]
fn every_form_carries_the_same_verdict() {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut sample: Vec<u32> = (0..20_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 16) as u32
        })
        .collect();
    for edge in [
        0,
        0x7f00_0001,
        0x0a00_0000,
        0xffff_ffff,
        0xc0a8_ffff,
        0x0808_0808,
    ] {
        sample.push(edge);
    }
    let public_server = u128::from(u32::from(Ipv4Addr::new(65, 54, 227, 120)));
    for a in sample {
        let v4 = internal(IpAddr::V4(Ipv4Addr::from(a))).map(|i| i.range);
        let n = u128::from(a);
        let forms = [
            (Form::Mapped, (0xffff_u128 << 32) | n),
            (Form::Nat64, (0x0064_ff9b_u128 << 96) | n),
            (Form::SixToFour, (0x2002_u128 << 112) | (n << 80)),
            (
                Form::TeredoClient,
                (0x2001_u128 << 112) | (public_server << 64) | u128::from(!a),
            ),
        ];
        for (form, six) in forms {
            let got = internal(IpAddr::V6(Ipv6Addr::from(six)));
            assert_eq!(
                got.map(|i| i.range),
                v4,
                "{} as {form:?}",
                Ipv4Addr::from(a)
            );
            if let Some(i) = got {
                assert_eq!(i.form, Some(form));
            }
        }
    }
}
