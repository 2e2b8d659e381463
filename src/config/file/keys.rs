//! The keys each table may hold, and where a misplaced key belongs: all read off the
//! table of options, so a new option is known to config files the moment it is defined.

use crate::config::meta::Scope;
use crate::config::options::{self, NAME};
use crate::config::MODES;

/// The tables of the top level.
pub(super) const TABLES: [&str; 6] = ["defaults", MODES[0], MODES[1], MODES[2], MODES[3], MODES[4]];

/// The keys of the top level: process-wide settings, then the tables.
pub(super) fn top_level() -> Vec<&'static str> {
    options::all()
        .into_iter()
        .filter(|m| m.scope == Scope::Global)
        .map(|m| m.key)
        .chain(TABLES)
        .collect()
}

/// The keys `[defaults]` may hold.
pub(super) fn defaults() -> Vec<&'static str> {
    options::all()
        .into_iter()
        .filter(|m| m.scope.in_defaults())
        .map(|m| m.key)
        .collect()
}

/// The keys a table of `mode` may hold.
pub(super) fn listener(mode: &str) -> Vec<&'static str> {
    std::iter::once(NAME.key)
        .chain(options::of_mode(mode).into_iter().map(|m| m.key))
        .collect()
}

/// Where a key that is known elsewhere belongs, for an error about it in a table of
/// `mode` (`None`: the top level or `[defaults]`).
pub(super) fn home(key: &str, mode: Option<&str>) -> Option<String> {
    let scopes: Vec<Scope> = options::all()
        .into_iter()
        .filter(|m| m.key == key)
        .map(|m| m.scope)
        .collect();
    let tunnel_only = options::modes_having(key) == [MODES[1], MODES[2]];
    if mode.is_some() && scopes.contains(&Scope::Tunnel) && tunnel_only {
        return Some("tunnel options are for [[relay]] and [[agent]] listeners only".into());
    }
    if scopes.contains(&Scope::Global) {
        return Some("process-wide settings go at the top, before any table".into());
    }
    if mode.is_none() && scopes.iter().any(|s| s.in_defaults()) {
        return Some("per-listener options go in [defaults] or a listener table".into());
    }
    let owners: Vec<String> = options::modes_having(key)
        .iter()
        .map(|m| format!("[[{m}]]"))
        .collect();
    let because = match mode.and_then(|m| options::reason_not_in(key, m)) {
        Some(why) => format!("; {why}"),
        None => String::new(),
    };
    match owners.as_slice() {
        [] => None,
        [one] => Some(format!("it is an option of {one} listeners{because}")),
        [first @ .., last] => Some(format!(
            "it is an option of {} and {last} listeners{because}",
            first.join(", ")
        )),
    }
}
