//! A [`Config`] back into the config file format, every default filled in: what
//! `tcpbridge check` prints, and what [`parse`](super::parse) reads back to the same
//! configuration.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{Config, LogFormat, Mode, Service, Source};
use crate::core::handover::ResetPolicy;
use crate::core::tunnel::TunnelPolicy;

/// The effective configuration as TOML: process-wide settings, then one table per
/// listener with every option written out (no `[defaults]`). Addresses are the resolved
/// socket addresses, durations and sizes are in their largest exact unit.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    match &config.source {
        Source::File(path) => out.push_str(&format!(
            "# Effective configuration of {}, every default filled in.\n",
            path.display()
        )),
        Source::Flags => out
            .push_str("# Effective configuration of the command line, every default filled in.\n"),
    }
    let g = &config.global;
    put(&mut out, "buffer_size", quote(&render_size(g.buffer_size)));
    put(&mut out, "max_sessions", g.max_sessions);
    put(
        &mut out,
        "pool_budget",
        quote(&render_size(g.buffer_bound())),
    );
    put(&mut out, "drain_timeout", duration(g.drain_timeout));
    if let Some(addr) = g.metrics_listen {
        put(&mut out, "metrics_listen", quote(&addr.to_string()));
    }
    let format = match g.log_format {
        LogFormat::Human => "human",
        LogFormat::Json => "json",
    };
    put(&mut out, "log_format", quote(format));
    put(&mut out, "log_rate", g.log_rate);
    for l in &config.listeners {
        out.push_str(&format!("\n[[{}]]\n", l.mode.word()));
        put(&mut out, "name", quote(&l.name));
        match &l.mode {
            Mode::Forward(f) => {
                put(&mut out, "listen", addresses(&f.listen));
                put(&mut out, "upstream", addresses(&f.upstreams));
            }
            Mode::Relay(r) => {
                put(
                    &mut out,
                    "tunnel_listen",
                    quote(&r.tunnel_listen.to_string()),
                );
                put(&mut out, "public", services(&r.public));
                put(&mut out, "secret_file", quote(&r.secret_file));
                put(&mut out, "pair_timeout", duration(r.pair_timeout));
                put(&mut out, "max_waiting", r.max_waiting);
                put(&mut out, "max_idle_tunnels", r.max_idle_tunnels);
                put(&mut out, "max_handshakes", r.max_handshakes);
            }
            Mode::Agent(a) => {
                put(&mut out, "relay", quote(&a.relay));
                put(&mut out, "service", services(&a.services));
                put(&mut out, "secret_file", quote(&a.secret_file));
                put(&mut out, "pool", a.pool);
                put(&mut out, "exit_on_disconnect", a.exit_on_disconnect);
                put(&mut out, "backoff_max", duration(a.backoff_max));
            }
        }
        let p = &l.policy;
        put(&mut out, "connect_timeout", duration(p.connect_timeout));
        put(&mut out, "idle_timeout", duration(p.idle_timeout));
        put(
            &mut out,
            "half_close_timeout",
            duration(p.half_close_timeout),
        );
        let reset = match p.reset_policy {
            ResetPolicy::Mirror => "mirror",
            ResetPolicy::Fin => "fin",
        };
        put(&mut out, "reset_policy", quote(reset));
        if let Some(n) = l.max_sessions {
            put(&mut out, "max_sessions", n);
        }
        match &l.mode {
            Mode::Relay(r) => tunnel(&mut out, &r.tunnel),
            Mode::Agent(a) => tunnel(&mut out, &a.tunnel),
            Mode::Forward(_) => {}
        }
    }
    out
}

/// A duration in its largest exact unit: `500ms`, `30s`, `5m`, `1h`, `2d`.
pub fn render_duration(d: Duration) -> String {
    const UNITS: [(u128, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    let millis = d.as_millis();
    for (size, unit) in UNITS {
        if millis >= size && millis % size == 0 {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// A size in its largest exact unit: `16KiB`, `32MiB`, `1000B`.
pub fn render_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

fn put(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{key} = {value}");
}

fn tunnel(out: &mut String, t: &TunnelPolicy) {
    put(out, "handshake_timeout", duration(t.handshake_timeout));
    put(out, "heartbeat_interval", duration(t.heartbeat_interval));
    put(out, "heartbeat_timeout", duration(t.heartbeat_timeout));
}

fn duration(d: Duration) -> String {
    quote(&render_duration(d))
}

/// One address as a string, several as an array.
fn addresses(addrs: &[std::net::SocketAddr]) -> String {
    match addrs {
        [one] => quote(&one.to_string()),
        _ => {
            let items: Vec<String> = addrs.iter().map(|a| quote(&a.to_string())).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// `{ ssh = "127.0.0.1:22", "a.b" = "..." }`.
fn services(services: &[Service]) -> String {
    let items: Vec<String> = services
        .iter()
        .map(|s| format!("{} = {}", key(&s.name), quote(&s.addr.to_string())))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// A key: bare when it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_string()
    } else {
        quote(name)
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
