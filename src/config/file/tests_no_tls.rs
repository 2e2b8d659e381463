//! Tests of the TLS options in a build without the `tls` feature: they still parse, but
//! a relay or agent with TLS tunnels (the default) or a TLS file is refused in one line,
//! at the value (or the table, when the default applies); plain tunnels are accepted.

use super::tests::{agent, err, ok, relay, scratch, write_secret};
use crate::config::{Mode, TunnelTls};

const WHY: &str = "this tcpbridge was built without TLS (cargo feature \"tls\")";

#[test]
fn tls_tunnels_are_refused_never_made_plain() {
    let dir = scratch("no-tls");
    write_secret(&dir);
    let secret = dir.join("secret");
    assert_eq!(
        err(&relay(&secret, "")),
        format!(
            "t.toml:1:1: tunnel_tls on (the default): {WHY}; use tunnel_tls off on both \
             ends, or build with the default features"
        )
    );
    assert_eq!(
        err(&agent(&secret, "tunnel_tls = \"on\"\n")),
        format!(
            "t.toml:6:14: tunnel_tls on: {WHY}; use tunnel_tls off on both ends, or build \
             with the default features"
        )
    );
    let defaults = format!("[defaults]\ntunnel_tls = \"on\"\n{}", agent(&secret, ""));
    assert!(err(&defaults).starts_with("t.toml:2:14: tunnel_tls on: "));
}

#[test]
fn the_tls_files_are_refused_even_with_plain_tunnels() {
    let dir = scratch("no-tls-files");
    write_secret(&dir);
    let secret = dir.join("secret");
    let file = secret.display().to_string();
    let pin = format!("sha256:{}", "ab".repeat(32));
    let key = format!("tunnel_tls = \"off\"\ntunnel_tls_key = \"{file}\"\n");
    assert_eq!(
        err(&relay(&secret, &key)),
        format!(
            "t.toml:7:18: tunnel_tls_key: {WHY}; remove it, or build with the default features"
        )
    );
    let pinned = format!("tunnel_tls_pin = \"{pin}\"\n");
    assert!(err(&agent(&secret, &pinned)).contains(&format!("tunnel_tls_pin: {WHY}")));
    let ca = format!("tunnel_tls = \"off\"\ntunnel_tls_ca = \"{file}\"\ntunnel_tls_name = \"r\"\n");
    assert!(err(&agent(&secret, &ca)).contains(&format!("tunnel_tls_ca: {WHY}")));
}

#[test]
fn plain_tunnels_are_accepted() {
    let dir = scratch("no-tls-plain");
    write_secret(&dir);
    let secret = dir.join("secret");
    let off = "tunnel_tls = \"off\"\n";
    let Mode::Relay(r) = &ok(&relay(&secret, off)).listeners[0].mode else {
        panic!("a relay");
    };
    assert_eq!(r.tunnel.tls, TunnelTls::Off);
    let Mode::Agent(a) = &ok(&agent(&secret, off)).listeners[0].mode else {
        panic!("an agent");
    };
    assert_eq!(a.tunnel.tls, TunnelTls::Off);
}
