//! How the process stands besides what its owners hold (draining, stopping, reloads),
//! and what it tells the world about it: the READY line on stdout (once), and state
//! changes to the service manager.

use std::io::{self, Write};
use std::time::Instant;

use log::warn;

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A signal, then every session finished or the drain timeout closed the rest.
    Drained,
    /// A second signal: exit at once.
    Forced,
    /// The agent lost its relay and was told to exit (`--exit-on-disconnect`).
    Disconnected,
}

/// How the process stands, besides what its owners hold.
#[derive(Debug)]
pub(super) struct Life {
    pub(super) drain_until: Option<Instant>,
    /// Whether the READY line has been printed.
    announced: bool,
    pub(super) stop: Option<Stopped>,
    pub(super) reloads: u64,
    pub(super) reload_failures: u64,
    pub(super) started: Instant,
}

impl Life {
    pub(super) fn new(now: Instant) -> Life {
        Life {
            drain_until: None,
            announced: false,
            stop: None,
            reloads: 0,
            reload_failures: 0,
            started: now,
        }
    }

    /// Whether the process is draining before it exits.
    pub(super) fn stopping(&self) -> bool {
        self.drain_until.is_some()
    }

    /// Prints the READY line (`fields` joined) once, on stdout, and tells systemd.
    pub(super) fn announce(&mut self, fields: &[String]) {
        if !self.announced {
            self.announced = true;
            let fields = fields.join(" ");
            print_line(&format!("READY {fields}"));
            notify(&format!("READY=1\nSTATUS=serving {fields}"));
        }
    }
}

/// Writes one line to stdout (READY, RELOADED...) and flushes it.
pub(super) fn print_line(line: &str) {
    let mut stdout = io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        warn!("cannot write to stdout: {line}");
    }
}

/// Tells the service manager (systemd) about a state change, when it is listening.
pub(super) fn notify(state: &str) {
    if let Err(e) = crate::os::systemd::notify(state) {
        log::debug!(
            "cannot notify the service manager: {}",
            crate::os::net::describe(&e)
        );
    }
}
