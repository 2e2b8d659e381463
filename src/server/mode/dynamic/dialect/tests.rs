//! The dialects' steps over whole, split and coalesced messages, and their answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::core::reason::CloseReason;
use crate::proto::connect::Host;

fn users() -> Credentials {
    Credentials::parse("alice:s3cret").expect("credentials")
}

/// Runs `dialect` over `bytes` as a client would send them, `chunk` bytes at a time:
/// the steps taken (each `More` dropped) and the bytes left after the request.
fn run(
    mut dialect: Dialect,
    bytes: &[u8],
    chunk: usize,
    users: &Credentials,
) -> (Vec<Step>, Vec<u8>) {
    let mut steps = Vec::new();
    let mut received = Vec::new();
    let mut sent = 0;
    loop {
        let step = dialect.step(&received, users);
        match &step {
            Step::More => {
                if sent == bytes.len() {
                    return (steps, received);
                }
                let end = (sent + chunk).min(bytes.len());
                received.extend_from_slice(&bytes[sent..end]);
                sent = end;
            }
            Step::Answer { used, .. } => {
                received.drain(..*used);
                steps.push(step);
            }
            Step::Request { used, .. } => {
                received.drain(..*used);
                received.extend_from_slice(&bytes[sent..]);
                steps.push(step);
                return (steps, received);
            }
            Step::Refuse { .. } => {
                steps.push(step);
                return (steps, received);
            }
        }
    }
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn socks_without_credentials_in_every_split() {
    let mut bytes = vec![5, 2, 0, 2];
    bytes.extend_from_slice(&[5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]);
    bytes.extend_from_slice(b"early");
    for chunk in [1, 2, 3, 7, bytes.len()] {
        let (steps, left) = run(Dialect::socks(), &bytes, chunk, &Credentials::default());
        assert_eq!(
            steps,
            [
                Step::Answer {
                    used: 4,
                    answer: vec![5, 0]
                },
                Step::Request {
                    used: 10,
                    host: Host::Ip(LOCAL),
                    port: 8080
                },
            ],
            "chunk {chunk}"
        );
        assert_eq!(left, b"early", "chunk {chunk}");
    }
}

#[test]
fn socks_with_credentials_never_falls_back_to_none() {
    let (steps, _) = run(Dialect::socks(), &[5, 1, 0], 1, &users());
    assert_eq!(
        steps,
        [Step::Refuse {
            answer: Some(vec![5, 0xff]),
            reason: CloseReason::Auth,
            why: "no acceptable method offered"
        }]
    );
    let mut good = vec![5, 2, 0, 2, 1, 5];
    good.extend_from_slice(b"alice");
    good.push(6);
    good.extend_from_slice(b"s3cret");
    good.extend_from_slice(&[5, 1, 0, 3, 3, b'a', b'.', b'b', 1, 187]);
    let (steps, left) = run(Dialect::socks(), &good, 1, &users());
    assert_eq!(steps.len(), 3);
    assert_eq!(
        steps[1],
        Step::Answer {
            used: 14,
            answer: vec![1, 0]
        }
    );
    assert_eq!(
        steps[2],
        Step::Request {
            used: 10,
            host: Host::Name("a.b".into()),
            port: 443
        }
    );
    assert!(left.is_empty());
    let bad = [5, 1, 2, 1, 5, b'a', b'l', b'i', b'c', b'e', 1, b'x'];
    let (steps, _) = run(Dialect::socks(), &bad, 4, &users());
    assert_eq!(
        steps.last(),
        Some(&Step::Refuse {
            answer: Some(vec![1, 1]),
            reason: CloseReason::Auth,
            why: "wrong credentials"
        })
    );
}

#[test]
fn socks_refusals_answer_with_their_code() {
    let none = Credentials::default();
    // SOCKS4 and HTTP: closed without an answer.
    for first in [[4u8, 1, 0], *b"GET"] {
        let (steps, _) = run(Dialect::socks(), &first, 1, &none);
        assert!(
            matches!(
                steps.as_slice(),
                [Step::Refuse {
                    answer: None,
                    reason: CloseReason::Handshake,
                    ..
                }]
            ),
            "{first:?}: {steps:?}"
        );
    }
    let bind = [5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80];
    let (steps, _) = run(Dialect::socks(), &bind, 1, &none);
    assert!(
        matches!(&steps[1], Step::Refuse { answer: Some(a), .. } if a[1] == 7),
        "{steps:?}"
    );
    let atyp = [5, 1, 0, 5, 1, 0, 5];
    let (steps, _) = run(Dialect::socks(), &atyp, 1, &none);
    assert!(
        matches!(&steps[1], Step::Refuse { answer: Some(a), .. } if a[1] == 8),
        "{steps:?}"
    );
}

#[test]
fn connect_reads_one_head_and_leaves_the_tunnel_bytes() {
    let bytes = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\nTLS...";
    for chunk in [1, 5, bytes.len()] {
        let (steps, left) = run(Dialect::connect(), bytes, chunk, &Credentials::default());
        assert_eq!(
            steps,
            [Step::Request {
                used: bytes.len() - 6,
                host: Host::Name("example.com".into()),
                port: 443
            }],
            "chunk {chunk}"
        );
        assert_eq!(left, b"TLS...");
    }
}

#[test]
fn connect_asks_for_credentials_and_checks_them() {
    let ask = |auth: &str| {
        let head = format!("CONNECT a.b:443 HTTP/1.1\r\nHost: a.b\r\n{auth}\r\n");
        run(Dialect::connect(), head.as_bytes(), 64, &users()).0
    };
    for auth in ["", "Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n"] {
        let steps = ask(auth);
        let [Step::Refuse {
            answer: Some(answer),
            reason: CloseReason::Auth,
            ..
        }] = steps.as_slice()
        else {
            panic!("{auth:?}: {steps:?}");
        };
        let text = String::from_utf8_lossy(answer);
        assert!(text.starts_with("HTTP/1.1 407 "), "{text}");
        assert!(
            text.contains("Proxy-Authenticate: Basic realm=\"tcpbridge\""),
            "{text}"
        );
    }
    // alice:s3cret
    let steps = ask("Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n");
    assert!(
        matches!(steps.as_slice(), [Step::Request { port: 443, .. }]),
        "{steps:?}"
    );
}

#[test]
fn failures_have_their_status_and_code() {
    use crate::core::stream::ConnectFailure::{Error, Refused, Timeout};
    let cases = [
        (Failure::Denied, "403", 2),
        (Failure::NotFound, "502", 4),
        (Failure::ResolveTimeout, "504", 6),
        (Failure::Connect(Refused), "502", 5),
        (Failure::Connect(Timeout), "504", 6),
        (Failure::Connect(Error), "502", 4),
        (Failure::Unroutable, "502", 3),
    ];
    for (failure, status, code) in cases {
        let http = String::from_utf8(Dialect::connect().failure(failure)).expect("text");
        assert!(
            http.starts_with(&format!("HTTP/1.1 {status} ")),
            "{failure:?}: {http}"
        );
        assert!(http.contains("Proxy-Status: tcpbridge; error="), "{http}");
        assert!(http.contains("Connection: close\r\n"), "{http}");
        let socks = Dialect::socks().failure(failure);
        assert_eq!(socks[..2], [5, code], "{failure:?}");
    }
    assert_eq!(Dialect::socks().failure(Failure::Auth), [1, 1]);
    let bound = SocketAddr::from((LOCAL, 4321));
    assert_eq!(
        Dialect::socks().success(Some(bound)),
        [5, 0, 0, 1, 127, 0, 0, 1, 0x10, 0xe1]
    );
    assert_eq!(
        Dialect::connect().success(None),
        b"HTTP/1.1 200 Connection established\r\n\r\n"
    );
}
