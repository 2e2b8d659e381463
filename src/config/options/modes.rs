//! The options of each mode's own table (and subcommand), and the tunnel options relay
//! and agent listeners share. Part of the table of options (see the parent module).

use std::net::SocketAddr;
use std::time::Duration;

use super::tls::{
    TUNNEL_TLS, TUNNEL_TLS_CA, TUNNEL_TLS_CERT, TUNNEL_TLS_KEY, TUNNEL_TLS_NAME, TUNNEL_TLS_PIN,
};
use super::COUNT;
use crate::config::meta::{Bound, Fallback, Kind, Meta, Scope};
use crate::config::setting::{Opt, Setting};
use crate::config::typed::SecretFile;
use crate::config::{Agent, Forward, Relay, Service, TunnelOptions, Upstream, MAX_POOL};

use Fallback::{Required, Value};

const RELAY_AGENT: &[&str] = &["relay", "agent"];

// ---- forward ----

const LISTEN: Opt<Forward, Vec<SocketAddr>> = Opt {
    meta: Meta::new(
        "listen",
        "listen",
        Scope::Own(&["forward"]),
        Kind::Addresses { listen: true },
        Required,
        "ADDR",
        "Address to listen on, HOST:PORT (port 0: any free port). May repeat.",
    ),
    get: |f| Some(f.listen.clone()),
    set: |f, v| f.listen = v,
};

const UPSTREAM: Opt<Forward, Vec<Upstream>> = Opt {
    meta: Meta::new(
        "upstream",
        "upstream",
        Scope::Own(&["forward"]),
        Kind::Addresses { listen: false },
        Required,
        "ADDR",
        "Upstream HOST:PORT[,weight=N][,backup]. May repeat; balanced by --balance.",
    ),
    get: |f| Some(f.upstreams.clone()),
    set: |f, v| f.upstreams = v,
};

/// Set SO_REUSEPORT on the listening sockets, so several processes share a port. A relay
/// pairs two connections the kernel would spread over processes; an agent listens on
/// nothing.
const REUSE_PORT: Opt<Forward, bool> = Opt {
    meta: Meta::new(
        "reuse_port",
        "reuse-port",
        Scope::Own(&["forward"]),
        Kind::Switch,
        Value("false"),
        "",
        "SO_REUSEPORT: several processes share the listening ports; the kernel spreads clients.",
    )
    .not_in(&[
        (
            "relay",
            "relay pairs an agent's tunnel with a client's connection, both must reach the same process",
        ),
        ("agent", "an agent listens on no port"),
    ]),
    get: |f| Some(f.reuse_port),
    set: |f, v| f.reuse_port = v,
};

/// A forward listener's own options.
pub const FORWARD: &[&dyn Setting<Forward>] = &[&LISTEN, &UPSTREAM, &REUSE_PORT];

// ---- relay ----

const TUNNEL_LISTEN: Opt<Relay, SocketAddr> = Opt {
    meta: Meta::new(
        "tunnel_listen",
        "tunnel-listen",
        Scope::Own(&["relay"]),
        Kind::Address { listen: true },
        Required,
        "ADDR",
        "Where agents connect, HOST:PORT.",
    ),
    get: |r| Some(r.tunnel_listen),
    set: |r, v| r.tunnel_listen = v,
};

const PUBLIC: Opt<Relay, Vec<Service>> = Opt {
    meta: Meta::new(
        "public",
        "public",
        Scope::Own(&["relay"]),
        Kind::Services { listen: true },
        Required,
        "NAME=ADDR",
        "A public listener for a service, NAME=HOST:PORT. May repeat.",
    ),
    get: |r| Some(r.public.clone()),
    set: |r, v| r.public = v,
};

const PAIR_TIMEOUT: Opt<Relay, Duration> = Opt {
    meta: Meta::duration(
        "pair_timeout",
        "pair-timeout",
        Scope::Own(&["relay"]),
        "10s",
        "How long a public client waits for an idle tunnel.",
    ),
    get: |r| Some(r.pair_timeout),
    set: |r, v| r.pair_timeout = v,
};

/// A relay's count option.
const fn relay_count(key: &'static str, long: &'static str, help: &'static str) -> Meta {
    Meta::new(
        key,
        long,
        Scope::Own(&["relay"]),
        COUNT,
        Value("64"),
        "N",
        help,
    )
}

const MAX_WAITING: Opt<Relay, usize> = Opt {
    meta: relay_count(
        "max_waiting",
        "max-waiting",
        "Most public clients waiting per service.",
    ),
    get: |r| Some(r.max_waiting),
    set: |r, v| r.max_waiting = v,
};

const MAX_IDLE_TUNNELS: Opt<Relay, usize> = Opt {
    meta: relay_count(
        "max_idle_tunnels",
        "max-idle-tunnels",
        "Most idle tunnels per service.",
    ),
    get: |r| Some(r.max_idle_tunnels),
    set: |r, v| r.max_idle_tunnels = v,
};

const MAX_HANDSHAKES: Opt<Relay, usize> = Opt {
    meta: relay_count(
        "max_handshakes",
        "max-handshakes",
        "Most tunnel connections in the handshake at once.",
    ),
    get: |r| Some(r.max_handshakes),
    set: |r, v| r.max_handshakes = v,
};

/// A relay listener's own options.
pub const RELAY: &[&dyn Setting<Relay>] = &[
    &TUNNEL_LISTEN,
    &PUBLIC,
    &PAIR_TIMEOUT,
    &MAX_WAITING,
    &MAX_IDLE_TUNNELS,
    &MAX_HANDSHAKES,
    &TUNNEL_TLS_CERT,
    &TUNNEL_TLS_KEY,
];

// ---- agent ----

const RELAY_ADDRESS: Opt<Agent, String> = Opt {
    meta: Meta::new(
        "relay",
        "relay",
        Scope::Own(&["agent"]),
        Kind::HostPort,
        Required,
        "ADDR",
        "The relay's tunnel address, HOST:PORT (the name is resolved again on reconnect).",
    ),
    get: |a| Some(a.relay.clone()),
    set: |a, v| a.relay = v,
};

const SERVICE: Opt<Agent, Vec<Service>> = Opt {
    meta: Meta::new(
        "service",
        "service",
        Scope::Own(&["agent"]),
        Kind::Services { listen: false },
        Required,
        "NAME=ADDR",
        "A service the relay may reach, NAME=HOST:PORT (its upstream). May repeat.",
    ),
    get: |a| Some(a.services.clone()),
    set: |a, v| a.services = v,
};

const POOL: Opt<Agent, usize> = Opt {
    meta: Meta::new(
        "pool",
        "pool",
        Scope::Own(&["agent"]),
        Kind::Count {
            max: Bound::Fixed(MAX_POOL),
        },
        Value("4"),
        "N",
        "Idle tunnels kept open per service.",
    ),
    get: |a| Some(a.pool),
    set: |a, v| a.pool = v,
};

const EXIT_ON_DISCONNECT: Opt<Agent, bool> = Opt {
    meta: Meta::new(
        "exit_on_disconnect",
        "exit-on-disconnect",
        Scope::Own(&["agent"]),
        Kind::Switch,
        Value("false"),
        "",
        "Exit (code 1) when a tunnel to the relay is lost or cannot be opened.",
    ),
    get: |a| Some(a.exit_on_disconnect),
    set: |a, v| a.exit_on_disconnect = v,
};

const BACKOFF_MAX: Opt<Agent, Duration> = Opt {
    meta: Meta::duration(
        "backoff_max",
        "backoff-max",
        Scope::Own(&["agent"]),
        "30s",
        "Cap of the reconnect backoff (exponential from 100ms, with jitter).",
    ),
    get: |a| Some(a.backoff_max),
    set: |a, v| a.backoff_max = v,
};

/// An agent listener's own options.
pub const AGENT: &[&dyn Setting<Agent>] = &[
    &RELAY_ADDRESS,
    &SERVICE,
    &POOL,
    &EXIT_ON_DISCONNECT,
    &BACKOFF_MAX,
    &TUNNEL_TLS_PIN,
    &TUNNEL_TLS_CA,
    &TUNNEL_TLS_NAME,
];

// ---- tunnels: relay and agent ----

/// Handshake timeout (absolute).
const HANDSHAKE_TIMEOUT: Opt<TunnelOptions, Duration> = Opt {
    meta: Meta::duration(
        "handshake_timeout",
        "handshake-timeout",
        Scope::Tunnel,
        "5s",
        "Absolute bound on a tunnel handshake.",
    ),
    get: |t| Some(t.policy.handshake_timeout),
    set: |t, v| t.policy.handshake_timeout = v,
};

/// Heartbeat interval; shorter than the heartbeat timeout.
pub const HEARTBEAT_INTERVAL: Opt<TunnelOptions, Duration> = Opt {
    meta: Meta::duration(
        "heartbeat_interval",
        "heartbeat-interval",
        Scope::Tunnel,
        "20s",
        "An idle tunnel sends a heartbeat after this long without sending.",
    ),
    get: |t| Some(t.policy.heartbeat_interval),
    set: |t, v| t.policy.heartbeat_interval = v,
};

/// Heartbeat timeout; longer than the heartbeat interval.
pub const HEARTBEAT_TIMEOUT: Opt<TunnelOptions, Duration> = Opt {
    meta: Meta::duration(
        "heartbeat_timeout",
        "heartbeat-timeout",
        Scope::Tunnel,
        "60s",
        "An idle tunnel that heard nothing for this long is dead.",
    ),
    get: |t| Some(t.policy.heartbeat_timeout),
    set: |t, v| t.policy.heartbeat_timeout = v,
};

const SECRET_FILE: Opt<TunnelOptions, SecretFile> = Opt {
    meta: Meta::new(
        "secret_file",
        "secret-file",
        Scope::Own(RELAY_AGENT),
        Kind::SecretFile,
        Required,
        "PATH",
        "File holding the pre-shared secret (at least 32 bytes).",
    ),
    get: |t| {
        Some(SecretFile {
            path: t.secret_file.clone(),
            secret: t.secret.clone(),
        })
    },
    set: |t, v| {
        t.secret_file = v.path;
        t.secret = v.secret;
    },
};

/// The options relay and agent listeners share (the secret file last).
pub const TUNNEL: &[&dyn Setting<TunnelOptions>] = &[
    &HANDSHAKE_TIMEOUT,
    &HEARTBEAT_INTERVAL,
    &HEARTBEAT_TIMEOUT,
    &TUNNEL_TLS,
    &SECRET_FILE,
];
