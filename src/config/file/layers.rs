//! A config file as a front end of the builder: an option is looked up in its table, then
//! (for per-listener options) in `[defaults]`; its TOML value is checked against the
//! type its kind is written as and handed over with its byte range.

use std::path::{Path, PathBuf};

use super::line_column;
use super::value::{boolean, strings, table, text_of, FileType, Section, Value};
use crate::config::meta::{Kind, Meta};
use crate::config::setting::{Given, Located, Origin, Pair, Raw, Result, Span, Text, Values};

/// Where a table's options are looked up: its own table, then `[defaults]`.
#[derive(Debug)]
pub(super) struct Layers<'s, 'a, 'i> {
    own: &'s Section<'a, 'i>,
    defaults: Option<&'s Section<'a, 'i>>,
    /// The table's header: where a missing key or a built-in default is reported.
    header: Span,
    /// The whole file, for line numbers.
    text: &'s str,
    /// The config file, which relative paths are relative to.
    path: &'s Path,
}

impl<'s, 'a, 'i> Layers<'s, 'a, 'i> {
    /// Looks in `own`, then in `defaults`.
    pub(super) fn new(
        own: &'s Section<'a, 'i>,
        defaults: Option<&'s Section<'a, 'i>>,
        header: Span,
        text: &'s str,
        path: &'s Path,
    ) -> Self {
        Layers {
            own,
            defaults,
            header,
            text,
            path,
        }
    }

    fn find(&self, meta: &Meta) -> Option<(&'a Value<'i>, Origin)> {
        if let Some(v) = self.own.get(meta.key) {
            return Some((v, Origin::Own));
        }
        // A key `[defaults]` may hold is a default for every listener that has an option
        // of that name: `handshake_timeout` is the tunnels' there, and also bounds the
        // handshakes of `connect` and `socks` listeners.
        let from_defaults = meta.scope.in_defaults()
            || crate::config::options::all()
                .into_iter()
                .any(|m| m.key == meta.key && m.scope.in_defaults());
        self.defaults
            .filter(|_| from_defaults)
            .and_then(|d| d.get(meta.key))
            .map(|v| (v, Origin::Defaults))
    }
}

/// What an option that takes one or more values holds, for the error about an empty
/// array (the same words as the builder's).
fn many_what(kind: Kind) -> &'static str {
    match kind {
        Kind::Blocks => "CIDR block",
        Kind::Rules => "rule",
        _ => "address",
    }
}

impl Values for Layers<'_, '_, '_> {
    fn get(&self, meta: &Meta) -> Result<Option<Given>> {
        let Some((v, origin)) = self.find(meta) else {
            return Ok(None);
        };
        let key = meta.key;
        let raw = match meta.kind {
            Kind::Switch => Raw::Switch(boolean(key, v)?),
            Kind::Addresses { .. } | Kind::Blocks | Kind::Rules => Raw::Many(
                strings(key, v, many_what(meta.kind))?
                    .into_iter()
                    .map(|(text, span)| Text {
                        text: text.to_string(),
                        span,
                    })
                    .collect(),
            ),
            Kind::Services { .. } => {
                let entries = Section::new(table(key, v)?, "").entries();
                let pairs = entries
                    .into_iter()
                    .map(|(name, addr)| {
                        let name_text: &str = name.get_ref();
                        Ok(Pair {
                            name: Text {
                                text: name_text.to_string(),
                                span: name.span(),
                            },
                            addr: Text {
                                text: text_of(&format!("{key}.{name_text}"), addr, FileType::Text)?,
                                span: addr.span(),
                            },
                            whole: name_text.to_string(),
                        })
                    })
                    .collect::<Result<Vec<Pair>>>()?;
                Raw::Pairs(pairs)
            }
            kind => Raw::One(Text {
                text: text_of(key, v, FileType::of(kind))?,
                span: v.span(),
            }),
        };
        Ok(Some(Given {
            raw,
            span: v.span(),
            origin,
        }))
    }

    fn name(&self, meta: &Meta) -> String {
        meta.key.to_string()
    }

    fn item(&self, meta: &Meta, item: &str) -> String {
        format!("{}.{item}", meta.key)
    }

    fn missing(&self, meta: &Meta) -> Located {
        Located::new(
            self.header.clone(),
            format!("missing key '{}' {}", meta.key, self.own.place),
        )
    }

    fn here(&self) -> Span {
        self.header.clone()
    }

    fn place(&self, _: &Meta, span: &Span) -> String {
        format!("on line {}", line_column(self.text, span.start).0)
    }

    fn path(&self, written: &str) -> PathBuf {
        let given = Path::new(written);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new("")).join(given)
        };
        std::path::absolute(&joined).unwrap_or(joined)
    }
}
