//! The TLS options of tunnels: on or off (relay and agent alike), the relay's identity
//! files, and what an agent accepts from the relay. Part of the table of options (see
//! the parent module); `docs/tls.md` says what each choice protects.

use crate::config::meta::{Fallback, Kind, Meta, Scope};
use crate::config::setting::Opt;
use crate::config::typed::ServerName;
use crate::config::{Agent, PemFile, Relay, TunnelOptions, TunnelTls};
use crate::os::fingerprint::Fingerprint;

use Fallback::{Absent, Value};

const RELAY_ONLY: &[(&str, &str)] = &[(
    "agent",
    "an agent presents no key; see tunnel-tls-pin and tunnel-tls-ca",
)];
const AGENT_ONLY: &[(&str, &str)] = &[(
    "relay",
    "a relay checks agents by their proofs; see tunnel-tls-cert and tunnel-tls-key",
)];

/// TLS on tunnel connections (both ends must agree).
pub const TUNNEL_TLS: Opt<TunnelOptions, TunnelTls> = Opt {
    meta: Meta::new(
        "tunnel_tls",
        "tunnel-tls",
        Scope::Tunnel,
        Kind::Word(&["on", "off"]),
        Value("on"),
        "on|off",
        "TLS 1.3 on tunnel connections, proofs bound to the channel (both ends alike); off is for a trusted network.",
    ),
    get: |t| Some(t.tls),
    set: |t, v| t.tls = v,
};

/// The relay's certificate chain.
pub const TUNNEL_TLS_CERT: Opt<Relay, PemFile> = Opt {
    meta: Meta::new(
        "tunnel_tls_cert",
        "tunnel-tls-cert",
        Scope::Own(&["relay"]),
        Kind::PemFile,
        Absent,
        "PATH",
        "PEM certificate chain (leaf first) shown to agents that verify a CA; needs tunnel-tls-key.",
    )
    .not_in(RELAY_ONLY),
    get: |r| r.identity.cert.clone(),
    set: |r, v| r.identity.cert = Some(v),
};

/// The relay's private key.
pub const TUNNEL_TLS_KEY: Opt<Relay, PemFile> = Opt {
    meta: Meta::new(
        "tunnel_tls_key",
        "tunnel-tls-key",
        Scope::Own(&["relay"]),
        Kind::PemFile,
        Absent,
        "PATH",
        "PEM private key of the relay (kept across restarts, so agents can pin it); default: one made at start-up.",
    )
    .not_in(RELAY_ONLY),
    get: |r| r.identity.key.clone(),
    set: |r, v| r.identity.key = Some(v),
};

/// The fingerprint of the relay's key an agent accepts.
pub const TUNNEL_TLS_PIN: Opt<Agent, Fingerprint> = Opt {
    meta: Meta::new(
        "tunnel_tls_pin",
        "tunnel-tls-pin",
        Scope::Own(&["agent"]),
        Kind::Fingerprint,
        Absent,
        "sha256:HEX",
        "Accept only the relay key with this SHA-256 fingerprint (the relay logs it); default: any key.",
    )
    .not_in(AGENT_ONLY),
    get: |a| a.trust.pin,
    set: |a, v| a.trust.pin = Some(v),
};

/// CA certificates an agent verifies the relay's chain with.
pub const TUNNEL_TLS_CA: Opt<Agent, PemFile> = Opt {
    meta: Meta::new(
        "tunnel_tls_ca",
        "tunnel-tls-ca",
        Scope::Own(&["agent"]),
        Kind::PemFile,
        Absent,
        "PATH",
        "Verify the relay's certificate against these PEM CA certificates; needs tunnel-tls-name.",
    )
    .not_in(AGENT_ONLY),
    get: |a| a.trust.ca.clone(),
    set: |a, v| a.trust.ca = Some(v),
};

/// The name the relay's certificate must carry.
pub const TUNNEL_TLS_NAME: Opt<Agent, ServerName> = Opt {
    meta: Meta::new(
        "tunnel_tls_name",
        "tunnel-tls-name",
        Scope::Own(&["agent"]),
        Kind::ServerName,
        Absent,
        "NAME",
        "The DNS name the relay's certificate must carry (with tunnel-tls-ca).",
    )
    .not_in(AGENT_ONLY),
    get: |a| a.trust.name.clone().map(ServerName),
    set: |a, v| a.trust.name = Some(v.0),
};
