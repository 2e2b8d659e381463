//! Configuration: the plain structs the server runs from, and the parsers for durations,
//! sizes and addresses with one-line errors that name the flag and the value.
//!
//! A [`Config`] is process-wide settings ([`Global`]) plus one or more named
//! [`Listener`]s, each a mode with its own options. No clap types here: `main.rs` turns
//! a command line into a one-listener `Config` through these parsers; `file.rs` turns a
//! TOML file into one with any number of listeners.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::core::handover::ResetPolicy;
use crate::core::session::Policy;
use crate::core::tunnel::TunnelPolicy;
use crate::proto::auth::Secret;
use crate::proto::tunnel::valid_service_name;

pub mod file;

/// Largest accepted duration (7 days).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest accepted ring buffer (16 MiB).
pub const MAX_BUFFER: usize = 16 << 20;
/// Largest accepted `--max-sessions`.
pub const MAX_SESSIONS: usize = 1_000_000;
/// How long owed bytes may take to be acknowledged before an RST is sent anyway.
pub const RESET_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Default values as written on the command line (and in config files), one place for
/// both: each goes through the same parser as a value the user gives.
pub mod defaults {
    /// `buffer_size`.
    pub const BUFFER_SIZE: &str = "16KiB";
    /// `max_sessions` (process-wide).
    pub const MAX_SESSIONS: &str = "1024";
    /// `drain_timeout`.
    pub const DRAIN_TIMEOUT: &str = "10s";
    /// `log_format`.
    pub const LOG_FORMAT: &str = "human";
    /// `log_rate`.
    pub const LOG_RATE: &str = "100";
    /// `connect_timeout`.
    pub const CONNECT_TIMEOUT: &str = "5s";
    /// `idle_timeout`.
    pub const IDLE_TIMEOUT: &str = "5m";
    /// `half_close_timeout`.
    pub const HALF_CLOSE_TIMEOUT: &str = "60s";
    /// `reset_policy`.
    pub const RESET_POLICY: &str = "mirror";
    /// `handshake_timeout`.
    pub const HANDSHAKE_TIMEOUT: &str = "5s";
    /// `heartbeat_interval`.
    pub const HEARTBEAT_INTERVAL: &str = "20s";
    /// `heartbeat_timeout`.
    pub const HEARTBEAT_TIMEOUT: &str = "60s";
    /// `pair_timeout` (relay).
    pub const PAIR_TIMEOUT: &str = "10s";
    /// `max_waiting` (relay).
    pub const MAX_WAITING: &str = "64";
    /// `max_idle_tunnels` (relay).
    pub const MAX_IDLE_TUNNELS: &str = "64";
    /// `max_handshakes` (relay).
    pub const MAX_HANDSHAKES: &str = "64";
    /// `pool` (agent).
    pub const POOL: &str = "4";
    /// Largest `pool` (agent).
    pub const MAX_POOL: usize = 1024;
    /// `backoff_max` (agent).
    pub const BACKOFF_MAX: &str = "30s";
}

/// A usage error: which flag, which value, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag or field, e.g. `--idle-timeout`.
    pub flag: String,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value '{}' for {}: {}",
            self.value, self.flag, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

fn error(flag: &str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag: flag.to_string(),
        value: value.to_string(),
        problem: problem.into(),
    }
}

/// How closed sessions and other events are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    Human,
    /// One JSON object per line.
    Json,
}

/// Process-wide settings: shared by every listener, fixed for the life of the process
/// (a reload that changes them logs that a restart is needed).
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Capacity of one ring buffer in bytes.
    pub buffer_size: usize,
    /// Most sessions alive at once, over all listeners.
    pub max_sessions: usize,
    /// Most ring buffers lent at once.
    pub pool_buffers: usize,
    /// Bound on the graceful drain after SIGINT/SIGTERM.
    pub drain_timeout: Duration,
    /// Where the metrics endpoint listens, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log lines per second before lines are dropped (0: no limit).
    pub log_rate: u32,
}

impl Global {
    /// Worst-case bytes of ring buffers: the pool budget.
    pub fn buffer_bound(&self) -> usize {
        self.pool_buffers.saturating_mul(self.buffer_size)
    }
}

/// Where a configuration came from (a file can be reloaded on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A subcommand's flags: one listener.
    Flags,
    /// A TOML file.
    File(std::path::PathBuf),
}

/// One named listener: a mode, its addresses, and the options of its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique in the configuration; the `listener` label of metrics.
    pub name: String,
    /// Per-session timeouts and the reset policy.
    pub policy: Policy,
    /// Most sessions of this listener alive at once (within the global limit).
    pub max_sessions: Option<usize>,
    /// The mode and its settings.
    pub mode: Mode,
}

/// A named local address: a relay's public listener or an agent's local service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// 1-64 bytes of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Where it listens (relay) or where it is dialed (agent).
    pub addr: SocketAddr,
}

/// `forward`: listen, dial an upstream per client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Upstream addresses, tried in order when a connect fails.
    pub upstreams: Vec<SocketAddr>,
}

/// `relay`: the public side of NAT traversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Where agents connect.
    pub tunnel_listen: SocketAddr,
    /// Public listeners, one per service.
    pub public: Vec<Service>,
    /// The pre-shared secret.
    pub secret: Secret,
    /// The file it was read from (re-read on reload).
    pub secret_file: String,
    /// How long a public client waits for an idle tunnel.
    pub pair_timeout: Duration,
    /// Most clients waiting per service.
    pub max_waiting: usize,
    /// Most idle tunnels per service.
    pub max_idle_tunnels: usize,
    /// Most connections in the handshake at once.
    pub max_handshakes: usize,
    /// Handshake and heartbeat timeouts.
    pub tunnel: TunnelPolicy,
}

/// `agent`: the NAT side of NAT traversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The relay's tunnel address, `HOST:PORT`, resolved again before each reconnect.
    pub relay: String,
    /// Local services offered, dialed on pairing.
    pub services: Vec<Service>,
    /// The pre-shared secret.
    pub secret: Secret,
    /// The file it was read from (re-read on reload).
    pub secret_file: String,
    /// Idle tunnels kept per service.
    pub pool: usize,
    /// Exit when a tunnel is lost or cannot be opened (for supervisors).
    pub exit_on_disconnect: bool,
    /// Cap of the reconnect backoff.
    pub backoff_max: Duration,
    /// Handshake and heartbeat timeouts.
    pub tunnel: TunnelPolicy,
}

/// What the process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Port forwarding.
    Forward(Forward),
    /// NAT traversal, public side.
    Relay(Relay),
    /// NAT traversal, NAT side.
    Agent(Agent),
}

/// Everything a process runs from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process-wide settings.
    pub global: Global,
    /// The listeners, in the order given.
    pub listeners: Vec<Listener>,
    /// Flags or a file.
    pub source: Source,
}

impl Mode {
    /// The mode's word: `forward`, `relay` or `agent`.
    pub fn word(&self) -> &'static str {
        match self {
            Mode::Forward(_) => "forward",
            Mode::Relay(_) => "relay",
            Mode::Agent(_) => "agent",
        }
    }
}

/// Parses `NAME=HOST:PORT` (a relay's `--public`, an agent's `--service`).
pub fn parse_service(
    flag: &str,
    text: &str,
    allow_port_zero: bool,
) -> Result<Service, ConfigError> {
    let Some((name, addr)) = text.split_once('=') else {
        return Err(error(flag, text, "expected NAME=HOST:PORT"));
    };
    if !valid_service_name(name) {
        return Err(error(
            flag,
            text,
            "the name must be 1-64 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    let addr = parse_address(flag, addr, allow_port_zero)?
        .into_iter()
        .next()
        .ok_or_else(|| error(flag, text, "the name resolves to no address"))?;
    Ok(Service {
        name: name.to_string(),
        addr,
    })
}

/// Largest secret file accepted (a secret is at least 32 bytes; 64 hex digits is usual).
pub const MAX_SECRET_FILE: u64 = 4096;

/// Reads and checks a secret file: a regular file of at most [`MAX_SECRET_FILE`] bytes
/// (so `/dev/zero` or a FIFO cannot exhaust memory or hang a start or a reload). The error
/// names the flag and the file.
pub fn read_secret(flag: &str, path: &str) -> Result<Secret, ConfigError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| error(flag, path, format!("cannot read: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(error(flag, path, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(error(
            flag,
            path,
            format!("larger than {MAX_SECRET_FILE} bytes"),
        ));
    }
    Secret::from_file_contents(&bytes).map_err(|e| error(flag, path, e.to_string()))
}

/// Parses a duration with a unit: `500ms`, `30s`, `5m`, `2h`, `1d`. Must be > 0 and <= 7d.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(error(
            flag,
            text,
            "expected a number with a unit, e.g. 500ms, 30s, 5m",
        ));
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(error(flag, text, "missing unit (ms, s, m, h or d)")),
        _ => return Err(error(flag, text, "unknown unit (use ms, s, m, h or d)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| error(flag, text, "too large (max 7d)"))?;
    let millis = n
        .checked_mul(millis_per_unit)
        .ok_or_else(|| error(flag, text, "too large (max 7d)"))?;
    let d = Duration::from_millis(millis);
    if d.is_zero() {
        return Err(error(flag, text, "must be greater than zero"));
    }
    if d > MAX_DURATION {
        return Err(error(flag, text, "too large (max 7d)"));
    }
    Ok(d)
}

/// Parses a size: `4096`, `4096B`, `16KiB`, `1MiB`, within `1..=max`.
pub fn parse_size(flag: &str, text: &str, max: usize) -> Result<usize, ConfigError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(error(flag, text, "expected a size, e.g. 16KiB"));
    }
    let scale: usize = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(error(flag, text, "unknown unit (use B, KiB or MiB)")),
    };
    let bound = format!("must be between 1 B and {}", human_size(max));
    let n: usize = digits.parse().map_err(|_| error(flag, text, &bound))?;
    let size = n
        .checked_mul(scale)
        .ok_or_else(|| error(flag, text, &bound))?;
    if size == 0 || size > max {
        return Err(error(flag, text, bound));
    }
    Ok(size)
}

/// Parses a whole number within `1..=max`.
pub fn parse_count(flag: &str, text: &str, max: usize) -> Result<usize, ConfigError> {
    let bound = format!("must be a whole number from 1 to {max}");
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(error(flag, text, bound)),
    }
}

/// Parses `mirror` or `fin`.
pub fn parse_reset_policy(flag: &str, text: &str) -> Result<ResetPolicy, ConfigError> {
    match text.trim() {
        "mirror" => Ok(ResetPolicy::Mirror),
        "fin" => Ok(ResetPolicy::Fin),
        _ => Err(error(flag, text, "expected 'mirror' or 'fin'")),
    }
}

/// Parses `human` or `json`.
pub fn parse_log_format(flag: &str, text: &str) -> Result<LogFormat, ConfigError> {
    match text.trim() {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err(error(flag, text, "expected 'human' or 'json'")),
    }
}

/// Parses a rate (a whole number from 0, meaning no limit, to 1,000,000).
pub fn parse_rate(flag: &str, text: &str) -> Result<u32, ConfigError> {
    match text.trim().parse::<u32>() {
        Ok(n) if n <= 1_000_000 => Ok(n),
        _ => Err(error(
            flag,
            text,
            "must be a whole number from 0 (no limit) to 1000000",
        )),
    }
}

/// Parses `HOST:PORT` or `[V6]:PORT` and resolves it (once, at start-up: the event loop
/// never resolves). `allow_port_zero` is for listeners (`:0` asks for any free port).
pub fn parse_address(
    flag: &str,
    text: &str,
    allow_port_zero: bool,
) -> Result<Vec<SocketAddr>, ConfigError> {
    check_host_port(flag, text, allow_port_zero)?;
    let resolved: Vec<SocketAddr> = text
        .trim()
        .to_socket_addrs()
        .map_err(|e| error(flag, text, format!("cannot resolve: {e}")))?
        .collect();
    if resolved.is_empty() {
        return Err(error(flag, text, "the name resolves to no address"));
    }
    Ok(resolved)
}

/// Checks the form `HOST:PORT` or `[V6]:PORT` without resolving the host.
pub fn check_host_port(flag: &str, text: &str, allow_port_zero: bool) -> Result<(), ConfigError> {
    let t = text.trim();
    if t.starts_with('[') && !t.contains(']') {
        return Err(error(flag, text, "unterminated IPv6 bracket"));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(error(flag, text, "missing port (expected HOST:PORT)"));
    };
    if host.is_empty() {
        return Err(error(flag, text, "missing host (expected HOST:PORT)"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(error(
            flag,
            text,
            "IPv6 addresses need brackets: [::1]:PORT",
        ));
    }
    let lowest = if allow_port_zero { 0 } else { 1 };
    let port_ok = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let port: u32 = if port_ok {
        port.parse().unwrap_or(u32::MAX)
    } else {
        u32::MAX
    };
    if port < lowest || port > 65_535 {
        return Err(error(
            flag,
            text,
            format!("port out of range ({lowest}-65535)"),
        ));
    }
    Ok(())
}

/// `16 KiB`, `1 MiB`, `300 B`: sizes for humans.
pub fn human_size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        let d = |t| parse_duration("--t", t);
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(d("7d"), Ok(MAX_DURATION));
    }

    #[test]
    fn bad_durations_say_why() {
        let problem = |t| parse_duration("--idle-timeout", t).map_err(|e| e.problem);
        assert_eq!(
            problem("5x"),
            Err("unknown unit (use ms, s, m, h or d)".into())
        );
        assert_eq!(problem("30"), Err("missing unit (ms, s, m, h or d)".into()));
        assert_eq!(problem("0s"), Err("must be greater than zero".into()));
        assert!(problem("-5s").is_err());
        assert_eq!(problem("99999999999999s"), Err("too large (max 7d)".into()));
        assert_eq!(problem("8d"), Err("too large (max 7d)".into()));
        let e = parse_duration("--idle-timeout", "5x").expect_err("bad");
        assert_eq!(
            e.to_string(),
            "invalid value '5x' for --idle-timeout: unknown unit (use ms, s, m, h or d)"
        );
    }

    #[test]
    fn sizes_take_binary_units_and_bounds() {
        let s = |t| parse_size("--buffer-size", t, MAX_BUFFER);
        assert_eq!(s("1"), Ok(1));
        assert_eq!(s("16KiB"), Ok(16384));
        assert_eq!(s("1MiB"), Ok(1 << 20));
        assert_eq!(s("4096B"), Ok(4096));
        assert!(s("0").is_err());
        assert!(s("1GiB").is_err());
        assert!(s("16KB").is_err());
        assert!(s("KiB").is_err());
        assert!(s("99999999999999999999").is_err());
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(parse_count("--max-sessions", "10", 100), Ok(10));
        assert!(parse_count("--max-sessions", "0", 100).is_err());
        assert!(parse_count("--max-sessions", "101", 100).is_err());
        assert!(parse_count("--max-sessions", "x", 100).is_err());
    }

    #[test]
    fn addresses_are_checked_before_resolving() {
        let problem = |t, zero| parse_address("--listen", t, zero).map_err(|e| e.problem);
        assert_eq!(
            problem("1.2.3.4:99999", true),
            Err("port out of range (0-65535)".into())
        );
        assert_eq!(
            problem(":", true),
            Err("missing host (expected HOST:PORT)".into())
        );
        assert_eq!(
            problem("[::1:80", true),
            Err("unterminated IPv6 bracket".into())
        );
        assert_eq!(
            problem("host-without-port", false),
            Err("missing port (expected HOST:PORT)".into())
        );
        assert_eq!(
            problem("127.0.0.1:0", false),
            Err("port out of range (1-65535)".into())
        );
        assert_eq!(
            parse_address("--listen", "127.0.0.1:0", true),
            Ok(vec!["127.0.0.1:0".parse().expect("addr")])
        );
        assert_eq!(
            parse_address("--upstream", "[::1]:8080", false),
            Ok(vec!["[::1]:8080".parse().expect("addr")])
        );
    }

    #[test]
    fn reset_policy_words() {
        assert_eq!(
            parse_reset_policy("--reset-policy", "fin"),
            Ok(ResetPolicy::Fin)
        );
        assert!(parse_reset_policy("--reset-policy", "maybe").is_err());
    }

    #[test]
    fn services_are_name_equals_address() {
        let s = parse_service("--public", "ssh=127.0.0.1:0", true).expect("valid");
        assert_eq!(s.name, "ssh");
        assert!(parse_service("--public", "ssh", true).is_err());
        assert!(parse_service("--public", "a b=127.0.0.1:1", true).is_err());
        assert!(parse_service("--service", "ssh=127.0.0.1:0", false).is_err());
    }

    #[test]
    fn secret_files_must_be_small_regular_files() {
        let problem = |p| read_secret("--secret-file", p).map_err(|e| e.problem);
        assert_eq!(problem("/dev/zero"), Err("not a regular file".into()));
        assert_eq!(problem("/"), Err("not a regular file".into()));
        let dir = std::env::temp_dir().join(format!("tcpbridge-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'a'; 5000]).expect("write");
        let good = dir.join("good");
        std::fs::write(&good, b"0123456789abcdef0123456789abcdef\n").expect("write");
        let big_problem = problem(big.to_str().expect("utf-8"));
        let good_secret = read_secret("--secret-file", good.to_str().expect("utf-8"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(big_problem, Err("larger than 4096 bytes".into()));
        assert!(good_secret.is_ok());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(16384), "16 KiB");
        assert_eq!(human_size(3 << 20), "3 MiB");
        assert_eq!(human_size(1), "1 B");
    }
}
