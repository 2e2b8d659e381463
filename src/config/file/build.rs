//! The spanned document into a [`Config`]: key checks for every table, then the one
//! builder (`config::build`) for the process-wide settings, `[defaults]` and each
//! listener in file order; and the checks across listeners (unique names, no listen
//! address used twice, at least one and at most [`MAX_LISTENERS`] listeners).

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::keys::{self, TABLES};
use super::layers::Layers;
use super::line_column;
use super::value::{string, table, Section, Value};
use crate::config::build;
use crate::config::setting::{Located, Result, Span, Taken};
use crate::config::{Config, Source, MAX_LISTENERS, MODES};
use crate::proto::tunnel::valid_service_name;

/// The whole document into a [`Config`]; `text` gives line numbers for messages about
/// two places.
pub(super) fn config(root: &DeTable<'_>, text: &str, path: &Path) -> Result<Config> {
    let top = Section::new(root, "at the top level");
    top.only(&keys::top_level(), &|key| keys::home(key, None))?;
    let mut taken = Taken::default();
    let global = build::global(&Layers::new(&top, None, 0..0, text, path), &mut taken)?;
    let defaults = match top.get(TABLES[0]) {
        Some(v) => Some(Section::new(table(TABLES[0], v)?, "in [defaults]")),
        None => None,
    };
    if let Some(d) = &defaults {
        d.only(&keys::defaults(), &|key| keys::home(key, None))?;
        let layers = Layers::new(d, None, 0..0, text, path);
        build::defaults(&layers, &global, &mut taken)?;
    }
    let tables = listener_tables(&top)?;
    let mut listeners = Vec::with_capacity(tables.len());
    let mut names: Vec<(String, Span)> = Vec::new();
    for (number, (mode, header, t)) in tables.into_iter().enumerate() {
        let (name, name_span) = listener_name(mode, t, &header, number)?;
        if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
            return Err(Located::new(
                name_span,
                format!(
                    "listener name '{name}' is already used on line {}",
                    line_column(text, first.start).0
                ),
            ));
        }
        let own = Section::new(t, format!("in [[{mode}]] '{name}'"));
        own.only(&keys::listener(mode), &|key| keys::home(key, Some(mode)))?;
        let layers = Layers::new(&own, defaults.as_ref(), header, text, path);
        listeners.push(build::listener(
            mode,
            name.clone(),
            &layers,
            &global,
            &mut taken,
        )?);
        names.push((name, name_span));
    }
    Ok(Config {
        global,
        listeners,
        source: Source::File(path.to_path_buf()),
    })
}

/// Every listener table (`[[forward]]`, `[[relay]]`, `[[agent]]`, `[[connect]]`,
/// `[[socks]]`), in file order, with its mode
/// and the range of its header.
fn listener_tables<'a, 'i>(
    top: &Section<'a, 'i>,
) -> Result<Vec<(&'static str, Span, &'a DeTable<'i>)>> {
    let mut found = Vec::new();
    for mode in MODES {
        let Some(value) = top.get(mode) else {
            continue;
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(Located::new(
                value.span(),
                format!("{mode} must be an array of tables: write [[{mode}]]"),
            ));
        };
        for item in items.iter() {
            found.push((mode, item.span(), table(mode, item)?));
        }
    }
    found.sort_by_key(|(_, span, _)| span.start);
    if found.is_empty() {
        return Err(Located::new(
            0..0,
            "no listener: add a [[forward]], [[relay]], [[agent]], [[connect]] or [[socks]] table",
        ));
    }
    if let Some((_, span, _)) = found.get(MAX_LISTENERS) {
        return Err(Located::new(
            span.clone(),
            format!("too many listeners (at most {MAX_LISTENERS})"),
        ));
    }
    Ok(found)
}

/// A listener's `name`: required, 1-64 characters of `[A-Za-z0-9._-]`.
fn listener_name(
    mode: &str,
    t: &DeTable<'_>,
    header: &Span,
    number: usize,
) -> Result<(String, Span)> {
    let Some(value): Option<&Value<'_>> = t.get("name") else {
        return Err(Located::new(
            header.clone(),
            format!(
                "listener #{} ([[{mode}]]) has no name: add name = \"...\"",
                number + 1
            ),
        ));
    };
    let name = string("name", value)?;
    if !valid_service_name(name) {
        return Err(Located::new(
            value.span(),
            format!(
                "invalid value '{name}' for name: must be 1-64 characters of A-Z a-z 0-9 . _ -"
            ),
        ));
    }
    Ok((name.to_string(), value.span()))
}
