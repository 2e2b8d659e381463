//! A [`Config`] back into the config file format, every default filled in: what
//! `tcpbridge check` prints (and `GET /config` serves), and what [`parse`](super::parse)
//! reads back to the same configuration. Driven by the table of options: each option
//! renders its own value.

use std::fmt::Write as _;

use crate::config::options::{AGENT, DYNAMIC, FORWARD, GLOBAL, RELAY, SESSION, TUNNEL, UPSTREAMS};
use crate::config::parse::quote;
use crate::config::setting::Setting;
use crate::config::{Config, Mode, Source, TunnelOptions};

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
    put_all(&mut out, GLOBAL, &config.global);
    for l in &config.listeners {
        let _ = write!(out, "\n[[{}]]\nname = {}\n", l.mode.word(), quote(&l.name));
        match &l.mode {
            Mode::Forward(f) => {
                put_all(&mut out, FORWARD, f);
                put_all(&mut out, UPSTREAMS, &f.group);
            }
            Mode::Relay(r) => put_all(&mut out, RELAY, r),
            Mode::Connect(d) | Mode::Socks(d) => put_all(&mut out, DYNAMIC, d),
            Mode::Agent(a) => {
                put_all(&mut out, AGENT, a);
                put_all(&mut out, UPSTREAMS, &a.group);
            }
        }
        put_all(&mut out, SESSION, l);
        if let Some(t) = tunnel(&l.mode) {
            put_all(&mut out, TUNNEL, t);
        }
    }
    out
}

/// The tunnel options of a relay or agent.
fn tunnel(mode: &Mode) -> Option<&TunnelOptions> {
    match mode {
        Mode::Forward(_) | Mode::Connect(_) | Mode::Socks(_) => None,
        Mode::Relay(r) => Some(&r.tunnel),
        Mode::Agent(a) => Some(&a.tunnel),
    }
}

/// One `key = value` line per option of `list` that has a value in `target`.
fn put_all<T>(out: &mut String, list: &[&dyn Setting<T>], target: &T) {
    for setting in list {
        if let Some(value) = setting.show(target) {
            let _ = writeln!(out, "{} = {value}", setting.meta().key);
        }
    }
}
