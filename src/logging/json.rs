//! JSON lines: one object per record, one line per object.
//!
//! A record is `{"time":..,"level":..,"target":..,"msg":..}`. A session's close record
//! (target [`CLOSE_TARGET`](super::CLOSE_TARGET)) whose message is already a flat JSON
//! object gets `time` and `level` spliced in front of its own fields instead, so a close
//! is one object with `"event":"close"` and its numbers as numbers.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use log::Record;

use super::utc::push_timestamp;
use super::{target_of, CLOSE_TARGET};

/// Appends `text` as a JSON string literal, quotes included: `"` and `\` are escaped,
/// control characters become `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`; everything else,
/// non-ASCII included, is copied as UTF-8.
pub fn push_json_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut copied = 0;
    for (i, byte) in text.bytes().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte escaped is ASCII, so `i` is on a character boundary.
        out.push_str(&text[copied..i]);
        if short.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(short);
        }
        copied = i + 1;
    }
    out.push_str(&text[copied..]);
    out.push('"');
}

/// Appends `record`, logged at `time`, as one JSON line (newline included).
pub(crate) fn push_json_line(out: &mut String, record: &Record<'_>, time: SystemTime) {
    out.push_str("{\"time\":\"");
    push_timestamp(out, time);
    out.push_str("\",\"level\":\"");
    out.push_str(record.level().as_str());
    out.push_str("\",");
    let msg = message(record);
    match close_fields(record, &msg) {
        Some(fields) => {
            if fields.trim_start().starts_with('}') {
                out.pop(); // an empty object: no fields after ours, no comma
            }
            out.push_str(fields);
        }
        None => {
            out.push_str("\"target\":");
            push_json_string(out, target_of(record));
            out.push_str(",\"msg\":");
            push_json_string(out, &msg);
            out.push('}');
        }
    }
    out.push('\n');
}

/// The message text, borrowed when it has no arguments.
fn message<'a>(record: &Record<'a>) -> Cow<'a, str> {
    match record.args().as_str() {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(record.args().to_string()),
    }
}

/// For a close record whose message is one JSON object on one line: its text after the
/// opening brace. Anything else (a human close line, a broken message) is wrapped as an
/// ordinary record, so every line stays one valid object.
fn close_fields<'m>(record: &Record<'_>, msg: &'m str) -> Option<&'m str> {
    if record.target() != CLOSE_TARGET || msg.bytes().any(|b| b < 0x20) {
        return None;
    }
    msg.strip_prefix('{').filter(|rest| rest.ends_with('}'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;
    use std::time::{Duration, UNIX_EPOCH};

    fn escaped(text: &str) -> String {
        let mut s = String::new();
        push_json_string(&mut s, text);
        s
    }

    fn line(level: Level, target: &str, args: std::fmt::Arguments<'_>) -> String {
        let time = UNIX_EPOCH + Duration::from_millis(1_795_256_130_123);
        let mut s = String::new();
        let record = Record::builder()
            .level(level)
            .target(target)
            .args(args)
            .build();
        push_json_line(&mut s, &record, time);
        s
    }

    #[test]
    fn escaping() {
        assert_eq!(escaped(""), r#""""#);
        assert_eq!(escaped("plain"), r#""plain""#);
        assert_eq!(escaped(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(escaped(r"C:\dir\"), r#""C:\\dir\\""#);
        assert_eq!(escaped("a\nb\r\tc"), r#""a\nb\r\tc""#);
        assert_eq!(
            escaped("\u{0}\u{1}\u{1f}\u{8}\u{c}"),
            r#""\u0000\u0001\u001f\b\f""#
        );
        assert_eq!(escaped("é→\u{7f}🦀"), "\"é→\u{7f}🦀\"");
        assert_eq!(escaped("\"\u{1b}[31m\""), r#""\"\u001b[31m\"""#);
    }

    #[test]
    fn an_ordinary_record() {
        let peer = "10.0.0.7:5555";
        assert_eq!(
            line(
                Level::Info,
                "tcpbridge::server",
                format_args!("accepted {peer}")
            ),
            concat!(
                r#"{"time":"2026-11-21T10:15:30.123Z","level":"INFO","#,
                r#""target":"tcpbridge::server","msg":"accepted 10.0.0.7:5555"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_message_that_needs_escaping_stays_one_line() {
        let why = "bad \"name\"\nsecond line";
        let out = line(
            Level::Warn,
            "tcpbridge::config",
            format_args!("reload: {why}"),
        );
        assert_eq!(out.matches('\n').count(), 1);
        assert!(out.ends_with("\"msg\":\"reload: bad \\\"name\\\"\\nsecond line\"}\n"));
        assert!(out.contains(r#""level":"WARN""#));
    }

    #[test]
    fn a_close_record_is_spliced() {
        let fields = r#"{"event":"close","id":7,"reason":"client-eof","to_upstream":12}"#;
        assert_eq!(
            line(Level::Info, CLOSE_TARGET, format_args!("{fields}")),
            concat!(
                r#"{"time":"2026-11-21T10:15:30.123Z","level":"INFO","#,
                r#""event":"close","id":7,"reason":"client-eof","to_upstream":12}"#,
                "\n"
            )
        );
        assert_eq!(
            line(Level::Info, CLOSE_TARGET, format_args!("{{}}")),
            "{\"time\":\"2026-11-21T10:15:30.123Z\",\"level\":\"INFO\"}\n"
        );
    }

    #[test]
    fn only_a_one_line_object_from_the_close_target_is_spliced() {
        // A human close line, an object from another target, an object over two lines.
        let human = line(Level::Info, CLOSE_TARGET, format_args!("close id=7"));
        assert!(human.contains(r#""target":"tcpbridge::close","msg":"close id=7"}"#));
        let other = line(
            Level::Info,
            "tcpbridge::server",
            format_args!("{{\"a\":1}}"),
        );
        assert!(other.contains(r#""msg":"{\"a\":1}"}"#));
        let broken = line(Level::Info, CLOSE_TARGET, format_args!("{{\"a\":\n1}}"));
        assert!(broken.contains(r#""msg":"{\"a\":\n1}"}"#));
        let open = line(Level::Info, CLOSE_TARGET, format_args!("{{\"a\":1"));
        assert!(open.contains(r#""msg":"{\"a\":1"}"#));
    }
}
