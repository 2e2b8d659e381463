//! JSON lines: one object per record, one line per object.
//!
//! A record is `{"time":..,"level":..,"target":..,"msg":..}`. A record with key-value
//! fields (an event, such as a session's close) is `{"time":..,"level":.., fields...}`
//! instead: the fields as written, numbers as numbers, so a close is one object with
//! `"event":"close"` and its counts.

use std::fmt::Write as _;
use std::time::SystemTime;

use log::kv::{Error, Key, Value, VisitSource, VisitValue};
use log::Record;

use super::target_of;
use super::utc::push_timestamp;

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

/// Appends `record`, logged at `time`, as one JSON line (newline included): an event's
/// fields when it has key-value fields (`"event":"close","id":7,...`), else its target
/// and message.
pub(crate) fn push_json_line(out: &mut String, record: &Record<'_>, time: SystemTime) {
    out.push_str("{\"time\":\"");
    push_timestamp(out, time);
    out.push_str("\",\"level\":\"");
    out.push_str(record.level().as_str());
    out.push('"');
    if record.key_values().count() > 0 {
        let mut fields = Fields { out };
        // Writing into a String cannot fail; a field that fails to render is left out.
        let _ = record.key_values().visit(&mut fields);
    } else {
        out.push_str(",\"target\":");
        push_json_string(out, target_of(record));
        out.push_str(",\"msg\":");
        match record.args().as_str() {
            Some(text) => push_json_string(out, text),
            None => push_json_string(out, &record.args().to_string()),
        }
    }
    out.push_str("}\n");
}

/// Writes each key-value field as `,"key":value`.
struct Fields<'o> {
    out: &'o mut String,
}

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        self.out.push(',');
        push_json_string(self.out, key.as_str());
        self.out.push(':');
        value.visit(JsonValue { out: self.out })
    }
}

/// One field's value: numbers and booleans as they are, text quoted, null for nothing.
struct JsonValue<'o> {
    out: &'o mut String,
}

impl<'v> VisitValue<'v> for JsonValue<'_> {
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), Error> {
        push_json_string(self.out, &value.to_string());
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), Error> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), Error> {
        let _ = write!(self.out, "{value}");
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), Error> {
        let _ = write!(self.out, "{value}");
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), Error> {
        self.out.push_str(if value { "true" } else { "false" });
        Ok(())
    }

    fn visit_str(&mut self, value: &str) -> Result<(), Error> {
        push_json_string(self.out, value);
        Ok(())
    }
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
    fn an_event_is_its_fields() {
        let time = UNIX_EPOCH + Duration::from_millis(1_795_256_130_123);
        let fields: [(&str, Value<'_>); 5] = [
            ("event", Value::from("close")),
            ("id", Value::from(7u64)),
            ("listener", Value::from("we\"b\n")),
            ("upstream", Value::null()),
            ("ok", Value::from(true)),
        ];
        let record = Record::builder()
            .level(Level::Info)
            .target("tcpbridge::close")
            .args(format_args!("the human line"))
            .key_values(&fields)
            .build();
        let mut s = String::new();
        push_json_line(&mut s, &record, time);
        assert_eq!(
            s,
            concat!(
                r#"{"time":"2026-11-21T10:15:30.123Z","level":"INFO","event":"close","id":7,"#,
                r#""listener":"we\"b\n","upstream":null,"ok":true}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_record_without_fields_keeps_target_and_message() {
        let close_like = line(Level::Info, "tcpbridge::close", format_args!("{{\"a\":1}}"));
        assert!(close_like.contains(r#""target":"tcpbridge::close","msg":"{\"a\":1}"}"#));
    }
}
