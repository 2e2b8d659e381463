//! How many sessions a configuration may have under the open-files limit, and the memory
//! bound that follows: one computation, so `run` (after raising its soft limit toward
//! the hard one) and `check` (reporting what `run` would do) print the same lines for the
//! same input.
//!
//! Each session needs two descriptors; a relay's idle tunnels and handshakes and an
//! agent's idle tunnels need theirs. A session limit the open-files limit cannot carry
//! is lowered, as HAProxy derives `maxconn` from `ulimit -n`: accepting a client we could
//! not dial for would only close it at once. Pure: the limits are passed in.

use super::parse::human_size;
use super::Config;
use crate::core::pool::{Classes, Splice};

/// Descriptors kept free besides sessions' and the modes' sockets.
const SPARE: usize = 16;

/// The session limit a configuration runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Sessions alive at once, over all listeners.
    pub max_sessions: usize,
    /// Set when the configured limit was lowered to fit the open-files limit.
    pub lowered: Option<Lowered>,
    /// Kernel pipes for splice: what the configuration allows, within the descriptors
    /// left after every session's (never a session less for a pipe).
    pub pipes: usize,
}

/// Why and from what the session limit was lowered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lowered {
    /// The open-files soft limit that did not allow more.
    pub limit: u64,
    /// The configured `max_sessions`.
    pub wanted: usize,
}

/// Descriptors the configuration wants: two per session and per kernel pipe, the modes'
/// sockets, those open now (`open_now`) and a few spare. `run` raises its soft limit
/// toward this.
pub fn descriptors_wanted(config: &Config, open_now: usize) -> u64 {
    let total = config
        .global
        .max_sessions
        .saturating_add(pipes_wanted(config))
        .saturating_mul(2)
        .saturating_add(in_use(config, open_now))
        .saturating_add(SPARE);
    u64::try_from(total).unwrap_or(u64::MAX)
}

/// Kernel pipes the configuration allows: none with splice off or where the system has
/// no splice(2); else `max_pipes`, within half the pool budget (the pool lends large
/// storage only while half the budget is free).
pub fn pipes_wanted(config: &Config) -> usize {
    let g = &config.global;
    if g.splice == Splice::Off || !cfg!(target_os = "linux") {
        return 0;
    }
    g.max_pipes.min(g.pool_budget / 2 / g.buffer_max.max(1))
}

/// The session limit under an open-files soft limit of `soft` (`None`: unknown, keep
/// the configured one).
pub fn sessions(config: &Config, open_now: usize, soft: Option<u64>) -> Sizing {
    let wanted = config.global.max_sessions;
    let pipes = pipes_wanted(config);
    let Some(soft) = soft else {
        return Sizing {
            max_sessions: wanted,
            lowered: None,
            pipes,
        };
    };
    let free = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(in_use(config, open_now).saturating_add(SPARE));
    let affordable = free / 2;
    if affordable < wanted {
        Sizing {
            max_sessions: affordable.max(1),
            lowered: Some(Lowered {
                limit: soft,
                wanted,
            }),
            pipes: 0,
        }
    } else {
        Sizing {
            max_sessions: wanted,
            lowered: None,
            pipes: pipes.min((free - 2 * wanted) / 2),
        }
    }
}

/// Descriptors besides sessions': those open now and the modes' sockets.
fn in_use(config: &Config, open_now: usize) -> usize {
    config
        .listeners
        .iter()
        .map(|l| l.mode.extra_sockets())
        .fold(open_now, usize::saturating_add)
}

impl Sizing {
    /// The line saying the limit was lowered, if it was.
    pub fn lowered_line(&self) -> Option<String> {
        self.lowered.map(|l| {
            format!(
                "open-files limit {} allows {} sessions: max_sessions {} lowered",
                l.limit, self.max_sessions, l.wanted
            )
        })
    }

    /// The memory bound: the pool budget (ring buffers of the classes, kernel pipes), and
    /// `per_session` bytes of state for each session (slab and timer entries).
    pub fn memory_line(&self, config: &Config, per_session: usize) -> String {
        let g = &config.global;
        let classes = Classes::new(g.buffer_size, g.buffer_max);
        let rings = match classes.sizes() {
            [one] => format!("rings of {}", human_size(*one)),
            sizes => format!(
                "rings of {} to {}",
                human_size(sizes[0]),
                human_size(sizes[sizes.len() - 1])
            ),
        };
        let pipes = match self.pipes {
            0 => "no splice".to_string(),
            n => format!("at most {n} kernel pipes of {}", human_size(g.buffer_max)),
        };
        let tls = tls_line(config, self.max_sessions);
        let warm: usize = config.listeners.iter().map(|l| l.mode.warm_sockets()).sum();
        let warm = match warm {
            0 => String::new(),
            n => format!(" + {n} warm connections (kernel socket memory, no buffers)"),
        };
        format!(
            "memory bound: {} of buffers ({rings}; {pipes}) + {} of session state \
             ({} sessions){warm}{tls}",
            human_size(g.buffer_bound()),
            human_size(self.max_sessions.saturating_mul(per_session)),
            self.max_sessions
        )
    }
}

/// What rustls holds for an idle TLS tunnel: its connection state and a 4 KiB buffer for
/// records (measured: 8.3 KiB of relay RSS per idle tunnel, `docs/tls.md`).
const TLS_IDLE: usize = 8 * 1024 + 512;

/// What a TLS tunnel may hold besides, while its socket is full: 64 KiB of records not
/// yet written (rustls's limit), a record being read and its plaintext (16 KiB each).
const TLS_BUSY: usize = 96 * 1024;

/// The TLS part of the memory bound, when a relay or agent runs TLS tunnels: every
/// session may be one, besides the listeners' idle tunnels and handshakes.
fn tls_line(config: &Config, max_sessions: usize) -> String {
    let own: Option<usize> = config
        .listeners
        .iter()
        .filter_map(|l| l.mode.tls_tunnels())
        .reduce(usize::saturating_add);
    let Some(own) = own else {
        return String::new();
    };
    let tunnels = own.saturating_add(max_sessions);
    format!(
        " + TLS state of up to {tunnels} tunnels ({} idle, up to {} while their sockets \
         are full)",
        human_size(tunnels.saturating_mul(TLS_IDLE)),
        human_size(tunnels.saturating_mul(TLS_IDLE + TLS_BUSY))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse;
    use std::path::Path;

    fn config(max_sessions: usize) -> Config {
        let text = format!(
            "max_sessions = {max_sessions}\n[[forward]]\nname = \"f\"\n\
             listen = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:9\"\n"
        );
        parse(&text, Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn a_limit_that_carries_every_session_changes_nothing() {
        let c = config(100);
        // 100 sessions and 6 kernel pipes of two descriptors each: max-sessions / 4 = 25,
        // but 6 of 256 KiB fill half the 3.2 MB budget.
        assert_eq!(descriptors_wanted(&c, 4), 212 + 4 + 16);
        let s = sessions(&c, 4, Some(232));
        assert_eq!(s.pipes, 6);
        assert_eq!((s.max_sessions, s.lowered), (100, None));
        assert_eq!(s.lowered_line(), None);
        assert_eq!(sessions(&c, 4, None).max_sessions, 100);
    }

    #[test]
    fn a_small_limit_lowers_the_sessions_and_says_so() {
        let c = config(100);
        let s = sessions(&c, 4, Some(120));
        assert_eq!(s.max_sessions, 50);
        assert_eq!(
            s.lowered,
            Some(Lowered {
                limit: 120,
                wanted: 100
            })
        );
        assert_eq!(
            s.lowered_line().as_deref(),
            Some("open-files limit 120 allows 50 sessions: max_sessions 100 lowered")
        );
        assert_eq!(sessions(&c, 4, Some(3)).max_sessions, 1, "never zero");
    }

    #[test]
    fn the_memory_bound_counts_the_sessions_that_run() {
        let c = config(1024);
        let s = sessions(&c, 4, Some(20_000));
        assert_eq!(
            s.memory_line(&c, 490),
            "memory bound: 32 MiB of buffers (rings of 16 KiB to 256 KiB; at most 64 kernel \
             pipes of 256 KiB) + 490 KiB of session state (1024 sessions)"
        );
        let lowered = sessions(&c, 4, Some(1044));
        assert!(lowered.memory_line(&c, 490).ends_with("(512 sessions)"));
        assert_eq!(lowered.pipes, 0, "no descriptor left for a kernel pipe");
    }

    #[test]
    fn kernel_pipes_take_only_the_descriptors_sessions_leave() {
        let c = config(100);
        // 220 = 4 open + 16 spare + 200 for the sessions: none left for kernel pipes.
        assert_eq!(sessions(&c, 4, Some(220)).pipes, 0);
        assert_eq!(sessions(&c, 4, Some(230)).pipes, 5);
        let text = "splice = \"off\"\n[[forward]]\nname = \"f\"\n\
                    listen = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:9\"\n";
        let off = parse(text, Path::new("t.toml")).expect("valid");
        assert_eq!(pipes_wanted(&off), 0);
        assert!(sessions(&off, 4, None)
            .memory_line(&off, 490)
            .contains("(rings of 16 KiB to 256 KiB; no splice)"));
    }

    #[test]
    fn tls_tunnels_are_in_the_memory_bound_and_plain_ones_are_not() {
        use crate::config::{Mode, Relay, TunnelTls};
        let mut c = config(100);
        c.listeners[0].mode = Mode::Relay(Relay {
            max_idle_tunnels: 4,
            max_handshakes: 8,
            ..Relay::default()
        });
        let s = sessions(&c, 4, None);
        // 100 sessions, no public service, 8 handshakes: 108 tunnels.
        let tls = s.memory_line(&c, 0);
        assert!(
            tls.ends_with(" + TLS state of up to 108 tunnels (918 KiB idle, up to 11.0 MiB while their sockets are full)"),
            "{tls}"
        );
        if let Mode::Relay(r) = &mut c.listeners[0].mode {
            r.tunnel.tls = TunnelTls::Off;
        }
        let plain = s.memory_line(&c, 0);
        assert!(!plain.contains("TLS"), "{plain}");
    }
}
