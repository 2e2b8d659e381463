//! The keys of each table: which are known where, and where a misplaced key belongs.

/// Process-wide settings: top-level keys.
pub(super) const GLOBAL: &[&str] = &[
    "buffer_size",
    "max_sessions",
    "pool_budget",
    "drain_timeout",
    "metrics_listen",
    "log_format",
    "log_rate",
];

/// The tables of the top level.
pub(super) const TABLES: &[&str] = &["defaults", "forward", "relay", "agent"];

/// The listener modes, as table names.
pub(super) const MODES: &[&str] = &["forward", "relay", "agent"];

/// Options of every listener, which `[defaults]` may set.
pub(super) const COMMON: &[&str] = &[
    "connect_timeout",
    "idle_timeout",
    "half_close_timeout",
    "reset_policy",
    "max_sessions",
];

/// Tunnel options, used by relay and agent listeners.
pub(super) const TUNNEL: &[&str] = &[
    "handshake_timeout",
    "heartbeat_interval",
    "heartbeat_timeout",
];

/// The keys `[defaults]` may hold.
pub(super) const PER_LISTENER: &[&str] = &[
    "connect_timeout",
    "idle_timeout",
    "half_close_timeout",
    "reset_policy",
    "max_sessions",
    "handshake_timeout",
    "heartbeat_interval",
    "heartbeat_timeout",
];

/// The keys of each mode's table, besides [`COMMON`] (and [`TUNNEL`] for relay and agent).
const OWN: [&[&str]; 3] = [
    &["name", "listen", "upstream"],
    &[
        "name",
        "tunnel_listen",
        "public",
        "secret_file",
        "pair_timeout",
        "max_waiting",
        "max_idle_tunnels",
        "max_handshakes",
    ],
    &[
        "name",
        "relay",
        "service",
        "secret_file",
        "pool",
        "exit_on_disconnect",
        "backoff_max",
    ],
];

/// Where a key that is known elsewhere belongs, for an error about it in a table of
/// `mode` (`None`: the top level or `[defaults]`).
pub(super) fn home(key: &str, mode: Option<&str>) -> Option<String> {
    if mode == Some("forward") && TUNNEL.contains(&key) {
        return Some("tunnel options are for [[relay]] and [[agent]] listeners only".into());
    }
    if GLOBAL.contains(&key) {
        return Some("process-wide settings go at the top, before any table".into());
    }
    if PER_LISTENER.contains(&key) {
        return Some("per-listener options go in [defaults] or a listener table".into());
    }
    let owners: Vec<String> = MODES
        .iter()
        .zip(OWN)
        .filter(|(_, keys)| keys.contains(&key))
        .map(|(m, _)| format!("[[{m}]]"))
        .collect();
    match owners.as_slice() {
        [] => None,
        [one] => Some(format!("it is an option of {one} listeners")),
        [first @ .., last] => Some(format!(
            "it is an option of {} and {last} listeners",
            first.join(", ")
        )),
    }
}

/// The keys a table of `mode` may hold.
pub(super) fn listener_keys(mode: &str) -> Vec<&'static str> {
    let position = MODES.iter().position(|m| *m == mode).unwrap_or(0);
    let mut known: Vec<&str> = OWN.get(position).copied().unwrap_or_default().to_vec();
    known.extend(COMMON);
    if mode != "forward" {
        known.extend(TUNNEL);
    }
    known
}
