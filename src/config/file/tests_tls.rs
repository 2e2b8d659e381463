//! Tests of the TLS options in config files: `tunnel_tls` is a word (on by default), the
//! relay's key and certificate files, the agent's pin or CA and name, their
//! cross-checks, and the round trip through `check`'s rendering.

use std::path::PathBuf;

use super::tests::{agent, err, ok, relay, scratch, write_secret};
use super::*;
use crate::config::{Mode, TunnelTls};

/// A file of the TLS unit tests' data.
fn testdata(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/os/tls/testdata")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn tunnel_tls_is_on_by_default_and_a_word() {
    let dir = scratch("tls-word");
    write_secret(&dir);
    let secret = dir.join("secret");
    let Mode::Relay(r) = &ok(&relay(&secret, "")).listeners[0].mode else {
        panic!("a relay");
    };
    assert_eq!(r.tunnel.tls, TunnelTls::On);
    let Mode::Agent(a) = &ok(&agent(&secret, "tunnel_tls = \"off\"\n")).listeners[0].mode else {
        panic!("an agent");
    };
    assert_eq!(a.tunnel.tls, TunnelTls::Off);
    assert_eq!(
        err(&relay(&secret, "tunnel_tls = \"maybe\"\n")),
        "t.toml:6:14: invalid value 'maybe' for tunnel_tls: expected 'on' or 'off'"
    );
}

#[test]
fn the_relay_identity_files_are_checked() {
    let dir = scratch("tls-relay");
    write_secret(&dir);
    let secret = dir.join("secret");
    let key = testdata("relay.key");
    let cert = testdata("relay.pem");
    let config = ok(&relay(&secret, &format!("tunnel_tls_key = \"{key}\"\n")));
    let Mode::Relay(r) = &config.listeners[0].mode else {
        panic!("a relay");
    };
    assert!(r.identity.load().is_some_and(|made| made.is_ok()));
    let rendered = render(&config);
    assert!(
        rendered.contains(&format!("tunnel_tls_key = \"{key}\"")),
        "{rendered}"
    );
    assert!(rendered.contains("tunnel_tls = \"on\""), "{rendered}");
    assert!(
        err(&relay(&secret, &format!("tunnel_tls_cert = \"{cert}\"\n")))
            .ends_with("needs tunnel_tls_key")
    );
    // The secret file is no key.
    let garbage = secret.display().to_string();
    assert!(err(&relay(
        &secret,
        &format!("tunnel_tls_key = \"{garbage}\"\n")
    ))
    .ends_with("no usable private key in the PEM file"));
    let plain = format!("tunnel_tls = \"off\"\ntunnel_tls_key = \"{key}\"\n");
    assert!(err(&relay(&secret, &plain)).ends_with("needs tunnel_tls on"));
    assert!(
        err(&relay(&secret, "tunnel_tls_key = \"/nonexistent.pem\"\n")).contains("cannot read")
    );
}

#[test]
fn the_agent_pin_or_ca_and_name_are_checked() {
    let dir = scratch("tls-agent");
    write_secret(&dir);
    let secret = dir.join("secret");
    let pin = format!("sha256:{}", "ab".repeat(32));
    let ca = testdata("ca.pem");
    let config = ok(&agent(&secret, &format!("tunnel_tls_pin = \"{pin}\"\n")));
    let Mode::Agent(a) = &config.listeners[0].mode else {
        panic!("an agent");
    };
    assert_eq!(a.trust.pin.map(|p| p.to_string()), Some(pin.clone()));
    assert!(render(&config).contains(&format!("tunnel_tls_pin = \"{pin}\"")));
    assert!(err(&agent(&secret, "tunnel_tls_pin = \"sha256:12\"\n"))
        .ends_with("expected sha256: and 64 hexadecimal digits"));
    let both = format!("tunnel_tls_pin = \"{pin}\"\ntunnel_tls_ca = \"{ca}\"\ntunnel_tls_name = \"relay.example\"\n");
    assert!(err(&agent(&secret, &both)).contains("excludes tunnel_tls_pin"));
    assert!(err(&agent(&secret, &format!("tunnel_tls_ca = \"{ca}\"\n")))
        .ends_with("needs tunnel_tls_name"));
    assert!(
        err(&agent(&secret, "tunnel_tls_name = \"relay.example\"\n"))
            .ends_with("needs tunnel_tls_ca")
    );
    let named = format!("tunnel_tls_ca = \"{ca}\"\ntunnel_tls_name = \"relay.example\"\n");
    let Mode::Agent(a) = &ok(&agent(&secret, &named)).listeners[0].mode else {
        panic!("an agent");
    };
    assert_eq!(a.trust.name.as_deref(), Some("relay.example"));
    let garbage = secret.display().to_string();
    let bad_ca = format!("tunnel_tls_ca = \"{garbage}\"\ntunnel_tls_name = \"relay.example\"\n");
    assert!(err(&agent(&secret, &bad_ca)).ends_with("no usable CA certificate in the PEM file"));
    let plain = format!("tunnel_tls = \"off\"\ntunnel_tls_pin = \"{pin}\"\n");
    assert!(err(&agent(&secret, &plain)).ends_with("needs tunnel_tls on"));
}
