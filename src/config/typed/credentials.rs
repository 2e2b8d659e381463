//! A credentials file: its path as the process opens it and the users it lists. Read at
//! once like a secret file (a regular file, bounded in size), and refused when its mode
//! lets anyone but its owner read or write it. Rendered as its path, never its contents.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use super::{one, Cx, Given, Located, Meta, Result, Typed};
use crate::config::parse::quote;
use crate::core::credentials::Credentials;

/// Largest credentials file accepted (a line is at most 511 bytes; this is thousands of
/// users), so `/dev/zero` or a huge file cannot exhaust memory at a start or a reload.
const MAX_CREDENTIALS_FILE: u64 = 1 << 20;

/// The users of a credentials file and the absolute path it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialsFile {
    /// The path, as the process opens it (absolute in config files).
    pub(crate) path: String,
    /// The users it lists.
    pub(crate) credentials: Credentials,
}

impl Typed for CredentialsFile {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        let path = cx.values.path(&t.text).to_string_lossy().into_owned();
        let name = cx.values.name(meta);
        let credentials = read_credentials(&path)
            .map_err(|problem| Located::new(t.span.clone(), format!("{name}: {problem}")))?;
        Ok(CredentialsFile { path, credentials })
    }

    fn render(&self, _: &Meta) -> String {
        quote(&self.path)
    }
}

/// Reads and checks the credentials file at `path`; the problem names the file (and the
/// line, for a line the parser refuses).
fn read_credentials(path: &str) -> std::result::Result<Credentials, String> {
    let cannot = |e: std::io::Error| {
        format!(
            "cannot read {path}: {}",
            crate::os::net::describe(&e).to_lowercase()
        )
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(format!("{path} is not a regular file"));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{path} is readable by others (mode {mode:04o}): chmod 600 it"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIALS_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CREDENTIALS_FILE {
        return Err(format!(
            "{path} is larger than {MAX_CREDENTIALS_FILE} bytes"
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{path} is not UTF-8 text"))?;
    Credentials::parse(text).map_err(|e| match e.line {
        0 => format!("{path}: {}", e.problem),
        line => format!("{path}:{line}: {}", e.problem),
    })
}
