//! Tests of the metrics endpoint's request parsing, routing and answers.

use super::*;

const SCRAPE: &[u8] = b"GET /metrics?name[]=x HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n\
User-Agent: Prometheus/2.51.0\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\
X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";

fn get(path: &str) -> Request {
    Request {
        method: Method::Get,
        path: path.to_string(),
    }
}

#[test]
fn every_prefix_is_incomplete_until_the_blank_line() {
    let want = Parsed::Request(get("/metrics"));
    for cut in 0..SCRAPE.len() {
        assert_eq!(
            parse(&SCRAPE[..cut]),
            Parsed::Incomplete,
            "prefix of {cut} bytes"
        );
    }
    assert_eq!(parse(SCRAPE), want);
    // Bytes after the head (a pipelined request) do not change the answer.
    let mut more = SCRAPE.to_vec();
    more.extend_from_slice(b"GET /healthz HTTP/1.1\r\n");
    assert_eq!(parse(&more), want);
}

#[test]
fn http_1_0_head_and_other_methods_parse() {
    assert_eq!(
        parse(b"HEAD /healthz HTTP/1.0\r\n\r\n"),
        Parsed::Request(Request {
            method: Method::Head,
            path: "/healthz".into()
        })
    );
    assert_eq!(
        parse(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        Parsed::Request(Request {
            method: Method::Other,
            path: "/metrics".into()
        })
    );
    // Methods are case-sensitive.
    assert!(matches!(
        parse(b"get /metrics HTTP/1.1\r\n\r\n"),
        Parsed::Request(Request {
            method: Method::Other,
            ..
        })
    ));
}

#[test]
fn absolute_form_targets_give_their_path() {
    assert_eq!(
        parse(b"GET http://host:9100/sessions?x=1 HTTP/1.1\r\n\r\n"),
        Parsed::Request(get("/sessions"))
    );
    assert_eq!(
        parse(b"GET http://host:9100 HTTP/1.1\r\n\r\n"),
        Parsed::Request(get("/"))
    );
    assert!(matches!(
        parse(b"GET ftp://host/metrics HTTP/1.1\r\n\r\n"),
        Parsed::Bad(_)
    ));
    assert!(matches!(
        parse(b"GET metrics HTTP/1.1\r\n\r\n"),
        Parsed::Bad(_)
    ));
}

#[test]
fn garbage_is_bad() {
    for bad in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET /metrics HTTP/1.2\r\n\r\n",
        b"GET /met rics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nNoColonHere\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        b"GET /metrics HTTP/1.1\rX\r\n\r\n",
    ] {
        assert!(
            matches!(parse(bad), Parsed::Bad(_)),
            "{:?} gave {:?}",
            String::from_utf8_lossy(bad),
            parse(bad)
        );
    }
}

#[test]
fn bodies_are_refused() {
    for bad in [
        &b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"GET /metrics HTTP/1.1\r\ncontent-length: 01\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nContent-Length: \r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(
            matches!(parse(bad), Parsed::Bad(_)),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        parse(b"GET /metrics HTTP/1.1\r\nContent-Length:  0 \r\n\r\n"),
        Parsed::Request(get("/metrics"))
    );
}

#[test]
fn a_line_that_never_ends_grows_to_too_large() {
    let mut line = b"GET /".to_vec();
    while line.len() < MAX_REQUEST - 1 {
        line.push(b'a');
    }
    assert_eq!(parse(&line), Parsed::Incomplete);
    line.push(b'a');
    assert_eq!(parse(&line), Parsed::TooLarge);
    line.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(parse(&line), Parsed::TooLarge);
}

#[test]
fn huge_headers_are_too_large() {
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    head.resize(MAX_REQUEST + 100, b'x');
    assert_eq!(parse(&head), Parsed::TooLarge);
    let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(many.len() < MAX_REQUEST);
    assert_eq!(parse(&many), Parsed::TooLarge);
}

#[test]
fn a_head_of_exactly_the_limit_is_accepted() {
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(MAX_REQUEST - 4, b'p');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), MAX_REQUEST);
    assert_eq!(parse(&head), Parsed::Request(get("/metrics")));
}

#[test]
fn routes_are_exact_paths_and_get_or_head() {
    assert_eq!(route(&get("/metrics")), Route::Metrics);
    assert_eq!(route(&get("/sessions")), Route::Sessions);
    assert_eq!(route(&get("/healthz")), Route::Healthz);
    assert_eq!(route(&get("/config")), Route::Config);
    for other in ["/", "/metrics/", "/Metrics", "/metricsx", "//metrics", ""] {
        assert_eq!(route(&get(other)), Route::NotFound, "{other:?}");
    }
    let head = Request {
        method: Method::Head,
        path: "/sessions".into(),
    };
    assert_eq!(route(&head), Route::Sessions);
    let post = Request {
        method: Method::Other,
        path: "/metrics".into(),
    };
    assert_eq!(route(&post), Route::MethodNotAllowed);
    let post_elsewhere = Request {
        method: Method::Other,
        path: "/nope".into(),
    };
    assert_eq!(route(&post_elsewhere), Route::NotFound);
    assert_eq!(Route::Metrics.content_type(), METRICS_CONTENT_TYPE);
    assert_eq!(Route::Healthz.content_type(), TEXT_CONTENT_TYPE);
}

#[test]
fn responses_are_exact_bytes() {
    let mut out = Vec::new();
    response(&mut out, 200, METRICS_CONTENT_TYPE, b"a 1\n", false);
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
Content-Length: 4\r\nConnection: close\r\n\r\na 1\n"
    );
    let mut head = Vec::new();
    response(&mut head, 200, TEXT_CONTENT_TYPE, b"ok\n", true);
    assert_eq!(
        head,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 3\r\nConnection: close\r\n\r\n"
    );
    let mut not_allowed = Vec::new();
    response(&mut not_allowed, 405, TEXT_CONTENT_TYPE, b"", false);
    assert_eq!(
        not_allowed,
        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 0\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
    );
    for (status, phrase) in [
        (400, "Bad Request"),
        (404, "Not Found"),
        (408, "Request Timeout"),
        (413, "Content Too Large"),
        (503, "Service Unavailable"),
    ] {
        let mut out = Vec::new();
        response(&mut out, status, TEXT_CONTENT_TYPE, b"x", false);
        let want = format!("HTTP/1.1 {status} {phrase}\r\n");
        assert!(out.starts_with(want.as_bytes()), "{status}");
        assert!(out.ends_with(b"\r\n\r\nx"));
    }
}
