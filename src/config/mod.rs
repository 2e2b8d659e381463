//! Configuration: the plain structs the server runs from, and how they are built.
//!
//! A [`Config`] is process-wide settings ([`Global`]) plus one or more named
//! [`Listener`]s, each a mode with its own options. Every option is defined once, in
//! `options` (key, flag, default, bounds, parser, where it applies); `build` reads them
//! through one builder from any front end that implements [`build::Values`]: the command
//! line (the binary's `cli` module, one listener named after its mode) or a TOML file
//! (`file`, any number of listeners, errors with line and column). `sizing` turns a
//! configuration and the open-files limit into the session limit and the memory bound
//! that `run` and `check` both print. No clap types here.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::core::pool::Splice;
use crate::core::session::Policy;
use crate::core::tunnel::TunnelPolicy;
use crate::core::upstream::{Balance, HealthCheck};
use crate::proto::auth::Secret;

pub mod build;
mod dynamic;
pub mod file;
pub mod groups;
pub mod meta;
pub mod options;
pub mod parse;
pub mod proxy;
pub mod reload;
pub mod setting;
pub mod sizing;
pub mod sockets;
pub mod tls;
mod typed;

pub use dynamic::Dynamic;
pub use proxy::{ProxyAccept, ProxyProtocol};
pub use tls::{AgentTrust, PemFile, RelayIdentity, TunnelTls, WITHOUT_TLS};

/// Largest accepted duration (7 days).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest accepted ring buffer (16 MiB).
pub const MAX_BUFFER: usize = 16 << 20;
/// Largest accepted `max_sessions`.
pub const MAX_SESSIONS: usize = 1_000_000;
/// Largest accepted `pool` (agent).
pub const MAX_POOL: usize = 1024;
/// Most listeners in one process (a listener's slot fits the eight bits tokens give it).
pub const MAX_LISTENERS: usize = 256;
/// How long owed bytes may take to be acknowledged before an RST is sent anyway.
pub const RESET_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// A bad value: which option, which value, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option as the user wrote it: `--idle-timeout` or `idle_timeout`.
    pub flag: String,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value '{}' for {}: {}",
            self.value, self.flag, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Process-wide settings: shared by every listener, fixed for the life of the process
/// (a reload that changes them logs that a restart is needed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Global {
    /// Capacity of the smallest ring buffer in bytes (what small messages use).
    pub buffer_size: usize,
    /// Capacity of the largest ring buffer a pipe moving bulk may earn, and of a kernel
    /// pipe (0 until derived: 256 KiB, at least `buffer_size`).
    pub buffer_max: usize,
    /// Most sessions alive at once, over all listeners (as configured; `sizing` may
    /// lower it to fit the open-files limit).
    pub max_sessions: usize,
    /// Most bytes lent at once to ring buffers and kernel pipes (0 until derived: two
    /// smallest buffers per session).
    pub pool_budget: usize,
    /// When pipes splice through kernel pipes.
    pub splice: Splice,
    /// Most kernel pipes open at once (0 until derived: a quarter of `max_sessions`).
    pub max_pipes: usize,
    /// Bound on the graceful drain after SIGINT/SIGTERM.
    pub drain_timeout: Duration,
    /// Where the metrics endpoint listens, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log lines per second before lines are dropped (0: no limit).
    pub log_rate: u32,
}

impl Global {
    /// Worst-case bytes of ring buffers and kernel pipes: the pool budget.
    pub fn buffer_bound(&self) -> usize {
        self.pool_budget
    }
}

/// Where a configuration came from (a file can be reloaded on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A subcommand's flags: one listener.
    Flags,
    /// A TOML file.
    File(std::path::PathBuf),
}

/// One named listener: a mode, its addresses, and the options of its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique in the configuration; the `listener` label of metrics.
    pub name: String,
    /// Per-session timeouts and the reset policy.
    pub policy: Policy,
    /// Most sessions of this listener alive at once (within the global limit).
    pub max_sessions: Option<usize>,
    /// Keepalive and TCP_USER_TIMEOUT of its connections.
    pub sockets: sockets::SocketOptions,
    /// The mode and its settings.
    pub mode: Mode,
}

/// A named address: a relay's public listener or an agent's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// 1-64 bytes of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Where it listens (relay) or where it is dialed (agent): the first address.
    pub addr: SocketAddr,
    /// `HOST:PORT` as written (an agent looks a name up again every `dns_refresh`).
    pub target: String,
    /// Every address it resolved to when loaded (an agent's service group).
    pub addrs: Vec<SocketAddr>,
    /// An agent's service: the PROXY protocol header written first on each connection
    /// to it (`NAME=HOST:PORT,proxy=v1`), if any. Never set on a relay's.
    pub proxy: Option<ProxyProtocol>,
}

/// One upstream as configured: a forward's `upstream` entry (an agent's service is one
/// with weight 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `HOST:PORT` as written: a name is looked up again every `dns_refresh`.
    pub target: String,
    /// What it resolved to when the configuration was loaded (at least one address).
    pub addrs: Vec<SocketAddr>,
    /// Share of new sessions under the weighted policies (1-256, default 1).
    pub weight: u32,
    /// Used only when every other upstream is down.
    pub backup: bool,
    /// The PROXY protocol header written first on each connection to it, if any.
    pub proxy: Option<ProxyProtocol>,
}

/// How a group of upstreams is used: balancing, health, warm connections, look-ups.
/// A forward listener has one group; an agent has one per service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOptions {
    /// Which upstream a new session dials.
    pub balance: Balance,
    /// Most connect attempts per session (0: each upstream once).
    pub connect_tries: usize,
    /// Consecutive failed connects that eject an upstream (0: never).
    pub eject_after: u32,
    /// First ejection's length; doubled per ejection in a row, capped at 5 minutes.
    pub eject_time: Duration,
    /// Active health checks.
    pub health_check: HealthCheck,
    /// Time between two checks of one upstream.
    pub health_interval: Duration,
    /// Failed checks in a row that mark an upstream down.
    pub health_fall: u32,
    /// Passed checks in a row that mark it up again.
    pub health_rise: u32,
    /// Idle pre-connected connections kept per upstream address (0: none).
    pub warm: usize,
    /// Oldest a warm connection may be when lent (each one's limit drawn in 0.8-1x).
    pub warm_max_age: Duration,
    /// How often names are looked up again.
    pub dns_refresh: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> UpstreamOptions {
        UpstreamOptions {
            balance: Balance::Failover,
            connect_tries: 0,
            eject_after: 3,
            eject_time: Duration::from_secs(10),
            health_check: HealthCheck::Off,
            health_interval: Duration::from_secs(5),
            health_fall: 3,
            health_rise: 2,
            warm: 0,
            warm_max_age: Duration::from_secs(8),
            dns_refresh: Duration::from_secs(30),
        }
    }
}

/// `forward`: listen, dial an upstream per client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The upstreams, in the order given.
    pub upstreams: Vec<Upstream>,
    /// How they are balanced, checked, kept warm and looked up.
    pub group: UpstreamOptions,
    /// SO_REUSEPORT on the listening sockets: other processes may listen on them too.
    pub reuse_port: bool,
    /// PROXY headers accepted from clients.
    pub proxy_accept: ProxyAccept,
}

/// What relay and agent listeners share: the secret and the tunnels' timeouts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelOptions {
    /// The pre-shared secret.
    pub secret: Secret,
    /// The file it was read from (absolute; read again on reload).
    pub secret_file: String,
    /// Handshake and heartbeat timeouts.
    pub policy: TunnelPolicy,
    /// Whether tunnels run over TLS.
    pub tls: TunnelTls,
}

/// `relay`: the public side of NAT traversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Where agents connect.
    pub tunnel_listen: SocketAddr,
    /// Public listeners, one per service.
    pub public: Vec<Service>,
    /// How long a public client waits for an idle tunnel.
    pub pair_timeout: Duration,
    /// Most clients waiting per service.
    pub max_waiting: usize,
    /// Most idle tunnels per service.
    pub max_idle_tunnels: usize,
    /// Most connections in the handshake at once.
    pub max_handshakes: usize,
    /// The TLS identity presented to agents.
    pub identity: RelayIdentity,
    /// Secret and timeouts.
    pub tunnel: TunnelOptions,
    /// PROXY headers accepted from public clients.
    pub proxy_accept: ProxyAccept,
}

impl Default for Relay {
    fn default() -> Relay {
        Relay {
            tunnel_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            public: Vec::new(),
            pair_timeout: Duration::ZERO,
            max_waiting: 0,
            max_idle_tunnels: 0,
            max_handshakes: 0,
            identity: RelayIdentity::default(),
            tunnel: TunnelOptions::default(),
            proxy_accept: ProxyAccept::default(),
        }
    }
}

/// `agent`: the NAT side of NAT traversal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    /// The relay's tunnel address, `HOST:PORT`, resolved again before each reconnect.
    pub relay: String,
    /// The services the relay may reach, dialed on pairing.
    pub services: Vec<Service>,
    /// Idle tunnels kept per service.
    pub pool: usize,
    /// How each service's addresses are balanced, checked, kept warm and looked up.
    pub group: UpstreamOptions,
    /// Exit when a tunnel is lost or cannot be opened (for supervisors).
    pub exit_on_disconnect: bool,
    /// Cap of the reconnect backoff.
    pub backoff_max: Duration,
    /// What the relay's TLS identity must be.
    pub trust: AgentTrust,
    /// Secret and timeouts.
    pub tunnel: TunnelOptions,
}

/// What a listener does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Port forwarding.
    Forward(Forward),
    /// NAT traversal, public side.
    Relay(Relay),
    /// NAT traversal, NAT side.
    Agent(Agent),
    /// HTTP CONNECT tunnels to destinations the clients name.
    Connect(Dynamic),
    /// SOCKS5 tunnels to destinations the clients name.
    Socks(Dynamic),
}

/// The modes' words: subcommands, table names, the `mode` label of metrics.
pub const MODES: [&str; 5] = ["forward", "relay", "agent", "connect", "socks"];

impl Mode {
    /// The mode's word: `forward`, `relay` or `agent`.
    pub fn word(&self) -> &'static str {
        match self {
            Mode::Forward(_) => MODES[0],
            Mode::Relay(_) => MODES[1],
            Mode::Agent(_) => MODES[2],
            Mode::Connect(_) => MODES[3],
            Mode::Socks(_) => MODES[4],
        }
    }

    /// The options of a `connect` or `socks` listener.
    pub fn dynamic(&self) -> Option<&Dynamic> {
        match self {
            Mode::Connect(d) | Mode::Socks(d) => Some(d),
            _ => None,
        }
    }

    /// Whether its listening sockets get SO_REUSEPORT (forward's `reuse_port`).
    pub fn reuse_port(&self) -> bool {
        matches!(self, Mode::Forward(f) if f.reuse_port)
    }

    /// TLS tunnels the mode may hold besides its sessions' (a relay's idle tunnels and
    /// handshakes, an agent's idle tunnels); `None` when its tunnels are plain or it has
    /// none. Every session of a relay or agent with TLS is a TLS tunnel too.
    pub fn tls_tunnels(&self) -> Option<usize> {
        match self {
            Mode::Relay(r) if r.tunnel.tls == TunnelTls::On => {
                Some(r.public.len() * r.max_idle_tunnels + r.max_handshakes)
            }
            Mode::Agent(a) if a.tunnel.tls == TunnelTls::On => Some(a.services.len() * a.pool),
            _ => None,
        }
    }

    /// Sockets the mode holds besides its sessions': a relay's idle tunnels and
    /// handshakes, an agent's idle tunnels, and the upstream groups' warm connections and
    /// health checks.
    pub fn extra_sockets(&self) -> usize {
        let own = match self {
            Mode::Forward(_) => 0,
            Mode::Relay(r) => r.public.len() * r.max_idle_tunnels + r.max_handshakes,
            Mode::Agent(a) => a.services.len() * a.pool,
            // A handshake holds its client and up to two connects (Happy Eyeballs).
            Mode::Connect(d) | Mode::Socks(d) => d.max_handshakes.saturating_mul(3),
        };
        let checks = match self.group() {
            Some(opts) if opts.health_check != HealthCheck::Off => self.upstream_addresses(),
            _ => 0,
        };
        own.saturating_add(self.warm_sockets())
            .saturating_add(checks)
    }

    /// Warm connections the mode keeps open at most: `warm` per upstream address.
    pub fn warm_sockets(&self) -> usize {
        self.group().map_or(0, |opts| {
            opts.warm.saturating_mul(self.upstream_addresses())
        })
    }

    /// The options of the mode's upstream groups.
    pub fn group(&self) -> Option<&UpstreamOptions> {
        match self {
            Mode::Forward(f) => Some(&f.group),
            Mode::Relay(_) | Mode::Connect(_) | Mode::Socks(_) => None,
            Mode::Agent(a) => Some(&a.group),
        }
    }

    /// Upstream addresses over the mode's groups, as loaded.
    fn upstream_addresses(&self) -> usize {
        match self {
            Mode::Forward(f) => f.upstreams.iter().map(|u| u.addrs.len()).sum(),
            Mode::Relay(_) | Mode::Connect(_) | Mode::Socks(_) => 0,
            Mode::Agent(a) => a.services.iter().map(|s| s.addrs.len()).sum(),
        }
    }
}

/// Everything a process runs from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process-wide settings.
    pub global: Global,
    /// The listeners, in the order given.
    pub listeners: Vec<Listener>,
    /// Flags or a file.
    pub source: Source,
}
