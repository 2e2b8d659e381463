//! Fuzzes the destination policy's readers (`core::policy`): `--allow` / `--deny` rules
//! and address blocks.
//!
//! Input: arbitrary bytes, read as a rule and as a block when they are UTF-8. Checked:
//! - reading never panics, and every refusal has a message;
//! - a rule that reads displays in a form that reads back to the same rule, and that
//!   form is stable (displaying it again gives the same text); likewise a block;
//! - a rule matches an address exactly when it matches the address's IPv4-mapped form
//!   (an IPv4 address and its mapped form are one address), and checking a policy made
//!   of the rule never panics, whether the rule allows or denies.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use tcpbridge::core::policy::{Cidr, Dest, Policy, Rule};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Rule>() {
        Ok(rule) => {
            let shown = rule.to_string();
            let back: Rule = shown
                .parse()
                .unwrap_or_else(|e| panic!("{text:?} shows as {shown:?}, which reads as {e}"));
            assert_eq!(back, rule, "{text:?} shown {shown:?}");
            assert_eq!(back.to_string(), shown, "display is stable");
            let v4 = match data.get(..4) {
                Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
                _ => Ipv4Addr::new(10, 0, 0, 1),
            };
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            let host = Some("www.example.com");
            assert_eq!(
                rule.target.matches(host, IpAddr::V4(v4)),
                rule.target.matches(host, mapped),
                "{shown} at {v4}"
            );
            let byte = |i: usize| data.get(i).copied().unwrap_or(0);
            let port = u16::from_be_bytes([byte(0), byte(1)]);
            let mut allow = Policy::connect();
            allow.allow.push(rule.clone());
            let mut deny = Policy::socks();
            deny.deny.push(rule);
            for ip in [IpAddr::V4(v4), mapped] {
                let dest = Dest { host, ip, port };
                let _ = (allow.check(dest), deny.check(dest));
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match text.parse::<Cidr>() {
        Ok(block) => {
            let shown = block.to_string();
            assert_eq!(shown.parse::<Cidr>(), Ok(block), "{text:?} shown {shown:?}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
