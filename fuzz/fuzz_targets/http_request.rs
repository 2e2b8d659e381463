//! Fuzzes the metrics endpoint's request parser (`proto::http::parse`) and router.
//!
//! Input: the bytes a client sends. The endpoint parses everything received so far after
//! every read, so the parser is run on prefixes too (every line end, and a cut chosen by
//! the first byte). Checked:
//! - once a prefix is decided (a request, bad, too large), every longer prefix gives the
//!   same answer: more bytes never change a verdict;
//! - a request's path starts with `/` and holds no query or fragment;
//! - nothing at or past `MAX_REQUEST` bytes is ever `Incomplete`;
//! - the answer built for the route has a `Content-Length` equal to its body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpbridge::proto::http::{parse, response, route, Method, Parsed, Route, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_REQUEST + 512)];
    let mut cuts: Vec<usize> = data
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .take(64)
        .collect();
    if let Some(&first) = data.first() {
        cuts.push(usize::from(first) * data.len() / 256);
    }
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.dedup();

    let mut decided: Option<(usize, Parsed)> = None;
    for &cut in &cuts {
        let parsed = parse(&data[..cut]);
        if cut >= MAX_REQUEST {
            assert_ne!(parsed, Parsed::Incomplete, "{cut} bytes still incomplete");
        }
        match &decided {
            Some((at, earlier)) => assert_eq!(
                &parsed, earlier,
                "{at} bytes were decided, but {cut} bytes read differently"
            ),
            None if parsed != Parsed::Incomplete => decided = Some((cut, parsed.clone())),
            None => {}
        }
        if let Parsed::Request(req) = &parsed {
            assert!(req.path.starts_with('/'), "path {:?}", req.path);
            assert!(!req.path.contains(['?', '#']), "path {:?}", req.path);
            let r = route(req);
            let status = match r {
                Route::NotFound => 404,
                Route::MethodNotAllowed => 405,
                _ => 200,
            };
            let body = req.path.as_bytes();
            let mut out = Vec::new();
            response(
                &mut out,
                status,
                r.content_type(),
                body,
                req.method == Method::Head,
            );
            let head_end = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("an answer has a blank line")
                + 4;
            let length = format!("Content-Length: {}\r\n", body.len());
            assert!(
                out[..head_end]
                    .windows(length.len())
                    .any(|w| w == length.as_bytes()),
                "Content-Length does not match the body"
            );
            let sent = if req.method == Method::Head {
                0
            } else {
                body.len()
            };
            assert_eq!(out.len() - head_end, sent, "body length");
        }
    }
});
