//! The options of PROXY protocol headers accepted from clients: on forward listeners and
//! on a relay's public ports, from trusted sources only, within a deadline. Part of the
//! table of options (see the parent module). What upstreams are sent is an attribute of
//! each upstream (`,proxy=v1|v2`), not an option here.

use std::time::Duration;

use crate::config::meta::{Fallback, Kind, Meta, Scope};
use crate::config::setting::{Opt, Setting};
use crate::config::ProxyAccept;
use crate::core::policy::Cidr;

use Fallback::{Absent, Value};

/// Forward clients and a relay's public clients may come through another proxy; an
/// agent accepts nothing.
const ACCEPTING: Scope = Scope::Own(&["forward", "relay"]);
const NOT_AGENT: &[(&str, &str)] = &[(
    "agent",
    "an agent accepts no clients; set proxy=v1|v2 on its service to send headers",
)];

/// Whether headers are accepted.
pub const PROXY_PROTOCOL_ACCEPT: Opt<ProxyAccept, bool> = Opt {
    meta: Meta::new(
        "proxy_protocol_accept",
        "proxy-protocol-accept",
        ACCEPTING,
        Kind::Switch,
        Value("false"),
        "",
        "Clients from proxy-protocol-trusted sources start with a PROXY header (v1 or v2); its client address is the session's.",
    )
    .not_in(NOT_AGENT),
    get: |p| Some(p.accept),
    set: |p, v| p.accept = v,
};

/// Who must send them.
pub const PROXY_PROTOCOL_TRUSTED: Opt<ProxyAccept, Vec<Cidr>> = Opt {
    meta: Meta::new(
        "proxy_protocol_trusted",
        "proxy-protocol-trusted",
        ACCEPTING,
        Kind::Blocks,
        Absent,
        "CIDR",
        "Sources that must send a PROXY header (required with proxy-protocol-accept); others must not. May repeat.",
    )
    .not_in(NOT_AGENT),
    get: |p| (!p.trusted.is_empty()).then(|| p.trusted.clone()),
    set: |p, v| p.trusted = v,
};

const TIMEOUT: Opt<ProxyAccept, Duration> = Opt {
    meta: Meta::duration(
        "proxy_protocol_timeout",
        "proxy-protocol-timeout",
        ACCEPTING,
        "5s",
        "Deadline for a whole PROXY header, from the accept.",
    )
    .not_in(NOT_AGENT),
    get: |p| Some(p.timeout),
    set: |p, v| p.timeout = v,
};

/// The options of accepted PROXY headers.
pub const PROXY_ACCEPT: &[&dyn Setting<ProxyAccept>] =
    &[&PROXY_PROTOCOL_ACCEPT, &PROXY_PROTOCOL_TRUSTED, &TIMEOUT];
