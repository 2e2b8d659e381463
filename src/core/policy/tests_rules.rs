//! Address blocks and the `--allow` / `--deny` syntax: what reads, what is refused and
//! why, the canonical display, and random rule-like strings.

use std::net::IpAddr;

use super::{Cidr, CidrError, CidrSet, Ports, Rule, RuleError, Target};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

fn rule(s: &str) -> Rule {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn blocks_read_mask_and_display() {
    let cases = [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::1", "::1/128"),
        ("::1/128", "::1/128"),
        ("fe80::1/10", "fe80::/10"),
        ("::/0", "::/0"),
        ("::ffff:10.1.0.0/104", "10.0.0.0/8"),
        ("::ffff:127.0.0.1", "127.0.0.1/32"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::ffff:0:0/95", "::fffe:0:0/95"),
    ];
    for (input, shown) in cases {
        let c: Cidr = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(c.to_string(), shown, "{input}");
        assert_eq!(shown.parse::<Cidr>(), Ok(c), "{shown} reads back");
    }
}

#[test]
fn blocks_refused() {
    let cases = [
        ("", CidrError::Empty),
        ("10.0.0.0/", CidrError::BadPrefix),
        ("10.0.0.0/+8", CidrError::BadPrefix),
        ("10.0.0.0/8/8", CidrError::BadPrefix),
        ("10.0.0.0/1000", CidrError::BadPrefix),
        ("10.0.0.0/33", CidrError::PrefixTooLong { max: 32 }),
        ("10.0.0.0/255", CidrError::PrefixTooLong { max: 32 }),
        ("::/129", CidrError::PrefixTooLong { max: 128 }),
        ("::/256", CidrError::PrefixTooLong { max: 128 }),
        ("10.0.0", CidrError::NotAnAddress),
        ("010.0.0.1", CidrError::NotAnAddress),
        ("fe80::1%eth0", CidrError::NotAnAddress),
        ("[::1]", CidrError::NotAnAddress),
        ("example.com", CidrError::NotAnAddress),
    ];
    for (input, error) in cases {
        assert_eq!(input.parse::<Cidr>(), Err(error), "{input}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn blocks_match_mapped_addresses_as_ipv4() {
    let ten: Cidr = "10.0.0.0/8".parse().expect("block");
    assert!(ten.contains(ip("10.255.0.1")));
    assert!(ten.contains(ip("::ffff:10.255.0.1")));
    assert!(!ten.contains(ip("11.0.0.0")));
    assert!(!ten.contains(ip("::10.0.0.1")), "compatible is not mapped");
    assert!(!ten.contains(ip("::1")));
    let all6: Cidr = "::/0".parse().expect("block");
    assert!(all6.contains(ip("8.8.8.8")), "::/0 holds the mapped range");
    let ula: Cidr = "fc00::/7".parse().expect("block");
    assert!(ula.contains(ip("fdff::1")) && !ula.contains(ip("fe00::")));
    assert!(!ula.contains(ip("10.0.0.1")));
    let everything: Cidr = "0.0.0.0/0".parse().expect("block");
    assert!(everything.contains(ip("::ffff:1.2.3.4")) && !everything.contains(ip("::1")));
    let set: CidrSet = "10.0.0.0/8,::1,192.168.1.1".parse().expect("set");
    assert_eq!(set.to_string(), "10.0.0.0/8,::1/128,192.168.1.1/32");
    assert!(set.contains(ip("::ffff:192.168.1.1")) && set.contains(ip("::1")));
    assert!(!set.contains(ip("192.168.1.2")));
    assert_eq!("10.0.0.0/8,".parse::<CidrSet>(), Err(CidrError::Empty));
    assert!(!CidrSet::default().contains(ip("10.0.0.1")));
}

#[test]
fn rules_read_and_display_canonically() {
    let cases = [
        ("10.0.0.0/8:22", "10.0.0.0/8:22"),
        ("10.0.0.5", "10.0.0.5/32"),
        ("db.internal:5432-5433", "db.internal:5432-5433"),
        ("*.example.com:443,8443", "*.example.com:443,8443"),
        (".Example.COM.", "*.example.com"),
        ("Example.com.:443", "example.com:443"),
        ("[::1]/128:80", "[::1]/128:80"),
        ("[::1]:80", "[::1]/128:80"),
        ("[::1]", "::1/128"),
        ("[::1/128]:80", "[::1]/128:80"),
        ("[::ffff:10.0.0.1]:80", "10.0.0.1/32:80"),
        ("fe80::/10", "fe80::/10"),
        ("::1", "::1/128"),
        (
            "host:8443,443,444,100-200,150-300",
            "host:100-300,443-444,8443",
        ),
        ("_srv.example:1-65535", "_srv.example:1-65535"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
    ];
    for (input, shown) in cases {
        let r = rule(input);
        assert_eq!(r.to_string(), shown, "{input}");
        assert_eq!(rule(shown), r, "{shown} reads back");
    }
    assert_eq!(
        rule("*.example.com:443").target,
        Target::Suffix("example.com".into())
    );
    assert_eq!(rule("example.com").ports, None);
}

#[test]
fn rules_refused() {
    let long_label = "a".repeat(64);
    let long_name = format!("{}.com", ["abcdefghi"; 26].join("."));
    let cases: Vec<(&str, RuleError)> = vec![
        ("", RuleError::Empty),
        (":443", RuleError::Empty),
        ("example.com:", RuleError::NoPorts),
        ("example.com:0", RuleError::PortZero),
        ("example.com:65536", RuleError::BadPort),
        ("example.com:443,", RuleError::BadPort),
        ("example.com:+443", RuleError::BadPort),
        ("example.com:44 3", RuleError::BadPort),
        ("example.com:100-", RuleError::BadPort),
        ("example.com:1-2-3", RuleError::BadPort),
        ("example.com:200-100", RuleError::PortsBackwards),
        (
            "10.0.0.0/33:22",
            RuleError::Block(CidrError::PrefixTooLong { max: 32 }),
        ),
        ("10.0.0.0/x", RuleError::Block(CidrError::BadPrefix)),
        ("::1/128:80", RuleError::Block(CidrError::BadPrefix)),
        ("[::1", RuleError::Bracket),
        ("[::1]80", RuleError::Bracket),
        ("[::1]:", RuleError::NoPorts),
        (
            "[::1]/129",
            RuleError::Block(CidrError::PrefixTooLong { max: 128 }),
        ),
        (
            "[example.com]:80",
            RuleError::Block(CidrError::NotAnAddress),
        ),
        ("10.0.0.256", RuleError::NumericName),
        ("10.0.0", RuleError::NumericName),
        ("a..b", RuleError::EmptyLabel),
        (".", RuleError::EmptyLabel),
        ("*.", RuleError::EmptyLabel),
        ("..example.com", RuleError::EmptyLabel),
        (&long_label, RuleError::LongLabel),
        (&long_name, RuleError::LongName),
        ("-a.com", RuleError::BadCharacter),
        ("a-.com", RuleError::BadCharacter),
        ("ex ample.com", RuleError::BadCharacter),
        ("bücher.example", RuleError::BadCharacter),
        ("*", RuleError::Wildcard),
        ("a.*.com", RuleError::Wildcard),
        ("**.com", RuleError::Wildcard),
        ("*example.com", RuleError::Wildcard),
    ];
    for (input, error) in cases {
        assert_eq!(input.parse::<Rule>(), Err(error), "{input}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn ports_sets() {
    let p: Ports = "443,80,81-90,91".parse().expect("ports");
    assert_eq!(p.to_string(), "80-91,443");
    assert!(p.contains(80) && p.contains(91) && p.contains(443));
    assert!(!p.contains(92) && !p.contains(0) && !p.contains(79));
    assert!(Ports::any().contains(1) && Ports::any().contains(65535));
    assert!(!Ports::any().contains(0) && !Ports::one(0).contains(0));
    assert_eq!(Ports::any().to_string(), "1-65535");
}

#[test]
fn names_match_case_and_final_dot_blind() {
    let exact = rule("example.com").target;
    let suffix = rule("*.example.com").target;
    let any = ip("8.8.8.8");
    assert!(exact.matches(Some("EXAMPLE.com."), any));
    assert!(!exact.matches(Some("www.example.com"), any));
    assert!(!exact.matches(None, any));
    assert!(suffix.matches(Some("www.example.com"), any));
    assert!(suffix.matches(Some("a.b.Example.Com."), any));
    assert!(!suffix.matches(Some("example.com"), any), "not the apex");
    assert!(!suffix.matches(Some(".example.com"), any));
    assert!(!suffix.matches(Some("badexample.com"), any));
    assert!(!suffix.matches(Some("example.com.evil"), any));
    assert!(
        suffix.matches(Some("wwwé.example.com"), any),
        "names are the caller's"
    );
    assert!(!suffix.matches(Some("é.xample.com"), any));
    assert!(!suffix.matches(None, any));
}

/// Random strings from rule-like pieces never panic, and what reads displays as a rule
/// that reads back to itself.
#[test]
fn random_rules_round_trip() {
    const PIECES: &[&str] = &[
        "10", ".", "0", "/", "8", ":", "22", ",", "-", "443", "[", "]", "::", "1", "ffff", "*",
        "example", "com", "a", "_", "65535", "0x", "fe80", "255", "128", "Z", "é", " ",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut read = 0;
    for _ in 0..20_000 {
        let s: String = (0..1 + rng.below(9))
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect();
        if let Ok(r) = s.parse::<Rule>() {
            read += 1;
            let shown = r.to_string();
            assert_eq!(
                shown.parse::<Rule>().as_ref(),
                Ok(&r),
                "{s:?} shown {shown:?}"
            );
        }
    }
    assert!(read > 500, "only {read} rules read");
}
