//! The options of `connect` and `socks` listeners: where they listen, the destination
//! policy, who may use them, and the bounds of a client's handshake. Part of the table
//! of options (see the parent module). The credentials file is listed last: the file
//! system is touched after every other mistake had its chance to be reported.

use std::net::SocketAddr;
use std::time::Duration;

use super::COUNT;
use crate::config::meta::{Fallback, Kind, Meta, Scope};
use crate::config::setting::{Opt, Setting};
use crate::config::typed::CredentialsFile;
use crate::config::Dynamic;
use crate::core::policy::{Cidr, Rule};

use Fallback::{Absent, Required, Value};

/// The modes whose clients name their destination.
pub(super) const DYNAMIC_MODES: Scope = Scope::Own(&["connect", "socks"]);

/// The listening addresses.
pub const DYNAMIC_LISTEN: Opt<Dynamic, Vec<SocketAddr>> = Opt {
    meta: Meta::new(
        "listen",
        "listen",
        DYNAMIC_MODES,
        Kind::Addresses { listen: true },
        Required,
        "ADDR",
        "Address to listen on, HOST:PORT (port 0: any free port). May repeat.",
    ),
    get: |d| Some(d.listen.clone()),
    set: |d, v| d.listen = v,
};

const ALLOW: Opt<Dynamic, Vec<Rule>> = Opt {
    meta: Meta::new(
        "allow",
        "allow",
        DYNAMIC_MODES,
        Kind::Rules,
        Absent,
        "RULE",
        "Exception to the default deny of internal addresses and other ports: CIDR or name pattern, optional :PORTS (a name never opens an internal address). May repeat.",
    ),
    get: |d| (!d.allow.is_empty()).then(|| d.allow.clone()),
    set: |d, v| d.allow = v,
};

const DENY: Opt<Dynamic, Vec<Rule>> = Opt {
    meta: Meta::new(
        "deny",
        "deny",
        DYNAMIC_MODES,
        Kind::Rules,
        Absent,
        "RULE",
        "More destinations refused (over any allow): CIDR or name pattern, optional :PORTS. May repeat.",
    ),
    get: |d| (!d.deny.is_empty()).then(|| d.deny.clone()),
    set: |d, v| d.deny = v,
};

/// The clients allowed to use the proxy.
pub const CLIENT_ALLOW: Opt<Dynamic, Vec<Cidr>> = Opt {
    meta: Meta::new(
        "client_allow",
        "client-allow",
        DYNAMIC_MODES,
        Kind::Blocks,
        Absent,
        "CIDR",
        "Client addresses allowed to use the proxy (default: any). May repeat.",
    ),
    get: |d| (!d.client_allow.is_empty()).then(|| d.client_allow.clone()),
    set: |d, v| d.client_allow = v,
};

const HANDSHAKE_TIMEOUT: Opt<Dynamic, Duration> = Opt {
    meta: Meta::duration(
        "handshake_timeout",
        "handshake-timeout",
        DYNAMIC_MODES,
        "10s",
        "Absolute bound on a client's handshake, from accept to its whole request.",
    ),
    get: |d| Some(d.handshake_timeout),
    set: |d, v| d.handshake_timeout = v,
};

const RESOLVE_TIMEOUT: Opt<Dynamic, Duration> = Opt {
    meta: Meta::duration(
        "resolve_timeout",
        "resolve-timeout",
        DYNAMIC_MODES,
        "5s",
        "Bound on the look-up of a destination's name.",
    ),
    get: |d| Some(d.resolve_timeout),
    set: |d, v| d.resolve_timeout = v,
};

const MAX_HANDSHAKES: Opt<Dynamic, usize> = Opt {
    meta: Meta::new(
        "max_handshakes",
        "max-handshakes",
        DYNAMIC_MODES,
        COUNT,
        Value("256"),
        "N",
        "Most clients in their handshake (reading, resolving, dialing) at once.",
    ),
    get: |d| Some(d.max_handshakes),
    set: |d, v| d.max_handshakes = v,
};

const MAX_SESSIONS_PER_CLIENT: Opt<Dynamic, usize> = Opt {
    meta: Meta::new(
        "max_sessions_per_client",
        "max-sessions-per-client",
        DYNAMIC_MODES,
        COUNT,
        Value("128"),
        "N",
        "Most handshakes and sessions at once from one client address.",
    ),
    get: |d| Some(d.max_sessions_per_client),
    set: |d, v| d.max_sessions_per_client = v,
};

/// The users who may use the proxy.
pub(crate) const CREDENTIALS_FILE: Opt<Dynamic, CredentialsFile> = Opt {
    meta: Meta::new(
        "credentials_file",
        "credentials-file",
        DYNAMIC_MODES,
        Kind::CredentialsFile,
        Absent,
        "PATH",
        "File of user:password lines clients must authenticate with (mode 600; default: none asked).",
    ),
    get: |d| {
        d.credentials_file.as_ref().map(|path| CredentialsFile {
            path: path.clone(),
            credentials: d.credentials.clone(),
        })
    },
    set: |d, v| {
        d.credentials_file = Some(v.path);
        d.credentials = v.credentials;
    },
};

/// The options of `connect` and `socks` listeners (the credentials file last).
pub const DYNAMIC: &[&dyn Setting<Dynamic>] = &[
    &DYNAMIC_LISTEN,
    &ALLOW,
    &DENY,
    &CLIENT_ALLOW,
    &HANDSHAKE_TIMEOUT,
    &RESOLVE_TIMEOUT,
    &MAX_HANDSHAKES,
    &MAX_SESSIONS_PER_CLIENT,
    &CREDENTIALS_FILE,
];
