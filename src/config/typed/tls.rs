//! The value types of the TLS options: PEM files (read at once, bounded), the pinned
//! fingerprint of the relay's key, and the server name a relay certificate must carry.

use super::{one, Cx, Given, Meta, Result, Typed};
use crate::config::parse::quote;
use crate::config::setting::located;
use crate::config::{ConfigError, PemFile};
use crate::os::fingerprint::Fingerprint;

/// Largest PEM file accepted: a chain of a few certificates, a key, a CA bundle.
pub(super) const MAX_PEM_FILE: u64 = 1 << 20;

fn error(flag: &str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag: flag.to_string(),
        value: value.to_string(),
        problem: problem.into(),
    }
}

/// Reads a PEM file: a regular file of at most [`MAX_PEM_FILE`] bytes (a FIFO or
/// `/dev/zero` cannot hang or exhaust a start or a reload). What it holds is checked
/// with the other TLS options (`build`).
pub(super) fn read_pem(flag: &str, path: &str) -> std::result::Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| error(flag, path, format!("cannot read: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(error(flag, path, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(error(
            flag,
            path,
            format!("larger than {MAX_PEM_FILE} bytes"),
        ));
    }
    Ok(bytes)
}

impl Typed for PemFile {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        let path = cx.values.path(&t.text).to_string_lossy().into_owned();
        let pem = read_pem(&cx.values.name(meta), &path).map_err(located(&t.span))?;
        Ok(PemFile { path, pem })
    }

    fn render(&self, _: &Meta) -> String {
        quote(&self.path)
    }
}

impl Typed for Fingerprint {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        Fingerprint::parse(&t.text)
            .ok_or_else(|| {
                error(
                    &cx.values.name(meta),
                    t.text.trim(),
                    "expected sha256: and 64 hexadecimal digits",
                )
            })
            .map_err(located(&t.span))
    }

    fn render(&self, _: &Meta) -> String {
        quote(&self.to_string())
    }
}

/// The DNS name a relay's certificate must carry (`tunnel_tls_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName(pub String);

impl Typed for ServerName {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        let name = t.text.trim();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !valid {
            let e = error(&cx.values.name(meta), name, "expected a DNS name");
            return Err(located(&t.span)(e));
        }
        Ok(ServerName(name.to_string()))
    }

    fn render(&self, _: &Meta) -> String {
        quote(&self.0)
    }
}
