//! SOCKS5 messages: methods chosen, credentials, requests of each address type, every
//! refusal and its reply, early data, and every split (one byte at a time).

use std::net::SocketAddr;

use super::{
    auth_reply, credentials, greeting, method_reply, reply, request, Method, Read, Reply, Request,
};
use crate::proto::connect::Host;

#[test]
fn methods_are_chosen_without_falling_back() {
    assert_eq!(greeting(&[5, 1, 0], false), Read::Done(Method::NoAuth, 3));
    assert_eq!(
        greeting(&[5, 2, 0, 2], true),
        Read::Done(Method::Password, 4)
    );
    // Credentials configured: "no authentication" is never chosen.
    assert_eq!(
        greeting(&[5, 1, 0], true),
        Read::Done(Method::NoneAcceptable, 3)
    );
    assert_eq!(
        greeting(&[5, 1, 2], false),
        Read::Done(Method::NoneAcceptable, 3)
    );
    assert_eq!(greeting(&[5, 2, 0], false), Read::Incomplete);
    assert!(
        matches!(greeting(&[4, 1, 0], false), Read::Bad(None, _)),
        "SOCKS4"
    );
    assert!(matches!(
        greeting(b"GET / HTTP/1.1", false),
        Read::Bad(None, _)
    ));
    assert!(matches!(greeting(&[5, 0], false), Read::Bad(None, _)));
    assert_eq!(method_reply(Method::NoneAcceptable), [5, 0xFF]);
    assert_eq!(method_reply(Method::Password), [5, 2]);
}

#[test]
fn credentials_of_rfc_1929() {
    let msg = [&[1u8, 4][..], b"user", &[4], b"pass", b"early"].concat();
    assert_eq!(
        credentials(&msg),
        Read::Done((b"user".to_vec(), b"pass".to_vec()), 11)
    );
    assert_eq!(
        credentials(&[1, 1, b'u', 0]),
        Read::Done((b"u".to_vec(), Vec::new()), 4)
    );
    assert!(matches!(credentials(&[2, 1, b'u', 0]), Read::Bad(None, _)));
    assert!(matches!(credentials(&[1, 0, 0]), Read::Bad(None, _)));
    assert_eq!(auth_reply(true), [1, 0]);
    assert_eq!(auth_reply(false), [1, 1]);
}

#[test]
fn requests_of_each_address_type() {
    let v4 = [5, 1, 0, 1, 192, 0, 2, 7, 0x01, 0xbb];
    let want = Request {
        host: Host::Ip("192.0.2.7".parse().expect("ip")),
        port: 443,
    };
    assert_eq!(request(&v4), Read::Done(want, 10));
    let mut v6 = vec![5, 1, 0, 4];
    v6.extend_from_slice(&[0; 15]);
    v6.extend_from_slice(&[1, 0, 80]);
    let Read::Done(r, 22) = request(&v6) else {
        panic!("an IPv6 request");
    };
    assert_eq!(r.host, Host::Ip("::1".parse().expect("ip")));
    let name = [
        &[5u8, 1, 0, 3, 11][..],
        b"Example.COM",
        &[0, 22],
        b"SSH-2.0",
    ]
    .concat();
    let Read::Done(r, len) = request(&name) else {
        panic!("a name request");
    };
    assert_eq!(
        (r.host, r.port, len),
        (Host::Name("example.com".into()), 22, 18)
    );
    let literal = [&[5u8, 1, 0, 3, 9][..], b"127.0.0.1", &[0, 80]].concat();
    assert!(matches!(
        request(&literal),
        Read::Done(
            Request {
                host: Host::Ip(_),
                ..
            },
            _
        )
    ));
}

#[test]
fn refusals_and_their_replies() {
    let bind = [5, 2, 0, 1, 1, 2, 3, 4, 0, 80];
    assert_eq!(
        request(&bind),
        Read::Bad(
            Some(Reply::CommandNotSupported),
            "command other than CONNECT"
        )
    );
    let udp = [5, 3, 0, 1, 1, 2, 3, 4, 0, 80];
    assert!(matches!(
        request(&udp),
        Read::Bad(Some(Reply::CommandNotSupported), _)
    ));
    // The command is answered only once the message is whole.
    assert_eq!(request(&bind[..6]), Read::Incomplete);
    assert!(matches!(
        request(&[5, 1, 0, 9]),
        Read::Bad(Some(Reply::AddressTypeNotSupported), _)
    ));
    assert!(matches!(
        request(&[5, 1, 1, 1]),
        Read::Bad(Some(Reply::GeneralFailure), _)
    ));
    assert!(matches!(
        request(&[5, 1, 0, 3, 0]),
        Read::Bad(Some(Reply::GeneralFailure), _)
    ));
    let bad_name = [&[5u8, 1, 0, 3, 3][..], b"a b", &[0, 80]].concat();
    assert!(matches!(
        request(&bad_name),
        Read::Bad(Some(Reply::HostUnreachable), _)
    ));
    assert!(matches!(request(&[4, 1, 0, 1]), Read::Bad(None, _)));
}

#[test]
fn replies_carry_the_bound_address() {
    let bound: SocketAddr = "192.0.2.1:40000".parse().expect("addr");
    assert_eq!(
        reply(Reply::Succeeded, Some(bound)),
        vec![5, 0, 0, 1, 192, 0, 2, 1, 0x9c, 0x40]
    );
    assert_eq!(
        reply(Reply::NotAllowed, None),
        vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    let six: SocketAddr = "[::1]:1".parse().expect("addr");
    assert_eq!(reply(Reply::TtlExpired, Some(six)).len(), 22);
}

/// Every proper prefix of a message is incomplete; the whole one (with what follows) is
/// the same message of the same length, one byte at a time or in any two parts.
#[test]
fn every_split_gives_the_same_message() {
    let msgs: [&[u8]; 3] = [
        &[5, 3, 0, 1, 2],
        &[1, 3, b'a', b'b', b'c', 2, b'x', b'y'],
        &[5, 1, 0, 3, 4, b'h', b'o', b's', b't', 1, 0],
    ];
    for (k, msg) in msgs.iter().enumerate() {
        let mut wire = msg.to_vec();
        wire.extend_from_slice(b"next");
        let whole = |b: &[u8]| match k {
            0 => format!("{:?}", greeting(b, true)),
            1 => format!("{:?}", credentials(b)),
            _ => format!("{:?}", request(b)),
        };
        let done = whole(&wire);
        assert!(done.starts_with("Done"), "{done}");
        for cut in 0..wire.len() {
            let got = whole(&wire[..cut]);
            if cut < msg.len() {
                assert_eq!(got, "Incomplete", "message {k} cut {cut}");
            } else {
                assert_eq!(got, done, "message {k} cut {cut}");
            }
        }
    }
}
