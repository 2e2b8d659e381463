//! CONNECT requests: targets, credentials, every refusal, early tunnel data, every split,
//! and the answers.

use std::net::IpAddr;

use super::{parse, response, Host, Parsed, ProxyError, Request, Status, MAX_HEAD};

fn request(text: &str) -> Request {
    match parse(text.as_bytes()) {
        Parsed::Request(r) => r,
        other => panic!("{text:?}: {other:?}"),
    }
}

fn refused(text: &[u8]) -> Status {
    match parse(text) {
        Parsed::Bad { status, .. } => status,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
    }
}

#[test]
fn targets_in_authority_form() {
    let r = request("CONNECT Example.COM:443 HTTP/1.1\r\nHost: other:1\r\n\r\n");
    assert_eq!((r.host, r.port), (Host::Name("example.com".into()), 443));
    let r = request("CONNECT 192.0.2.7:8443 HTTP/1.1\r\n\r\n");
    assert_eq!(r.host, Host::Ip("192.0.2.7".parse::<IpAddr>().expect("ip")));
    let r = request("CONNECT [2001:db8::1]:443 HTTP/1.0\r\n\r\n");
    assert_eq!(
        (r.host, r.port),
        (Host::Ip("2001:db8::1".parse().expect("ip")), 443)
    );
    assert_eq!(r.credentials, None);
}

#[test]
fn credentials_and_early_data() {
    let head =
        "CONNECT a.example:22 HTTP/1.1\r\nProxy-Authorization: basic dXNlcjpwYTpzcw==\r\n\r\n";
    let mut wire = head.as_bytes().to_vec();
    wire.extend_from_slice(b"SSH-2.0-early");
    let Parsed::Request(r) = parse(&wire) else {
        panic!("a request");
    };
    assert_eq!(r.len, head.len(), "the early bytes are not the head's");
    assert_eq!(r.credentials, Some(("user".into(), "pa:ss".into())));
}

#[test]
fn refusals() {
    let cases: &[(&[u8], Status)] = &[
        (
            b"GET http://a.example/ HTTP/1.1\r\n\r\n",
            Status::MethodNotAllowed,
        ),
        (b"POST / HTTP/1.1\r\n\r\n", Status::MethodNotAllowed),
        (b"CONNECT a.example HTTP/1.1\r\n\r\n", Status::BadRequest),
        (b"CONNECT a.example:0 HTTP/1.1\r\n\r\n", Status::BadRequest),
        (
            b"CONNECT a.example:65536 HTTP/1.1\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT a.example:+443 HTTP/1.1\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n",
            Status::BadRequest,
        ),
        (b"CONNECT [::1:443 HTTP/1.1\r\n\r\n", Status::BadRequest),
        (
            b"CONNECT a_b.example:443 HTTP/1.1\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT -a.example:443 HTTP/1.1\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT 10.0.0.256:443 HTTP/1.1\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT http://a.example:443 HTTP/1.1\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT a.example:443 HTTP/2.0\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: Bearer x\r\n\r\n",
            Status::BadRequest,
        ),
        (
            b"CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: Basic ***\r\n\r\n",
            Status::BadRequest,
        ),
        (b"\x16\x03\x01\x02\x00\x01", Status::BadRequest),
        (
            b"CONNECT a.example:443 HTTP/1.1\r\nBad Header\r\n\r\n",
            Status::BadRequest,
        ),
    ];
    for (text, status) in cases {
        assert_eq!(
            refused(text),
            *status,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn the_head_is_at_most_16_kib() {
    let mut head = b"CONNECT a.example:443 HTTP/1.1\r\n".to_vec();
    while head.len() < MAX_HEAD + 100 {
        head.extend_from_slice(b"X-Pad: ");
        head.extend_from_slice(&[b'a'; 1000]);
        head.extend_from_slice(b"\r\n");
    }
    assert_eq!(parse(&head[..MAX_HEAD - 1]), Parsed::Incomplete);
    assert_eq!(refused(&head[..MAX_HEAD]), Status::HeadTooLarge);
    let mut many = b"CONNECT a.example:443 HTTP/1.1\r\n".to_vec();
    for _ in 0..100 {
        many.extend_from_slice(b"A: b\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(refused(&many), Status::HeadTooLarge);
}

/// Every prefix of a request is incomplete; every longer one gives the same request.
#[test]
fn every_split_gives_the_same_request() {
    let head = "CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\nProxy-Authorization: Basic YTpi\r\n\r\n";
    let mut wire = head.as_bytes().to_vec();
    wire.extend_from_slice(b"tunnel");
    let whole = parse(&wire);
    assert!(matches!(whole, Parsed::Request(_)));
    for cut in 0..wire.len() {
        let got = parse(&wire[..cut]);
        if cut < head.len() {
            assert_eq!(got, Parsed::Incomplete, "cut {cut}");
        } else {
            assert_eq!(got, whole, "cut {cut}");
        }
    }
}

#[test]
fn answers() {
    assert_eq!(
        response(Status::Established, None, "x"),
        b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec()
    );
    let text = |s, e| String::from_utf8(response(s, e, "tcpbridge")).expect("utf-8");
    let denied = text(Status::Forbidden, Some(ProxyError::DestinationIpProhibited));
    assert_eq!(
        denied,
        "HTTP/1.1 403 Forbidden\r\nProxy-Status: tcpbridge; error=destination_ip_prohibited\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let auth = text(Status::AuthRequired, Some(ProxyError::HttpRequestDenied));
    assert!(
        auth.contains("Proxy-Authenticate: Basic realm=\"tcpbridge\"\r\n"),
        "{auth}"
    );
    let method = text(Status::MethodNotAllowed, Some(ProxyError::HttpRequestError));
    assert!(method.contains("Allow: CONNECT\r\n"), "{method}");
    for (status, code) in [
        (Status::BadGateway, "502"),
        (Status::GatewayTimeout, "504"),
        (Status::HeadTooLarge, "431"),
    ] {
        assert!(text(status, None).starts_with(&format!("HTTP/1.1 {code} ")));
    }
}
