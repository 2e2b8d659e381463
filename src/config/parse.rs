//! The parsers of option values: durations, sizes, counts, rates, words, addresses and
//! secret files, each with a one-line error naming the option and the value. Both front
//! ends (flags and config files) read every value through these.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::{ConfigError, LogFormat, TunnelTls, MAX_DURATION};
use crate::core::handover::ResetPolicy;
use crate::core::pool::Splice;
use crate::core::upstream::{Balance, HealthCheck};
use crate::proto::auth::Secret;

fn error(flag: &str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag: flag.to_string(),
        value: value.to_string(),
        problem: problem.into(),
    }
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

/// A value written as one of a few words.
pub trait Word: Copy + PartialEq + 'static {
    /// Every word and its value, in the order help texts list them.
    const WORDS: &'static [(&'static str, Self)];

    /// The word for this value.
    fn word(self) -> &'static str {
        Self::WORDS
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(w, _)| w)
    }
}

impl Word for ResetPolicy {
    const WORDS: &'static [(&'static str, Self)] =
        &[("mirror", ResetPolicy::Mirror), ("fin", ResetPolicy::Fin)];
}

impl Word for Splice {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("auto", Splice::Auto),
        ("always", Splice::Always),
        ("off", Splice::Off),
    ];
}

impl Word for Balance {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("failover", Balance::Failover),
        ("round-robin", Balance::RoundRobin),
        ("least-sessions", Balance::LeastSessions),
        ("random-two", Balance::RandomTwo),
        ("source-hash", Balance::SourceHash),
    ];
}

impl Word for HealthCheck {
    const WORDS: &'static [(&'static str, Self)] =
        &[("off", HealthCheck::Off), ("tcp", HealthCheck::Tcp)];
}

impl Word for TunnelTls {
    const WORDS: &'static [(&'static str, Self)] =
        &[("on", TunnelTls::On), ("off", TunnelTls::Off)];
}

impl Word for LogFormat {
    const WORDS: &'static [(&'static str, Self)] =
        &[("human", LogFormat::Human), ("json", LogFormat::Json)];
}

/// Parses one of `W`'s words: `expected 'mirror' or 'fin'` when it is none of them.
pub fn parse_word<W: Word>(flag: &str, text: &str) -> Result<W, ConfigError> {
    let t = text.trim();
    if let Some((_, value)) = W::WORDS.iter().find(|(w, _)| *w == t) {
        return Ok(*value);
    }
    let quoted: Vec<String> = W::WORDS.iter().map(|(w, _)| format!("'{w}'")).collect();
    let listed = match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    };
    Err(error(flag, text, format!("expected {listed}")))
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

/// A duration in its largest exact unit: `500ms`, `30s`, `5m`, `1h`, `2d` (what
/// [`parse_duration`] reads back to the same value).
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

/// A size in its largest exact unit: `16KiB`, `32MiB`, `1000B` (what [`parse_size`]
/// reads back to the same value).
pub fn render_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// A TOML basic string, quotes included.
pub fn quote(text: &str) -> String {
    use std::fmt::Write as _;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_BUFFER;

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
    fn words_are_one_of_a_list() {
        assert_eq!(
            parse_word::<ResetPolicy>("--reset-policy", "fin"),
            Ok(ResetPolicy::Fin)
        );
        let e = parse_word::<ResetPolicy>("--reset-policy", "maybe").expect_err("bad");
        assert_eq!(e.problem, "expected 'mirror' or 'fin'");
        assert_eq!(
            parse_word::<LogFormat>("log_format", " json "),
            Ok(LogFormat::Json)
        );
        assert_eq!(LogFormat::Human.word(), "human");
        assert_eq!(ResetPolicy::Fin.word(), "fin");
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
