//! Fuzzes the config file reader (`config::file::parse`) and its inverse
//! (`config::file::render`).
//!
//! Input: the file's text (UTF-8 only, as `load` refuses anything else). The file is taken
//! to live in `fuzz/fixtures/`, whose `tunnel.secret` relay and agent listeners may name.
//! Runs in a private network namespace (see `common`), so host names fail at once.
//! Checked:
//! - no panic; every error names the file and a line and column inside the text;
//! - an accepted file renders to a file that reads back to the same configuration.
//!
//! `parse` reads the secret files a config names. So that an input can only make it read
//! files in `fixtures/`, inputs with a `secret_file` value that is not a plain file name
//! (no `/`, not `.` or `..`) anywhere in the document are skipped; the value is found
//! with the same TOML reader the config code uses.

#![no_main]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tcpbridge::config::file::{parse, render};
use toml::de::{DeTable, DeValue};

fn config_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tcpbridge.toml"))
}

/// True when every `secret_file` string in the tree is a plain file name.
fn secrets_stay_in_fixtures(table: &DeTable<'_>) -> bool {
    table.iter().all(|(key, value)| {
        let safe_here = key.get_ref().as_ref() != "secret_file"
            || match value.get_ref() {
                DeValue::String(s) => {
                    !s.is_empty() && s.as_ref() != "." && s.as_ref() != ".." && !s.contains('/')
                }
                _ => true,
            };
        safe_here && value_stays(value.get_ref())
    })
}

fn value_stays(value: &DeValue<'_>) -> bool {
    match value {
        DeValue::Table(t) => secrets_stay_in_fixtures(t),
        DeValue::Array(a) => a.iter().all(|v| value_stays(v.get_ref())),
        _ => true,
    }
}

fuzz_target!(
    init: common::isolate_network(),
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match DeTable::parse(text) {
            Ok(root) if !secrets_stay_in_fixtures(root.get_ref()) => return,
            // Not TOML: the config reader refuses it before reading any secret.
            _ => {}
        }
        let path = config_path();
        let config = match parse(text, path) {
            Ok(config) => config,
            Err(e) => {
                assert_eq!(e.path, path);
                let lines = text.split('\n').count();
                assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
                assert!(e.column >= 1);
                let shown = e.to_string();
                assert!(!shown.contains('\n'), "a multi-line error: {shown:?}");
                return;
            }
        };
        let rendered = render(&config);
        let again = match parse(&rendered, path) {
            Ok(again) => again,
            Err(e) => panic!("the rendered config does not read back: {e}\n{rendered}"),
        };
        assert_eq!(again.global, config.global, "global settings\n{rendered}");
        assert_eq!(again.listeners, config.listeners, "listeners\n{rendered}");
        assert_eq!(again.source, config.source);
        assert_eq!(render(&again), rendered, "rendering is not stable");
    }
);
