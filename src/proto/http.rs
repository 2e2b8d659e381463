//! Bounded HTTP/1.1 requests for the metrics endpoint.
//!
//! The endpoint answers `GET` (and `HEAD`) of three fixed paths, one request per
//! connection, then closes. [`parse`] is incremental: it is called with every byte
//! received so far and says whether the head is complete, invalid, or over
//! [`MAX_REQUEST`]. Request bodies are refused, so a complete head is the whole request.
//! [`response`] builds the whole answer. Pure: bytes in, bytes out.

use std::io::Write;

/// Most bytes of a request head (request line, headers, blank line).
pub const MAX_REQUEST: usize = 4096;

/// Most header lines in a request.
const MAX_HEADERS: usize = 32;

/// Content type of `GET /metrics`: the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Content type of the other answers.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The request method, as far as the endpoint cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the answer of a `GET` without its body.
    Head,
    /// Any other method.
    Other,
}

/// A complete, valid request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its method.
    pub method: Method,
    /// The path, without the query (the absolute form's scheme and authority dropped).
    pub path: String,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Valid so far; the blank line that ends the head has not arrived.
    Incomplete,
    /// A complete request.
    Request(Request),
    /// Not a request we accept (answer 400); the reason is for a log line.
    Bad(&'static str),
    /// No complete head within [`MAX_REQUEST`] bytes, or too many headers (answer 413).
    TooLarge,
}

/// Parses a request head from everything received so far. Bytes after the head are
/// ignored (the connection is closed after one answer).
pub fn parse(head: &[u8]) -> Parsed {
    let bounded = &head[..head.len().min(MAX_REQUEST)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bounded) {
        Ok(httparse::Status::Partial) if head.len() >= MAX_REQUEST => Parsed::TooLarge,
        Ok(httparse::Status::Partial) => Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => Parsed::TooLarge,
        Err(e) => Parsed::Bad(syntax_error(e)),
        Ok(httparse::Status::Complete(_)) => complete(&req),
    }
}

/// Checks a complete head: version, no body, and the request target.
fn complete(req: &httparse::Request<'_, '_>) -> Parsed {
    if !matches!(req.version, Some(0 | 1)) {
        return Parsed::Bad("HTTP version other than 1.0 or 1.1");
    }
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad("a request body is not accepted (transfer-encoding)");
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = h.value.trim_ascii();
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Parsed::Bad("invalid content-length");
            }
            if value.iter().any(|&b| b != b'0') {
                return Parsed::Bad("a request body is not accepted (content-length)");
            }
        }
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let Some(target) = req.path else {
        return Parsed::Bad("no request target");
    };
    match origin_path(target) {
        Some(path) => Parsed::Request(Request {
            method,
            path: path.to_string(),
        }),
        None => Parsed::Bad("invalid request target"),
    }
}

/// The path of a request target: origin form (`/metrics?x`) or absolute form
/// (`http://host:9100/metrics`), without the query or a fragment. `None` for other forms.
fn origin_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let scheme_end = target.find("://")?;
        if !target[..scheme_end].eq_ignore_ascii_case("http")
            && !target[..scheme_end].eq_ignore_ascii_case("https")
        {
            return None;
        }
        let rest = &target[scheme_end + 3..];
        match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].starts_with('/') => &rest[i..],
            // An empty path is "/".
            Some(_) | None => "/",
        }
    };
    Some(path.find(['?', '#']).map_or(path, |i| &path[..i]))
}

/// A reason for a log line.
fn syntax_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "invalid request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::Status | httparse::Error::TooManyHeaders => "invalid request",
    }
}

/// The reason phrase of a status code (empty for codes the endpoint does not use).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Appends a whole answer: status line, `Content-Type`, `Content-Length`,
/// `Connection: close` (and `Allow` for 405), blank line, then `body` unless `head_only`
/// (the answer to `HEAD` keeps the length of the body it does not send).
pub fn response(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8], head_only: bool) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`: the Prometheus exposition.
    Metrics,
    /// `/sessions`: one line per live session.
    Sessions,
    /// `/upstreams`: one line per upstream address of every group.
    Upstreams,
    /// `/config`: the running configuration, as `check` prints it.
    Config,
    /// `/healthz`: the process is up.
    Healthz,
    /// Any other path (404).
    NotFound,
    /// A known path with a method other than GET or HEAD (405).
    MethodNotAllowed,
}

impl Route {
    /// The content type of a successful answer on this route.
    pub fn content_type(self) -> &'static str {
        match self {
            Route::Metrics => METRICS_CONTENT_TYPE,
            _ => TEXT_CONTENT_TYPE,
        }
    }
}

/// Routes a request: the five paths exactly, `GET` or `HEAD` only.
pub fn route(req: &Request) -> Route {
    let route = match req.path.as_str() {
        "/metrics" => Route::Metrics,
        "/sessions" => Route::Sessions,
        "/upstreams" => Route::Upstreams,
        "/config" => Route::Config,
        "/healthz" => Route::Healthz,
        _ => return Route::NotFound,
    };
    match req.method {
        Method::Get | Method::Head => route,
        Method::Other => Route::MethodNotAllowed,
    }
}

#[cfg(test)]
mod tests;
