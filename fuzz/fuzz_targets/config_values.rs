//! Fuzzes the value parsers shared by the command line and config files
//! (`config::parse::parse_duration`, `parse_size`, `parse_count`, `parse_rate`,
//! `parse_word` for the reset policy and the log format, `check_host_port`,
//! `parse_address`) and the renderers that write values back (`render_duration`,
//! `render_size`, `human_size`).
//!
//! Input: byte 0 picks the size bound, the rest is the value text (UTF-8 only, as both the
//! command line and the file reader hand over text). Runs in a private network namespace
//! (see `common`). Checked:
//! - an accepted duration is 1 ms to 7 days and renders back to itself;
//! - an accepted size or count is within its bound, and a size renders back to itself;
//! - `parse_address` accepts only what `check_host_port` accepts, and an `IP:PORT` or
//!   `[IPv6]:PORT` literal resolves to exactly that address;
//! - every error names the flag and the value.

#![no_main]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tcpbridge::config::parse::{
    check_host_port, human_size, parse_address, parse_count, parse_duration, parse_rate,
    parse_size, parse_word, render_duration, render_size,
};
use tcpbridge::config::{ConfigError, LogFormat};
use tcpbridge::core::handover::ResetPolicy;

const FLAG: &str = "--fuzzed";
const WEEK: Duration = Duration::from_secs(7 * 86_400);

fn check_error(e: &ConfigError, text: &str) {
    assert_eq!(e.flag, FLAG);
    assert_eq!(e.value, text);
    assert!(!e.problem.is_empty());
    let _ = e.to_string();
}

fuzz_target!(
    init: common::isolate_network(),
    |data: &[u8]| {
        let [bound, text @ ..] = data else {
            return;
        };
        let Ok(text) = std::str::from_utf8(text) else {
            return;
        };
        let max = [1usize, 1 << 10, 64 << 20, 1 << 30, usize::MAX][usize::from(*bound % 5)];

        match parse_duration(FLAG, text) {
            Ok(d) => {
                assert!(d >= Duration::from_millis(1) && d <= WEEK, "{text:?} -> {d:?}");
                assert_eq!(d.subsec_nanos() % 1_000_000, 0, "{text:?} -> {d:?}");
                let shown = render_duration(d);
                let back = parse_duration(FLAG, &shown).expect("a rendered duration parses");
                assert_eq!(back, d, "{text:?} -> {d:?} -> {shown:?} -> {back:?}");
            }
            Err(e) => check_error(&e, text),
        }

        match parse_size(FLAG, text, max) {
            Ok(n) => {
                assert!((1..=max).contains(&n), "{text:?} -> {n} (max {max})");
                let shown = render_size(n);
                let back = parse_size(FLAG, &shown, max).expect("a rendered size parses");
                assert_eq!(back, n, "{text:?} -> {n} -> {shown:?} -> {back}");
                let _ = human_size(n);
            }
            Err(e) => check_error(&e, text),
        }

        match parse_count(FLAG, text, max) {
            Ok(n) => assert!((1..=max).contains(&n), "{text:?} -> {n} (max {max})"),
            Err(e) => check_error(&e, text),
        }
        match parse_rate(FLAG, text) {
            Ok(n) => assert!(n <= 1_000_000, "{text:?} -> {n}"),
            Err(e) => check_error(&e, text),
        }
        if let Err(e) = parse_word::<ResetPolicy>(FLAG, text) {
            check_error(&e, text);
        }
        if let Err(e) = parse_word::<LogFormat>(FLAG, text) {
            check_error(&e, text);
        }

        for allow_zero in [false, true] {
            let form = check_host_port(FLAG, text, allow_zero);
            if let Err(e) = &form {
                check_error(e, text);
            }
            let literal: Option<SocketAddr> = text.trim().parse().ok();
            match parse_address(FLAG, text, allow_zero) {
                Ok(addrs) => {
                    assert!(form.is_ok(), "{text:?} resolved but its form is refused");
                    assert!(!addrs.is_empty());
                    if let Some(addr) = literal {
                        assert_eq!(addrs, vec![addr], "{text:?} is a literal");
                    }
                    for a in &addrs {
                        assert!(allow_zero || a.port() != 0, "{text:?} -> port 0");
                    }
                }
                Err(e) => {
                    check_error(&e, text);
                    if let Some(addr) = literal {
                        // A literal is refused only for its port, or for an IPv6 scope
                        // or form that `HOST:PORT` does not take.
                        assert!(
                            form.is_err() || (addr.port() == 0 && !allow_zero),
                            "{text:?} is a valid literal but was refused: {e}"
                        );
                    }
                }
            }
        }
    }
);
