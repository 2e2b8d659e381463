//! Reading the spanned TOML tree: errors at a byte range, typed reads of values (the
//! text each parser reads), and the check that refuses unknown keys, with a suggestion
//! when a known key is within two edits.

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use crate::config::meta::Kind;
use crate::config::setting::{Located, Result, Span};

/// A value of the document with its byte range.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// What a key's value may be written as in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileType {
    /// A string: durations, addresses, words.
    Text,
    /// An integer: counts and rates.
    Whole,
    /// A string with a unit or an integer number of bytes.
    Size,
}

impl FileType {
    /// How a single value of this kind is written.
    pub(super) fn of(kind: Kind) -> FileType {
        match kind {
            Kind::Count { .. } | Kind::Rate => FileType::Whole,
            Kind::Size { .. } => FileType::Size,
            _ => FileType::Text,
        }
    }
}

/// The text the parser of `key` reads from `value`, after checking its type.
pub(super) fn text_of(key: &str, value: &Value<'_>, kind: FileType) -> Result<String> {
    match (kind, value.get_ref()) {
        (FileType::Text | FileType::Size, DeValue::String(s)) => Ok(s.to_string()),
        (FileType::Whole | FileType::Size, DeValue::Integer(i)) => {
            Ok(i128::from_str_radix(i.as_str(), i.radix())
                .map_or_else(|_| i.to_string(), |n| n.to_string()))
        }
        (FileType::Text, _) => Err(wrong_type(key, value, "a string")),
        (FileType::Whole, _) => Err(wrong_type(key, value, "an integer")),
        (FileType::Size, _) => Err(wrong_type(
            key,
            value,
            "a size (e.g. \"16KiB\") or an integer",
        )),
    }
}

/// A string value.
pub(super) fn string<'v>(key: &str, value: &'v Value<'_>) -> Result<&'v str> {
    value
        .get_ref()
        .as_str()
        .ok_or_else(|| wrong_type(key, value, "a string"))
}

/// A boolean value.
pub(super) fn boolean(key: &str, value: &Value<'_>) -> Result<bool> {
    value
        .get_ref()
        .as_bool()
        .ok_or_else(|| wrong_type(key, value, "true or false"))
}

/// A table value.
pub(super) fn table<'v, 'i>(key: &str, value: &'v Value<'i>) -> Result<&'v DeTable<'i>> {
    value
        .get_ref()
        .as_table()
        .ok_or_else(|| wrong_type(key, value, "a table"))
}

/// A string or a non-empty array of strings, each with its range; an empty array is
/// refused, naming `what` it must hold.
pub(super) fn strings<'v>(
    key: &str,
    value: &'v Value<'_>,
    what: &str,
) -> Result<Vec<(&'v str, Span)>> {
    match value.get_ref() {
        DeValue::String(s) => Ok(vec![(s.as_ref(), value.span())]),
        DeValue::Array(items) if items.is_empty() => Err(Located::new(
            value.span(),
            format!("{key} must hold at least one {what}"),
        )),
        DeValue::Array(items) => items
            .iter()
            .map(|item| Ok((string(key, item)?, item.span())))
            .collect(),
        _ => Err(wrong_type(key, value, "a string or an array of strings")),
    }
}

fn wrong_type(key: &str, value: &Value<'_>, expected: &str) -> Located {
    let found = match value.get_ref() {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    };
    Located::new(
        value.span(),
        format!("invalid type for {key}: expected {expected}, found {found}"),
    )
}

/// One table of the document, and how errors name it.
#[derive(Debug, Clone)]
pub(super) struct Section<'a, 'i> {
    table: &'a DeTable<'i>,
    /// `at the top level`, `in [defaults]`, `in [[forward]] 'web'`...
    pub place: String,
}

impl<'a, 'i> Section<'a, 'i> {
    /// `table`, named `place` in errors.
    pub(super) fn new(table: &'a DeTable<'i>, place: impl Into<String>) -> Self {
        Section {
            table,
            place: place.into(),
        }
    }

    /// The value of `key`, if given.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table.get(key)
    }

    /// The entries in the order they appear in the file.
    pub(super) fn entries(&self) -> Vec<(&'a Spanned<DeString<'i>>, &'a Value<'i>)> {
        let mut entries: Vec<_> = self.table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        entries
    }

    /// Refuses the first key (in file order) not in `known`. `home` says where a key
    /// known elsewhere belongs; otherwise a known key within two edits is suggested.
    pub(super) fn only(&self, known: &[&str], home: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        for (key, _) in self.entries() {
            let name: &str = key.get_ref();
            if known.contains(&name) {
                continue;
            }
            let problem = match home(name) {
                Some(home) => format!("key '{name}' does not belong {}: {home}", self.place),
                None => match suggest(name, known) {
                    Some(s) => format!("unknown key '{name}' {} (did you mean '{s}'?)", self.place),
                    None => format!("unknown key '{name}' {}", self.place),
                },
            };
            return Err(Located::new(key.span(), problem));
        }
        Ok(())
    }
}

/// The known key closest to `key`, if within two edits.
pub(super) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    const LONGEST: usize = 64;
    if key.chars().count() > LONGEST {
        return None;
    }
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("idel_timeout", "idle_timeout"), 2);
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("upstreams", "upstream"), 1);
    }

    #[test]
    fn suggestions_are_close_keys_only() {
        let known = ["idle_timeout", "connect_timeout", "listen"];
        assert_eq!(suggest("idel_timeout", &known), Some("idle_timeout"));
        assert_eq!(suggest("lisen", &known), Some("listen"));
        assert_eq!(suggest("frobnicate", &known), None);
    }
}
