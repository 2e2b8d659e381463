//! What `check` says about upstream groups: for each listener that has them, the policy,
//! the tries, warm connections and health checks, and every upstream with what its name
//! resolved to, its weight and whether it is a backup.

use super::parse::{render_duration, Word};
use super::{Config, Mode, Upstream, UpstreamOptions};
use crate::core::upstream::HealthCheck;

/// One line per group (`# ` is the caller's).
pub fn describe(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    for l in &config.listeners {
        match &l.mode {
            Mode::Forward(f) => lines.push(line(&l.name, &f.group, &f.upstreams)),
            Mode::Agent(a) => {
                for s in &a.services {
                    let one = Upstream {
                        target: s.target.clone(),
                        addrs: s.addrs.clone(),
                        weight: 1,
                        backup: false,
                        proxy: s.proxy,
                    };
                    let name = format!("{} service {}", l.name, s.name);
                    lines.push(line(&name, &a.group, std::slice::from_ref(&one)));
                }
            }
            Mode::Relay(_) | Mode::Connect(_) | Mode::Socks(_) => {}
        }
    }
    lines
}

/// `upstreams of NAME (POLICY, TRIES[, warm N][, health ...]): A; B = 10.0.0.1:80, ...`
fn line(name: &str, opts: &UpstreamOptions, upstreams: &[Upstream]) -> String {
    let tries = match opts.connect_tries {
        0 => "each upstream once per session".to_string(),
        1 => "1 try per session".to_string(),
        n => format!("{n} tries per session"),
    };
    let mut what = vec![opts.balance.word().to_string(), tries];
    if opts.warm > 0 {
        what.push(format!(
            "{} warm per address, at most {} old",
            opts.warm,
            render_duration(opts.warm_max_age)
        ));
    }
    if opts.health_check != HealthCheck::Off {
        what.push(format!(
            "health {} every {}, fall {}, rise {}",
            opts.health_check.word(),
            render_duration(opts.health_interval),
            opts.health_fall,
            opts.health_rise
        ));
    }
    let each: Vec<String> = upstreams.iter().map(upstream).collect();
    format!(
        "upstreams of {name} ({}): {}",
        what.join(", "),
        each.join("; ")
    )
}

/// One upstream: its target, its addresses when it is a name, its attributes.
fn upstream(u: &Upstream) -> String {
    let mut s = u.target.clone();
    let literal = u.addrs.len() == 1 && u.addrs[0].to_string() == u.target;
    if !literal {
        let addrs: Vec<String> = u.addrs.iter().map(ToString::to_string).collect();
        s.push_str(&format!(" = {}", addrs.join(", ")));
    }
    if u.weight != 1 {
        s.push_str(&format!(" weight {}", u.weight));
    }
    if u.backup {
        s.push_str(" backup");
    }
    if let Some(p) = u.proxy {
        s.push_str(&format!(" proxy {}", p.as_str()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse;
    use std::path::Path;

    #[test]
    fn a_forward_group_is_one_line_with_its_upstreams() {
        let text = "[[forward]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                    upstream = [\"127.0.0.1:9\", \"localhost:10\"]\n";
        let c = parse(text, Path::new("t.toml")).expect("valid");
        let lines = describe(&c);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with(
                "upstreams of web (failover, each upstream once per session): 127.0.0.1:9; \
                 localhost:10 = "
            ),
            "{}",
            lines[0]
        );
    }
}
