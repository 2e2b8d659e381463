//! SIGHUP: apply a new configuration without touching live sessions, all or nothing.
//!
//! [`plan`] does every step that can fail, and nothing the running configuration can see:
//! it decides what each new listener updates (`config::reload`), builds the mode states
//! that cannot be kept (an agent's resolver thread), binds the new addresses, and
//! registers the new ports with the poller, held and not yet accepting. If any step
//! fails, what the plan made is dropped (sockets closed) and the running configuration
//! is exactly as it was. [`commit`] then cannot fail: it closes the ports no longer
//! wanted, gives the held ports to their listeners, updates, adds and removes listeners.
//!
//! Listeners are matched by name. A listener whose options changed takes them for new
//! sessions only: each session holds the policy it started with. A relay or agent keeps
//! its tunnels when only limits and timeouts changed; a new secret, service list or
//! relay address starts it afresh. Process-wide settings need a restart, and so does a
//! changed `reuse_port` on an address kept open (the socket keeps its SO_REUSEPORT; a
//! warning says so when the plan is committed).

use std::net::SocketAddr;

use log::{info, warn};
use std::time::Instant;

use mio::Registry;

use super::listeners::{Listener, Listeners};
use super::mode::ModeState;
use super::port::{on_off, Port, Role};
use crate::config::reload::{keeps_state, match_ports, reuse_port_kept, OpenPort, WantedPort};
use crate::config::{self, Config, Mode, MAX_LISTENERS};
use crate::os::net::describe;

/// The (role, address) pairs a listener listens on.
pub(super) fn wanted(listener: &config::Listener) -> Vec<(Role, SocketAddr)> {
    match &listener.mode {
        Mode::Forward(f) => f.listen.iter().map(|&a| (Role::Listen, a)).collect(),
        Mode::Connect(d) | Mode::Socks(d) => d.listen.iter().map(|&a| (Role::Listen, a)).collect(),
        Mode::Relay(r) => std::iter::once((Role::Tunnel, r.tunnel_listen))
            .chain(
                r.public
                    .iter()
                    .enumerate()
                    .map(|(n, s)| (Role::Public(n, s.name.clone()), s.addr)),
            )
            .collect(),
        Mode::Agent(_) => Vec::new(),
    }
}

/// Where one port of a new listener comes from: an open port (slot) or a held one.
#[derive(Debug)]
struct PortPlan {
    slot: usize,
    role: Role,
    configured: SocketAddr,
    held: bool,
}

/// What one listener of the new configuration becomes.
#[derive(Debug)]
enum Fate {
    /// It updates the listener in this slot; with a fresh mode state when the old one
    /// cannot serve the new options.
    Update(usize, Option<ModeState>),
    /// A new listener.
    Add(ModeState),
}

/// Everything a reload will do, with every fallible step done.
#[derive(Debug)]
pub(super) struct Plan {
    listeners: Vec<(config::Listener, Fate, Vec<PortPlan>)>,
    /// Held ports, to drop if the plan is abandoned.
    held: Vec<usize>,
    /// What stays as it was until a restart, logged when the plan is committed.
    restart: Vec<String>,
}

/// Plans `cfg` against the running `listeners`. On error nothing has changed.
pub(super) fn plan(
    listeners: &mut Listeners,
    registry: &Registry,
    cfg: Config,
    now: Instant,
) -> Result<Plan, String> {
    let mut plan = Plan {
        listeners: Vec::with_capacity(cfg.listeners.len()),
        held: Vec::new(),
        restart: Vec::new(),
    };
    let result = fill(&mut plan, listeners, registry, cfg, now);
    match result {
        Ok(()) => Ok(plan),
        Err(why) => {
            abandon(plan, listeners, registry);
            Err(why)
        }
    }
}

/// Drops what a plan made: its held ports (closed; no new port is left bound).
pub(super) fn abandon(plan: Plan, listeners: &mut Listeners, registry: &Registry) {
    for slot in plan.held {
        listeners.drop_port(slot, registry);
    }
}

fn fill(
    plan: &mut Plan,
    listeners: &mut Listeners,
    registry: &Registry,
    cfg: Config,
    now: Instant,
) -> Result<(), String> {
    let mut slots_needed = listeners.slab.len();
    let mut fates = Vec::with_capacity(cfg.listeners.len());
    for l in &cfg.listeners {
        let slot = listeners.slab.iter().find(|(_, x)| x.name() == l.name);
        let fate = match slot {
            Some((s, old)) if keeps_state(&old.config.mode, &l.mode) => Fate::Update(s, None),
            Some((s, _)) => Fate::Update(s, Some(fresh(l, now)?)),
            None => {
                slots_needed += 1;
                Fate::Add(fresh(l, now)?)
            }
        };
        fates.push(fate);
    }
    if slots_needed > MAX_LISTENERS {
        return Err(format!(
            "more than {MAX_LISTENERS} listeners, counting removed ones still draining"
        ));
    }
    // Ports: keep the open ones the new configuration still wants, bind the others.
    let open_slots: Vec<usize> = listeners.ports.iter().map(|(s, _)| s).collect();
    let open_roles: Vec<String> = listeners
        .ports
        .iter()
        .map(|(_, p)| p.role.ready_name())
        .collect();
    let open: Vec<OpenPort<'_>> = listeners
        .ports
        .iter()
        .zip(&open_roles)
        .map(|((_, p), role)| OpenPort {
            listener: p
                .listener
                .and_then(|l| listeners.slab.get(l))
                .map_or("", Listener::name),
            role,
            configured: p.configured,
            bound: p.addr,
            reuse_port: p.reuse_port,
        })
        .collect();
    let wanted_by: Vec<Vec<(Role, SocketAddr)>> = cfg.listeners.iter().map(wanted).collect();
    let wanted_roles: Vec<Vec<String>> = wanted_by
        .iter()
        .map(|ports| ports.iter().map(|(role, _)| role.ready_name()).collect())
        .collect();
    let flat: Vec<WantedPort<'_>> = cfg
        .listeners
        .iter()
        .zip(wanted_by.iter().zip(&wanted_roles))
        .flat_map(|(l, (ports, roles))| {
            ports.iter().zip(roles).map(|((_, addr), role)| WantedPort {
                listener: &l.name,
                role,
                addr: *addr,
                reuse_port: l.mode.reuse_port(),
            })
        })
        .collect();
    let kept = match_ports(&open, &flat);
    for (listener, addr, keeps) in reuse_port_kept(&open, &flat, &kept) {
        plan.restart.push(format!(
            "reload: listener {listener}: reuse_port changed; {addr} stays open with \
             SO_REUSEPORT {} until a restart",
            on_off(keeps)
        ));
    }
    let mut bound = Vec::new();
    let ports = flat.iter().zip(wanted_by.iter().flatten());
    for ((w, (role, addr)), keep) in ports.zip(&kept) {
        match keep {
            Some(i) => bound.push(PortSource::Open(open_slots[*i])),
            None => {
                let port = Port::bind(role.clone(), *addr, w.reuse_port, &mut Vec::new())
                    .map_err(|e| format!("cannot bind {addr}: {}", describe(&e)))?;
                bound.push(PortSource::Bound(Box::new(port)));
            }
        }
    }
    // The last fallible step: register the new ports (held, not accepting yet).
    let mut sources = bound.into_iter();
    for ((l, fate), ports) in cfg.listeners.into_iter().zip(fates).zip(wanted_by) {
        let mut planned = Vec::with_capacity(ports.len());
        for (role, configured) in ports {
            let (slot, held) = match sources.next() {
                Some(PortSource::Open(slot)) => (slot, false),
                Some(PortSource::Bound(port)) => {
                    let addr = port.addr;
                    let slot = listeners
                        .hold_port(*port, registry)
                        .map_err(|e| format!("cannot listen on {addr}: {}", describe(&e)))?;
                    plan.held.push(slot);
                    (slot, true)
                }
                None => return Err("reload: ports out of step".into()),
            };
            planned.push(PortPlan {
                slot,
                role,
                configured,
                held,
            });
        }
        plan.listeners.push((l, fate, planned));
    }
    Ok(())
}

/// A wanted port: an open one kept, or a freshly bound one.
enum PortSource {
    Open(usize),
    Bound(Box<Port>),
}

/// A fresh mode state for `l`.
fn fresh(l: &config::Listener, now: Instant) -> Result<ModeState, String> {
    ModeState::new(l, now).map_err(|e| format!("listener {}: {e}", l.name))
}

/// Applies a plan; cannot fail. `close` ends a listener's mode state (its tunnels and
/// waiting clients, whose closes it records). Returns the listeners removed: the caller
/// forgets each once their clients' closes are recorded.
pub(super) fn commit(
    plan: Plan,
    listeners: &mut Listeners,
    registry: &Registry,
    mut close: impl FnMut(&mut Listeners, usize),
) -> Vec<usize> {
    for line in &plan.restart {
        warn!("{line}");
    }
    let kept: Vec<usize> = plan
        .listeners
        .iter()
        .flat_map(|(_, _, ports)| ports.iter().map(|p| p.slot))
        .collect();
    let dropped: Vec<usize> = listeners
        .ports
        .iter()
        .map(|(slot, _)| slot)
        .filter(|slot| !kept.contains(slot))
        .collect();
    for slot in dropped {
        if let Some(p) = listeners.ports.get(slot) {
            info!("reload: closing {}", p.addr);
        }
        listeners.drop_port(slot, registry);
    }
    let names: Vec<String> = plan
        .listeners
        .iter()
        .map(|(c, _, _)| c.name.clone())
        .collect();
    for (config, fate, ports) in plan.listeners {
        let l = match fate {
            Fate::Update(l, fresh) => {
                if let Some(mode) = fresh {
                    // The old state's tunnels and waiting clients cannot serve the new one.
                    close(listeners, l);
                    if let Some(x) = listeners.slab.get_mut(l) {
                        x.mode = mode;
                    }
                }
                if let Some(x) = listeners.slab.get_mut(l) {
                    if x.config != config {
                        info!("reload: listener {} updated", config.name);
                    }
                    x.update(config);
                }
                l
            }
            Fate::Add(mode) => {
                info!("reload: listener {} added", config.name);
                listeners.slab.insert(Listener::new(config, mode))
            }
        };
        for p in ports {
            if let Some(port) = listeners.ports.get_mut(p.slot) {
                if p.held {
                    info!("reload: listening on {}", port.addr);
                }
                port.role = p.role;
                port.configured = p.configured;
            }
            listeners.activate(p.slot, l);
        }
    }
    let gone: Vec<usize> = listeners
        .slab
        .iter()
        .filter(|(_, l)| !l.closed && !names.iter().any(|n| n == l.name()))
        .map(|(slot, _)| slot)
        .collect();
    for &l in &gone {
        if let Some(x) = listeners.slab.get_mut(l) {
            info!("reload: listener {} removed", x.name());
            x.closed = true;
        }
        close(listeners, l);
    }
    gone
}
