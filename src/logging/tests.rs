//! The logger end to end: level filter, bucket, formats and a sink that records lines.

use super::*;
use std::time::{Duration, UNIX_EPOCH};

/// A sink that keeps the lines, or fails every write.
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    fail: bool,
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("capture lock").clone()
    }
}

impl Sink for Capture {
    fn write_line(&self, line: &str) -> io::Result<()> {
        if self.fail {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.lines
            .lock()
            .expect("capture lock")
            .push(line.to_string());
        Ok(())
    }
}

fn logger(
    format: LogFormat,
    rate: u32,
    sink: &Capture,
    t0: Instant,
) -> (Logger<Capture>, LogHandle) {
    let dropped = Arc::new(AtomicU64::new(0));
    let logger = Logger::new(
        LevelFilter::Info,
        format,
        rate,
        sink.clone(),
        t0,
        dropped.clone(),
    );
    (logger, LogHandle { dropped })
}

fn log_n(logger: &Logger<Capture>, now: Instant, level: Level, n: usize) {
    for i in 0..n {
        logger.log_at(
            &Record::builder()
                .level(level)
                .target("tcpbridge::server")
                .args(format_args!("line {i}"))
                .build(),
            now,
        );
    }
}

/// A line without its leading timestamp (the wall clock is not virtual).
fn untimed(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, rest)| rest)
}

#[test]
fn human_lines_keep_their_layout() {
    let time = UNIX_EPOCH + Duration::from_millis(1_795_256_130_123);
    let cases = [
        (
            Level::Info,
            "2026-11-21T10:15:30.123Z INFO  [tcpbridge::server] up\n",
        ),
        (
            Level::Warn,
            "2026-11-21T10:15:30.123Z WARN  [tcpbridge::server] up\n",
        ),
        (
            Level::Error,
            "2026-11-21T10:15:30.123Z ERROR [tcpbridge::server] up\n",
        ),
        (
            Level::Debug,
            "2026-11-21T10:15:30.123Z DEBUG [tcpbridge::server] up\n",
        ),
    ];
    for (level, expected) in cases {
        let mut line = String::new();
        let record = Record::builder()
            .level(level)
            .target("tcpbridge::server")
            .args(format_args!("up"))
            .build();
        push_human_line(&mut line, &record, time);
        assert_eq!(line, expected);
    }
    let mut line = String::new();
    let record = Record::builder()
        .target("")
        .module_path(Some("tcpbridge::net"))
        .args(format_args!("x"))
        .build();
    push_human_line(&mut line, &record, time);
    assert!(line.ends_with(" INFO  [tcpbridge::net] x\n"), "{line}");
}

#[test]
fn a_storm_is_cut_at_the_burst_and_told_once_lines_pass_again() {
    let t0 = Instant::now();
    let sink = Capture::default();
    let (logger, handle) = logger(LogFormat::Human, 1, &sink, t0);
    log_n(&logger, t0, Level::Error, 25);
    assert_eq!(sink.lines().len(), 10);
    assert_eq!(handle.dropped(), 15);
    log_n(&logger, t0 + Duration::from_secs(1), Level::Info, 2);
    let lines = sink.lines();
    assert_eq!(lines.len(), 12);
    assert_eq!(
        untimed(&lines[10]),
        "WARN  [tcpbridge::logging] log rate limit: 15 lines dropped\n"
    );
    assert_eq!(untimed(&lines[11]), "INFO  [tcpbridge::server] line 0\n");
    assert_eq!(handle.dropped(), 16);
}

#[test]
fn the_summary_is_json_in_json_format() {
    let t0 = Instant::now();
    let sink = Capture::default();
    let (logger, handle) = logger(LogFormat::Json, 1, &sink, t0);
    log_n(&logger, t0, Level::Info, 12);
    log_n(&logger, t0 + Duration::from_secs(2), Level::Info, 1);
    let lines = sink.lines();
    assert_eq!(lines.len(), 12);
    assert!(lines[10].starts_with("{\"time\":\""), "{}", lines[10]);
    assert!(
        lines[10].ends_with(concat!(
            r#""level":"WARN","target":"tcpbridge::logging","#,
            r#""msg":"log rate limit: 2 lines dropped"}"#,
            "\n"
        )),
        "{}",
        lines[10]
    );
    assert!(
        lines[11].ends_with("\"msg\":\"line 0\"}\n"),
        "{}",
        lines[11]
    );
    assert_eq!(handle.dropped(), 2);
}

#[test]
fn no_limit_at_rate_zero() {
    let t0 = Instant::now();
    let sink = Capture::default();
    let (logger, handle) = logger(LogFormat::Human, 0, &sink, t0);
    assert!(logger.bucket.is_none());
    log_n(&logger, t0, Level::Error, 5000);
    assert_eq!(sink.lines().len(), 5000);
    assert_eq!(handle.dropped(), 0);
}

#[test]
fn records_above_the_level_cost_nothing() {
    let t0 = Instant::now();
    let sink = Capture::default();
    let (logger, handle) = logger(LogFormat::Human, 1, &sink, t0);
    for _ in 0..100 {
        logger.log(
            &Record::builder()
                .level(Level::Debug)
                .args(format_args!("noise"))
                .build(),
        );
    }
    assert!(sink.lines().is_empty());
    assert_eq!(handle.dropped(), 0);
    log_n(&logger, t0, Level::Info, 10);
    assert_eq!(sink.lines().len(), 10);
}

#[test]
fn failed_writes_are_counted_not_fatal() {
    let t0 = Instant::now();
    let sink = Capture {
        fail: true,
        ..Capture::default()
    };
    let (logger, handle) = logger(LogFormat::Json, 0, &sink, t0);
    log_n(&logger, t0, Level::Error, 3);
    assert_eq!(handle.dropped(), 3);
}

#[test]
fn a_poisoned_bucket_still_logs() {
    let t0 = Instant::now();
    let sink = Capture::default();
    let (logger, _handle) = logger(LogFormat::Human, 5, &sink, t0);
    let bucket = logger.bucket.as_ref().expect("limited");
    let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _guard = bucket.lock();
        panic!("poison the bucket");
    }));
    assert!(poisoned.is_err() && bucket.is_poisoned());
    log_n(&logger, t0, Level::Info, 3);
    assert_eq!(sink.lines().len(), 3);
}

#[test]
fn a_close_record_is_its_line_or_its_fields() {
    use log::kv::Value;
    let t0 = Instant::now();
    let fields: [(&str, Value<'_>); 2] =
        [("event", Value::from("close")), ("id", Value::from(1u64))];
    let record = Record::builder()
        .level(Level::Info)
        .target(CLOSE_TARGET)
        .args(format_args!("close id=1"))
        .key_values(&fields)
        .build();
    let json = Capture::default();
    let (json_logger, _handle) = logger(LogFormat::Json, 100, &json, t0);
    json_logger.log_at(&record, t0);
    let lines = json.lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("{\"time\":\""));
    assert!(lines[0].ends_with("Z\",\"level\":\"INFO\",\"event\":\"close\",\"id\":1}\n"));
    let human = Capture::default();
    let (human_logger, _handle) = logger(LogFormat::Human, 100, &human, t0);
    human_logger.log_at(&record, t0);
    assert!(human.lines()[0].ends_with(" INFO  [tcpbridge::close] close id=1\n"));
}
