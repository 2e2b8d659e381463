//! Start-up: the ports of a configuration bound before the loop starts (adopting sockets
//! passed by socket activation), and the lines that describe each listener.

use std::io;
use std::net::SocketAddr;

use super::metrics::Metrics;
use super::port::Port;
use super::reload::wanted;
use super::sessions;
use crate::config::{Config, Mode};

/// The ports of a configuration, bound before the loop starts.
#[derive(Debug)]
pub struct Bound {
    /// Per listener, in configuration order.
    pub(super) ports: Vec<Vec<Port>>,
    pub(super) metrics: Option<Metrics>,
}

impl Bound {
    /// The bound addresses of listener `n` (port 0 resolved).
    pub fn addresses(&self, n: usize) -> Vec<SocketAddr> {
        self.ports
            .get(n)
            .map(|ports| ports.iter().map(|p| p.addr).collect())
            .unwrap_or_default()
    }
}

/// Binds every port of `cfg`, adopting inherited sockets (socket activation) whose
/// address matches. The error names the address that failed.
pub fn bind(
    cfg: &Config,
    inherited: &mut Vec<std::net::TcpListener>,
) -> Result<Bound, (SocketAddr, io::Error)> {
    let ports = cfg
        .listeners
        .iter()
        .map(|l| {
            let reuse_port = l.mode.reuse_port();
            wanted(l)
                .into_iter()
                .map(|(role, addr)| {
                    Port::bind(role, addr, reuse_port, inherited).map_err(|e| (addr, e))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metrics = match cfg.global.metrics_listen {
        Some(addr) => Some(Metrics::bind(addr).map_err(|e| (addr, e))?),
        None => None,
    };
    Ok(Bound { ports, metrics })
}

/// Bytes of state one session costs besides its buffers (slab entry, heap entry).
pub fn session_overhead() -> usize {
    sessions::overhead()
}

/// One start-up line per listener: what it does, on which bound addresses.
pub fn describe(config: &Config, bound: &Bound) -> Vec<String> {
    let join = |addrs: &[SocketAddr]| {
        let all: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        all.join(", ")
    };
    let mut lines = Vec::with_capacity(config.listeners.len());
    for (n, l) in config.listeners.iter().enumerate() {
        let addrs = bound.addresses(n);
        let what = match &l.mode {
            Mode::Forward(f) => {
                let all: Vec<SocketAddr> =
                    f.upstreams.iter().flat_map(|u| u.addrs.clone()).collect();
                format!("{} -> {}", join(&addrs), join(&all))
            }
            Mode::Relay(r) => {
                let names: Vec<&str> = r.public.iter().map(|s| s.name.as_str()).collect();
                format!(
                    "tunnels and public {} on {}",
                    names.join(", "),
                    join(&addrs)
                )
            }
            Mode::Connect(d) | Mode::Socks(d) => {
                let ports = if matches!(l.mode, Mode::Connect(_)) {
                    "port 443"
                } else {
                    "any port"
                };
                let users = match d.credentials.len() {
                    0 => "no credentials".to_string(),
                    n => format!("{n} users"),
                };
                let clients = match d.client_allow.len() {
                    0 => "any client".to_string(),
                    n => format!("clients in {n} blocks"),
                };
                format!(
                    "{} -> destinations the clients name: public addresses on {ports}, \
                     {} allow and {} deny rules; {users}; {clients}",
                    join(&addrs),
                    d.allow.len(),
                    d.deny.len()
                )
            }
            Mode::Agent(a) => {
                let services: Vec<String> = a
                    .services
                    .iter()
                    .map(|s| format!("{}={}", s.name, s.addr))
                    .collect();
                format!(
                    "relay {}; services {}; pool {}",
                    a.relay,
                    services.join(" "),
                    a.pool
                )
            }
        };
        lines.push(format!("listener {} ({}): {what}", l.name, l.mode.word()));
    }
    lines
}
