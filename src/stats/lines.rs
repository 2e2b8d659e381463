//! One-line renderings of the stats model: the `ss`-like session list, the SIGUSR1
//! snapshot, and each session's close record (a human line and the same facts as
//! key-value fields, one log record for both formats).

use std::fmt::Write;

use log::kv::Value;
use log::{Level, Record};

use super::{format_duration, CloseRecord, ListenerStats, ProcessStats, SessionView};
use crate::core::session::Phase;
use crate::logging::CLOSE_TARGET;

/// Appends one line per live session:
/// `id=7 listener=web client=127.0.0.1:5000 upstream=127.0.0.1:80 phase=relaying
/// age=12.3s idle=1000ms to_upstream=123 to_client=456` (`upstream=-` when there is none).
pub fn render_sessions<'a>(out: &mut String, sessions: impl IntoIterator<Item = SessionView<'a>>) {
    for s in sessions {
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "id={} listener={} client={} upstream=",
            s.id, s.listener, s.client
        );
        match s.upstream {
            Some(a) => {
                let _ = write!(out, "{a}");
            }
            None => out.push('-'),
        }
        let _ = writeln!(
            out,
            " phase={} age={} idle={} to_upstream={} to_client={}",
            s.phase.as_str(),
            format_duration(s.age),
            format_duration(s.idle),
            s.to_upstream,
            s.to_client
        );
    }
}

/// The SIGUSR1 snapshot, one line without a newline:
/// `stats: uptime=3h05m sessions=12 (connecting=1 relaying=10 half_closed=1 resetting=0)
/// draining=0 waiting=0 accepted=1234 closed=1222 to_upstream=.. to_client=..
/// buffers=3/2048 timers=14 listeners=web:10,nat:2` (live sessions per listener;
/// `listeners=-` when there is none).
pub fn snapshot_line(p: &ProcessStats, listeners: &[ListenerStats<'_>]) -> String {
    let mut phases = [0u64; Phase::ALL.len()];
    let (mut draining, mut waiting, mut accepted, mut closed) = (0u64, 0u64, 0u64, 0u64);
    let (mut to_upstream, mut to_client) = (0u64, 0u64);
    for l in listeners {
        for (sum, n) in phases.iter_mut().zip(l.live.sessions) {
            *sum = sum.saturating_add(n);
        }
        draining = draining.saturating_add(l.live.draining);
        waiting = waiting.saturating_add(l.live.waiting);
        accepted = accepted.saturating_add(l.counters.accepted);
        closed = closed.saturating_add(l.counters.closed_total());
        let (up, down) = l.bytes();
        to_upstream = to_upstream.saturating_add(up);
        to_client = to_client.saturating_add(down);
    }
    let total = phases.iter().fold(0u64, |a, &n| a.saturating_add(n));
    let mut line = String::with_capacity(256);
    let _ = write!(
        line,
        "stats: uptime={} sessions={total} (",
        format_duration(p.uptime)
    );
    for (i, ph) in Phase::ALL.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let _ = write!(line, "{}={}", ph.as_str(), phases[ph.index()]);
    }
    let _ = write!(
        line,
        ") draining={draining} waiting={waiting} accepted={accepted} closed={closed} \
         to_upstream={to_upstream} to_client={to_client} buffers={} pipes={} pool={}/{} \
         timers={} listeners=",
        p.buffers_lent, p.pipes_lent, p.pool_lent, p.pool_budget, p.timers_armed
    );
    if listeners.is_empty() {
        line.push('-');
    }
    for (i, l) in listeners.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let _ = write!(line, "{}:{}", l.name, l.live.total());
    }
    line
}

/// The human close line, without a newline: `close id=N listener=NAME client=ADDR
/// upstream=ADDR|- [dest=HOST:PORT] to_upstream=N to_client=N duration=D reason=R`
/// (`dest` for the clients of `connect` and `socks` listeners that named one).
pub fn close_line(r: &CloseRecord<'_>) -> String {
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "close id={} listener={} client={} upstream=",
        r.id, r.listener, r.client
    );
    match r.upstream {
        Some(a) => {
            let _ = write!(line, "{a}");
        }
        None => line.push('-'),
    }
    if let Some(dest) = r.dest {
        let _ = write!(line, " dest={dest}");
    }
    let _ = write!(
        line,
        " to_upstream={} to_client={} duration={} reason={}",
        r.to_upstream,
        r.to_client,
        format_duration(r.duration),
        r.reason
    );
    line
}

impl CloseRecord<'_> {
    /// The close as one log record at `Info` under [`CLOSE_TARGET`]: the human line as its
    /// message, the same facts as key-value fields (`event="close"`, `id`, `listener`,
    /// `client`, `upstream` or null, `dest` or null, `to_upstream`, `to_client`, `duration_ms`, `reason`,
    /// `read_pauses`), which is what a JSON log writes. Handed to `sink`: the process's
    /// logger is `|r| log::logger().log(r)`.
    pub fn emit(&self, sink: impl FnOnce(&Record<'_>)) {
        let line = close_line(self);
        let client = self.client.to_string();
        let upstream = self.upstream.map(|a| a.to_string());
        let millis = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        let fields: [(&str, Value<'_>); 11] = [
            ("event", Value::from("close")),
            ("id", Value::from(self.id)),
            ("listener", Value::from(self.listener)),
            ("client", Value::from(client.as_str())),
            (
                "upstream",
                upstream.as_deref().map_or_else(Value::null, Value::from),
            ),
            ("dest", self.dest.map_or_else(Value::null, Value::from)),
            ("to_upstream", Value::from(self.to_upstream)),
            ("to_client", Value::from(self.to_client)),
            ("duration_ms", Value::from(millis)),
            ("reason", Value::from(self.reason.as_str())),
            ("read_pauses", Value::from(self.read_pauses)),
        ];
        sink(
            &Record::builder()
                .level(Level::Info)
                .target(CLOSE_TARGET)
                .args(format_args!("{line}"))
                .key_values(&fields)
                .build(),
        );
    }
}
