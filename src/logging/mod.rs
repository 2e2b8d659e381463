//! Logging: human lines or JSON objects on stderr, rate-limited.
//!
//! [`init`] installs one logger for the process. `--log-format human` writes the lines
//! tcpbridge always wrote (`2026-11-21T10:15:30.123Z INFO  [tcpbridge::server] ...`);
//! `--log-format json` writes one JSON object per line. A record with key-value fields
//! (an event: a session's close, target [`CLOSE_TARGET`]) is written by its message in
//! the human format and by its fields in JSON, so one record serves both.
//!
//! Under an error storm a gateway's small flash must not fill with log lines, so both
//! formats pass a token bucket of `--log-rate` lines per second (ten seconds' worth may
//! come in a burst; 0: no limit). Dropped lines are counted ([`LogHandle::dropped`]) and
//! told in one warning, `log rate limit: N lines dropped`, once lines pass again, at most
//! once a second. Errors are limited too: a storm is a storm.
//!
//! Each line is built whole, then written to stderr with one locked write. A failed write
//! (a full disk, a gone journal) is counted as a dropped line and otherwise ignored:
//! logging never stops the proxy.
//!
//! Like `net.rs`, this is operating-system-facing code, not the pure core: it reads the
//! monotonic clock (for the bucket, only when a limit is set) and the wall clock (for
//! the timestamp) itself. The bucket's decisions live in `bucket.rs`, driven by the
//! caller's instant, and are tested with virtual time.

mod bucket;
mod json;
mod utc;

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use log::{Level, LevelFilter, Log, Metadata, Record, SetLoggerError};

use crate::config::LogFormat;
use bucket::{Bucket, Take};
pub use json::push_json_string;

/// The target of a session's close record: its message is the human close line, its
/// key-value fields (`event="close"`, `id`, ...) are what JSON logs write.
pub const CLOSE_TARGET: &str = "tcpbridge::close";

/// The target of the logger's own summary of dropped lines.
const SUMMARY_TARGET: &str = "tcpbridge::logging";

/// Installs the process's logger: records up to `level`, written in `format`, at most
/// `rate` lines per second (0: no limit). Fails if a logger is already installed.
pub fn init(level: LevelFilter, format: LogFormat, rate: u32) -> Result<LogHandle, SetLoggerError> {
    let dropped = Arc::new(AtomicU64::new(0));
    let logger = Logger::new(level, format, rate, Stderr, Instant::now(), dropped.clone());
    log::set_boxed_logger(Box::new(logger))?;
    log::set_max_level(level);
    Ok(LogHandle { dropped })
}

/// A view of the installed logger's counters.
#[derive(Debug, Clone)]
pub struct LogHandle {
    dropped: Arc<AtomicU64>,
}

impl LogHandle {
    /// Lines dropped so far, by the rate limit or by failed writes
    /// (`tcpbridge_log_lines_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where finished lines go.
trait Sink: Send + Sync + 'static {
    /// Writes one whole line (newline included).
    fn write_line(&self, line: &str) -> io::Result<()>;
}

/// Standard error, locked for the whole line.
struct Stderr;

impl Sink for Stderr {
    fn write_line(&self, line: &str) -> io::Result<()> {
        io::stderr().lock().write_all(line.as_bytes())
    }
}

/// The installed logger: a level filter, the bucket, a format and a sink.
struct Logger<S> {
    level: LevelFilter,
    format: LogFormat,
    /// `None` when there is no limit.
    bucket: Option<Mutex<Bucket>>,
    dropped: Arc<AtomicU64>,
    sink: S,
}

impl<S: Sink> Logger<S> {
    fn new(
        level: LevelFilter,
        format: LogFormat,
        rate: u32,
        sink: S,
        now: Instant,
        dropped: Arc<AtomicU64>,
    ) -> Logger<S> {
        Logger {
            level,
            format,
            bucket: (rate > 0).then(|| Mutex::new(Bucket::new(rate, now))),
            dropped,
            sink,
        }
    }

    /// Logs `record` (already known to be enabled) as of `now`.
    fn log_at(&self, record: &Record<'_>, now: Instant) {
        let take = match &self.bucket {
            None => Take::Pass,
            // The lock is released before formatting: a record's arguments may log.
            Some(bucket) => bucket
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(now),
        };
        match take {
            Take::Pass => self.write(record),
            Take::PassAfterSummary(lines) => {
                self.write(
                    &Record::builder()
                        .level(Level::Warn)
                        .target(SUMMARY_TARGET)
                        .args(format_args!("log rate limit: {lines} lines dropped"))
                        .build(),
                );
                self.write(record);
            }
            Take::Drop => self.count_dropped(),
        }
    }

    /// Formats `record` and writes it in one piece.
    fn write(&self, record: &Record<'_>) {
        let mut line = String::with_capacity(160);
        let time = SystemTime::now();
        match self.format {
            LogFormat::Human => push_human_line(&mut line, record, time),
            LogFormat::Json => json::push_json_line(&mut line, record, time),
        }
        if self.sink.write_line(&line).is_err() {
            self.count_dropped();
        }
    }

    fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S: Sink> Log for Logger<S> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match self.bucket {
            None => self.write(record),
            Some(_) => self.log_at(record, Instant::now()),
        }
    }

    fn flush(&self) {
        // Every line is written whole and unbuffered.
    }
}

/// Appends `record` as a human line, `TIME LEVEL [target] message` (level padded to five
/// characters), newline included.
fn push_human_line(out: &mut String, record: &Record<'_>, time: SystemTime) {
    utc::push_timestamp(out, time);
    let _ = writeln!(
        out,
        " {:<5} [{}] {}",
        record.level().as_str(),
        target_of(record),
        record.args()
    );
}

/// A record's target, or its module when the target is empty.
fn target_of<'a>(record: &'a Record<'_>) -> &'a str {
    match record.target() {
        "" => record.module_path().unwrap_or_default(),
        target => target,
    }
}

#[cfg(test)]
mod tests;
