//! The socket options of every connection a listener holds (clients, upstreams, tunnels):
//! TCP keepalive and TCP_USER_TIMEOUT, their parsers and how they are written back.
//!
//! A NAT gateway or a firewall forgets an idle mapping after minutes; a peer behind it
//! that dies says nothing. Keepalive probes (default after 60 s idle, every 15 s, 4
//! unanswered) find it in about two minutes instead of the kernel's two hours, and
//! TCP_USER_TIMEOUT (default: the same two minutes) bounds how long sent bytes may stay
//! unacknowledged, which keepalive alone does not.

use std::time::Duration;

use super::parse::{parse_duration, render_duration};
use super::ConfigError;

/// Longest keepalive idle time and interval the kernel takes (`TCP_KEEPIDLE` and
/// `TCP_KEEPINTVL` are at most 32767 s).
pub const MAX_PROBE_TIME: Duration = Duration::from_secs(32_767);
/// Most unanswered probes the kernel takes (`TCP_KEEPCNT`).
pub const MAX_PROBES: u32 = 127;

/// TCP keepalive: off, or probes after `idle` without traffic, every `interval`, the
/// connection ending after `count` unanswered ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// No probes.
    Off,
    /// Probes.
    Probes {
        /// Time without traffic before the first probe.
        idle: Duration,
        /// Time between probes.
        interval: Duration,
        /// Unanswered probes that end the connection.
        count: u32,
    },
}

/// TCP_USER_TIMEOUT: derived from keepalive, off, or given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserTimeout {
    /// idle + interval × count (off when keepalive is off).
    #[default]
    Derived,
    /// Not set: the kernel's retransmission limits apply.
    Off,
    /// Sent bytes unacknowledged for this long end the connection.
    After(Duration),
}

/// The socket options of a listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// TCP keepalive probes.
    pub keepalive: Keepalive,
    /// TCP_USER_TIMEOUT.
    pub user_timeout: UserTimeout,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            keepalive: Keepalive::Probes {
                idle: Duration::from_secs(60),
                interval: Duration::from_secs(15),
                count: 4,
            },
            user_timeout: UserTimeout::Derived,
        }
    }
}

impl SocketOptions {
    /// The keepalive probes to set: `(idle, interval, count)`, `None` when off.
    pub fn probes(&self) -> Option<(Duration, Duration, u32)> {
        match self.keepalive {
            Keepalive::Off => None,
            Keepalive::Probes {
                idle,
                interval,
                count,
            } => Some((idle, interval, count)),
        }
    }

    /// The TCP_USER_TIMEOUT to set, if any.
    pub fn user_timeout(&self) -> Option<Duration> {
        match (self.user_timeout, self.keepalive) {
            (UserTimeout::After(d), _) => Some(d),
            (UserTimeout::Off, _) | (UserTimeout::Derived, Keepalive::Off) => None,
            (
                UserTimeout::Derived,
                Keepalive::Probes {
                    idle,
                    interval,
                    count,
                },
            ) => Some(idle + interval * count),
        }
    }
}

/// `IDLE:INTERVAL:COUNT` (e.g. `60s:15s:4`) or `off`.
pub fn parse_keepalive(flag: &str, text: &str) -> Result<Keepalive, ConfigError> {
    let t = text.trim();
    if t == "off" {
        return Ok(Keepalive::Off);
    }
    let bad = |why: &str| ConfigError {
        flag: flag.to_string(),
        value: text.to_string(),
        problem: why.to_string(),
    };
    let parts: Vec<&str> = t.split(':').collect();
    let [idle, interval, count] = parts.as_slice() else {
        return Err(bad("expected IDLE:INTERVAL:COUNT, e.g. 60s:15s:4, or off"));
    };
    let time = |what: &str, part: &str| -> Result<Duration, ConfigError> {
        let d =
            parse_duration(flag, part).map_err(|e| bad(&format!("the {what} {}", e.problem)))?;
        if d < Duration::from_secs(1) {
            return Err(bad(&format!("the {what} must be at least 1s")));
        }
        if d > MAX_PROBE_TIME || d.subsec_nanos() != 0 {
            return Err(bad(&format!(
                "the {what} must be whole seconds, at most {}s",
                MAX_PROBE_TIME.as_secs()
            )));
        }
        Ok(d)
    };
    let (idle, interval) = (time("idle time", idle)?, time("interval", interval)?);
    let count = match count.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_PROBES).contains(&n) => n,
        _ => {
            return Err(bad(&format!(
                "the count must be a whole number from 1 to {MAX_PROBES}"
            )))
        }
    };
    Ok(Keepalive::Probes {
        idle,
        interval,
        count,
    })
}

/// The text [`parse_keepalive`] reads back.
pub fn render_keepalive(k: Keepalive) -> String {
    match k {
        Keepalive::Off => "off".into(),
        Keepalive::Probes {
            idle,
            interval,
            count,
        } => format!(
            "{}:{}:{count}",
            render_duration(idle),
            render_duration(interval)
        ),
    }
}

/// A duration or `off`.
pub fn parse_user_timeout(flag: &str, text: &str) -> Result<UserTimeout, ConfigError> {
    match text.trim() {
        "off" => Ok(UserTimeout::Off),
        t => parse_duration(flag, t).map(UserTimeout::After),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_forms_read_and_write_back() {
        let k = parse_keepalive("--tcp-keepalive", "60s:15s:4").expect("valid");
        assert_eq!(render_keepalive(k), "1m:15s:4");
        assert_eq!(
            parse_keepalive("--tcp-keepalive", &render_keepalive(k)),
            Ok(k)
        );
        assert_eq!(parse_keepalive("x", " off "), Ok(Keepalive::Off));
        let o = SocketOptions::default();
        assert_eq!(
            o.user_timeout(),
            Some(Duration::from_secs(120)),
            "60 + 15 x 4"
        );
        let off = SocketOptions {
            keepalive: Keepalive::Off,
            user_timeout: UserTimeout::Derived,
        };
        assert_eq!(off.user_timeout(), None);
    }

    #[test]
    fn each_bad_part_is_named() {
        for (text, says) in [
            ("60s:15s", "expected IDLE:INTERVAL:COUNT"),
            ("60s:0s:4", "the interval must be greater than zero"),
            ("500ms:15s:4", "the idle time must be at least 1s"),
            ("1500ms:15s:4", "whole seconds"),
            ("60x:15s:4", "the idle time unknown unit"),
            (
                "60s:15s:0",
                "the count must be a whole number from 1 to 127",
            ),
            ("60s:15s:128", "from 1 to 127"),
        ] {
            let e = parse_keepalive("--tcp-keepalive", text).expect_err(text);
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        assert!(parse_user_timeout("--tcp-user-timeout", "2x").is_err());
        assert_eq!(parse_user_timeout("f", "off"), Ok(UserTimeout::Off));
    }
}
