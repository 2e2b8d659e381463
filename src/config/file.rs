//! Config files: TOML into a [`Config`], with errors that name file, line
//! and column.
//!
//! The format (see `docs/examples/tcpbridge.toml`): process-wide settings as top-level
//! keys, per-listener options in `[defaults]`, and one `[[forward]]`, `[[relay]]` or
//! `[[agent]]` table per listener, each of which may override any per-listener option.
//! Key names are the command-line flags with `_` for `-`, and every default is the
//! command line's. Every value goes through the same parser as its flag, so the problems
//! read the same; an unknown key is an error (with a suggestion when a known key is
//! close).
//!
//! The document is read with `toml`'s spanned tree ([`toml::de::DeTable`]), which keeps
//! the byte range of every key and value; [`FileError`] turns a range into a line and a
//! column.
//!
//! - `value`: typed reads of TOML values, key checks with suggestions;
//! - `layers`: a table as a front end of the one builder (own table, then `[defaults]`);
//! - `build`: the tree into a [`Config`]: key checks, listeners, cross-checks;
//! - `keys`: the keys each table may hold, and where a misplaced key belongs (read off
//!   the table of options);
//! - `render`: a [`Config`] back into the same format, every default filled in.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::Config;

mod build;
mod keys;
mod layers;
mod render;
mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dynamic;
#[cfg(test)]
mod tests_listeners;
#[cfg(all(test, feature = "tls"))]
mod tests_modes;
#[cfg(all(test, not(feature = "tls")))]
mod tests_no_tls;
#[cfg(all(test, feature = "tls"))]
mod tests_tls;
#[cfg(test)]
mod tests_upstreams;

pub use render::render;

/// Largest config file read (1 MiB).
pub const MAX_FILE_SIZE: usize = 1 << 20;

/// Why a config file was refused: where, and what is wrong, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file, as given.
    pub path: PathBuf,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value.
    pub column: usize,
    /// What is wrong, on one line.
    pub problem: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.problem
        )
    }
}

impl std::error::Error for FileError {}

impl FileError {
    /// An error at byte `offset` of `text`.
    fn at(path: &Path, text: &str, offset: usize, problem: impl Into<String>) -> FileError {
        let (line, column) = line_column(text, offset);
        FileError {
            path: path.to_path_buf(),
            line,
            column,
            problem: one_line(&problem.into()),
        }
    }

    /// An error about the whole file (reported at 1:1).
    fn whole(path: &Path, problem: impl Into<String>) -> FileError {
        FileError {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            problem: one_line(&problem.into()),
        }
    }
}

/// Reads `path` (at most [`MAX_FILE_SIZE`] bytes) and parses it with [`parse`].
pub fn load(path: &Path) -> Result<Config, FileError> {
    let cannot = |e: &std::io::Error| {
        FileError::whole(
            path,
            format!("cannot read: {}", crate::os::net::describe(e)),
        )
    };
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_FILE_SIZE)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    if bytes.len() > MAX_FILE_SIZE {
        return Err(too_big(path));
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            return Err(FileError::at(path, valid, valid.len(), "not UTF-8 text"));
        }
    };
    parse(text, path)
}

/// Parses a config file's `text`; `path` names it in errors and anchors relative
/// `secret_file` paths. Touches the filesystem only to read secret files (and resolves
/// host names given as addresses, as the command line does).
pub fn parse(text: &str, path: &Path) -> Result<Config, FileError> {
    if text.len() > MAX_FILE_SIZE {
        return Err(too_big(path));
    }
    let root = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        FileError::at(path, text, offset, format!("invalid TOML: {}", e.message()))
    })?;
    build::config(root.get_ref(), text, path)
        .map_err(|e| FileError::at(path, text, e.span.start, e.problem))
}

fn too_big(path: &Path) -> FileError {
    FileError::whole(
        path,
        format!(
            "the file is larger than {}",
            super::parse::human_size(MAX_FILE_SIZE)
        ),
    )
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// Longest problem text kept (a value echoed back may be long).
const MAX_PROBLEM: usize = 400;

/// Escapes control characters (a multi-line string value echoed back) so an error is
/// always one line, and cuts it at [`MAX_PROBLEM`] characters.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_PROBLEM {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}
