//! The spanned document into a [`Config`]: process-wide settings, `[defaults]`, the
//! listeners in file order, and the checks across listeners (unique names, no listen
//! address used twice, at least one and at most [`MAX_LISTENERS`] listeners).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::keys::{self, GLOBAL, MODES, TABLES};
use super::modes::{self, Layers};
use super::value::{located, string, table, Kind, Located, Result, Section, Span};
use super::{line_column, MAX_LISTENERS};
use crate::config::{self as cfg, defaults as dflt, Config, Global, Source};
use crate::proto::tunnel::valid_service_name;

/// The whole document into a [`Config`]; `text` gives line numbers for messages about
/// two places.
pub(super) fn config(root: &DeTable<'_>, text: &str, path: &Path) -> Result<Config> {
    let top = Section::new(root, "at the top level");
    let known: Vec<&str> = GLOBAL.iter().chain(TABLES).copied().collect();
    top.only(&known, &|key| keys::home(key, None))?;
    let global = global(&top)?;
    let defaults = match top.get("defaults") {
        Some(v) => Some(Section::new(table("defaults", v)?, "in [defaults]")),
        None => None,
    };
    if let Some(d) = &defaults {
        d.only(keys::PER_LISTENER, &|key| keys::home(key, None))?;
        // Each default is checked on its own, even if no listener uses it.
        let layers = Layers::new(d, None, 0..0);
        modes::options(&layers, &global)?;
        modes::tunnel_options(&layers)?;
    }
    let tables = listener_tables(&top)?;
    let mut listeners = Vec::with_capacity(tables.len());
    let mut names: Vec<(String, Span)> = Vec::new();
    let mut taken = Taken {
        text,
        seen: HashMap::new(),
    };
    if let (Some(addr), Some(v)) = (global.metrics_listen, top.get("metrics_listen")) {
        taken.add(addr, &v.span())?;
    }
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
        let layers = Layers::new(&own, defaults.as_ref(), header);
        let listener = modes::listener(mode, name.clone(), &layers, &global, path, &mut taken)?;
        names.push((name, name_span));
        listeners.push(listener);
    }
    Ok(Config {
        global,
        listeners,
        source: Source::File(path.to_path_buf()),
    })
}

/// Listen addresses seen so far, to refuse one used twice (port 0 excepted).
#[derive(Debug)]
pub(super) struct Taken<'t> {
    text: &'t str,
    seen: HashMap<SocketAddr, Span>,
}

impl Taken<'_> {
    /// Records `addr`, written at `span`; refuses it if already recorded.
    pub fn add(&mut self, addr: SocketAddr, span: &Span) -> Result<()> {
        if addr.port() == 0 {
            return Ok(());
        }
        if let Some(first) = self.seen.get(&addr) {
            return Err(Located::new(
                span.clone(),
                format!(
                    "address {addr} is already used on line {}",
                    line_column(self.text, first.start).0
                ),
            ));
        }
        self.seen.insert(addr, span.clone());
        Ok(())
    }
}

/// The process-wide settings.
fn global(top: &Section<'_, '_>) -> Result<Global> {
    let layers = Layers::new(top, None, 0..0);
    let (text, span) = layers.text("buffer_size", Kind::Size, dflt::BUFFER_SIZE)?;
    let buffer_size =
        cfg::parse_size("buffer_size", &text, cfg::MAX_BUFFER).map_err(located(&span))?;
    let (text, span) = layers.text("max_sessions", Kind::Whole, dflt::MAX_SESSIONS)?;
    let max_sessions =
        cfg::parse_count("max_sessions", &text, cfg::MAX_SESSIONS).map_err(located(&span))?;
    let pool_buffers = match layers.optional("pool_budget", Kind::Size)? {
        None => max_sessions.saturating_mul(2),
        Some((text, span)) => {
            let budget =
                cfg::parse_size("pool_budget", &text, usize::MAX).map_err(located(&span))?;
            (budget / buffer_size).max(1)
        }
    };
    let metrics_listen = match layers.optional("metrics_listen", Kind::Text)? {
        None => None,
        Some((text, span)) => {
            let addrs =
                cfg::parse_address("metrics_listen", &text, true).map_err(located(&span))?;
            addrs.first().copied()
        }
    };
    let (text, span) = layers.text("log_format", Kind::Text, dflt::LOG_FORMAT)?;
    let log_format = cfg::parse_log_format("log_format", &text).map_err(located(&span))?;
    let (text, span) = layers.text("log_rate", Kind::Whole, dflt::LOG_RATE)?;
    let log_rate = cfg::parse_rate("log_rate", &text).map_err(located(&span))?;
    Ok(Global {
        buffer_size,
        max_sessions,
        pool_buffers,
        drain_timeout: layers.duration("drain_timeout", dflt::DRAIN_TIMEOUT)?,
        metrics_listen,
        log_format,
        log_rate,
    })
}

/// Every `[[forward]]`, `[[relay]]` and `[[agent]]` table, in file order, with its mode
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
            found.push((*mode, item.span(), table(mode, item)?));
        }
    }
    found.sort_by_key(|(_, span, _)| span.start);
    if found.is_empty() {
        return Err(Located::new(
            0..0,
            "no listener: add a [[forward]], [[relay]] or [[agent]] table",
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
    let Some(value) = t.get("name") else {
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
