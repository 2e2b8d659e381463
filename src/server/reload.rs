//! SIGHUP: load the configuration file again and apply it without touching live sessions.
//!
//! Listeners are matched by name. A new name opens a listener; a name that is gone closes
//! its listener (ports closed, tunnels and waiting clients dropped, sessions finish). A
//! listener whose options changed takes them for new sessions only: each session holds
//! the policy it started with. Ports are matched by address (configured, or the one a
//! port 0 was given; a port 0 only within the same listener and role), so an unchanged
//! address keeps its socket and its
//! backlog; new addresses are bound before anything is changed, so a bind failure leaves
//! the running configuration as it was. Process-wide settings need a restart.
//!
//! A relay or agent keeps its tunnels when only limits and timeouts changed; a new
//! secret, service list or relay address starts it afresh (agents reconnect).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use log::{error, info, warn};

use super::accept::{Port, Role};
use super::listener::{Kind, Listener};
use super::{notify, print_line, wanted, Server};
use crate::config::{self, Config, Global, Mode, Source};
use crate::os::net::describe;

/// Where a port of the new configuration comes from.
enum PortPlan {
    /// An open port, kept (slot), with its new role and configured address.
    Keep(usize, Role, SocketAddr),
    /// A freshly bound one.
    New(Port),
}

/// One listener of the new configuration: its config, the slot of the listener it
/// updates (if any), a fresh mode state when the old one cannot be kept, and its ports.
struct Plan {
    config: config::Listener,
    slot: Option<usize>,
    fresh: Option<Kind>,
    ports: Vec<PortPlan>,
}

impl Server {
    /// Loads the configuration file again and applies it; on failure the running
    /// configuration stays. Prints `RELOADED <fields>` or `RELOAD-FAILED <why>`.
    pub(super) fn reload(&mut self, now: Instant) {
        let Source::File(path) = &self.source else {
            warn!("SIGHUP: started from flags, no configuration file to reload");
            return;
        };
        notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            crate::systemd::monotonic_usec()
        ));
        let loaded = config::file::load(path).map_err(|e| e.to_string());
        match loaded.and_then(|cfg| self.apply(cfg, now)) {
            Ok(()) => {
                self.reloads += 1;
                let fields = self.ready_fields().join(" ");
                info!("reloaded the configuration: {fields}");
                print_line(&format!("RELOADED {fields}"));
            }
            Err(why) => {
                self.reload_failures += 1;
                error!("reload failed, the running configuration stays: {why}");
                print_line(&format!("RELOAD-FAILED {why}"));
            }
        }
        notify("READY=1");
    }

    /// Applies `cfg`: every fallible step (binding, new mode states) happens before the
    /// first change.
    fn apply(&mut self, cfg: Config, now: Instant) -> Result<(), String> {
        let changed = global_changes(&self.global, &cfg.global);
        if !changed.is_empty() {
            warn!(
                "reload: {} changed; these need a restart, the running values stay",
                changed.join(", ")
            );
        }
        let plans = self.plan(cfg.listeners)?;
        let kept: Vec<usize> = plans
            .iter()
            .flat_map(|p| p.ports.iter())
            .filter_map(|p| match p {
                PortPlan::Keep(slot, ..) => Some(*slot),
                PortPlan::New(_) => None,
            })
            .collect();
        let dropped: Vec<usize> = self
            .ports
            .iter()
            .map(|(slot, _)| slot)
            .filter(|slot| !kept.contains(slot))
            .collect();
        for slot in dropped {
            let mut port = self.ports.remove(slot);
            info!("reload: closing {}", port.addr);
            port.close(self.poll.registry());
        }
        let names: Vec<String> = plans.iter().map(|p| p.config.name.clone()).collect();
        for plan in plans {
            self.commit(plan, now).map_err(|e| describe(&e))?;
        }
        let gone: Vec<usize> = self
            .listeners
            .iter()
            .filter(|(_, l)| !l.closed && !names.iter().any(|n| n == l.name()))
            .map(|(slot, _)| slot)
            .collect();
        for l in gone {
            info!("reload: listener {} removed", self.listeners[l].name());
            self.close_listener(l, now);
        }
        Ok(())
    }

    /// Decides, for each new listener, what it updates and where its ports come from;
    /// binds new addresses and builds new mode states. Changes nothing.
    fn plan(&self, listeners: Vec<config::Listener>) -> Result<Vec<Plan>, String> {
        let mut claimed: Vec<usize> = Vec::new();
        let mut plans = Vec::with_capacity(listeners.len());
        let mut slots_needed = self.listeners.len();
        for cfg in listeners {
            let slot = self
                .listeners
                .iter()
                .find(|(_, l)| l.name() == cfg.name)
                .map(|(slot, _)| slot);
            let fresh = match slot.map(|s| &self.listeners[s]) {
                Some(old) if keeps_state(&old.config.mode, &cfg.mode) => None,
                _ => Some(self.new_kind(&cfg).map_err(|e| describe(&e))?),
            };
            if slot.is_none() {
                slots_needed += 1;
            }
            let mut ports = Vec::new();
            for (role, addr) in wanted(&cfg) {
                // The same configured address, or the address a port 0 was given.
                let same = |p: &Port| {
                    (addr.port() != 0 && p.addr == addr)
                        || p.configured == addr
                            && (addr.port() != 0
                                || (p.role.ready_name() == role.ready_name()
                                    && self
                                        .listeners
                                        .get(p.listener)
                                        .is_some_and(|l| l.name() == cfg.name)))
                };
                let found = self
                    .ports
                    .iter()
                    .find(|(slot, p)| !claimed.contains(slot) && same(p))
                    .map(|(slot, _)| slot);
                match found {
                    Some(slot) => {
                        claimed.push(slot);
                        ports.push(PortPlan::Keep(slot, role, addr));
                    }
                    None => ports.push(PortPlan::New(bind(role, addr)?)),
                }
            }
            plans.push(Plan {
                config: cfg,
                slot,
                fresh,
                ports,
            });
        }
        if slots_needed > super::token::MAX_LISTENERS {
            return Err(format!(
                "more than {} listeners, counting removed ones still draining",
                super::token::MAX_LISTENERS
            ));
        }
        Ok(plans)
    }

    /// Applies one listener's plan.
    fn commit(&mut self, plan: Plan, now: Instant) -> std::io::Result<()> {
        let Plan {
            config,
            slot,
            fresh,
            ports,
        } = plan;
        let l = match slot {
            Some(l) => {
                if let Some(kind) = fresh {
                    // The old state's tunnels and waiting clients cannot serve the new one.
                    self.close_listener(l, now);
                    if let Some(listener) = self.listeners.get_mut(l) {
                        listener.kind = kind;
                    }
                }
                if let Some(listener) = self.listeners.get_mut(l) {
                    if listener.config != config {
                        info!("reload: listener {} updated", config.name);
                    }
                    update(listener, config);
                    listener.closed = false;
                    l
                } else {
                    // Forgotten by close_listener (it had no sessions left): add it anew.
                    let kind = self.new_kind(&config)?;
                    self.listeners.insert(Listener::new(config, kind))
                }
            }
            None => {
                info!("reload: listener {} added", config.name);
                let kind = match fresh {
                    Some(kind) => kind,
                    None => self.new_kind(&config)?,
                };
                self.listeners.insert(Listener::new(config, kind))
            }
        };
        for port in ports {
            match port {
                PortPlan::Keep(slot, role, configured) => {
                    if let Some(p) = self.ports.get_mut(slot) {
                        p.listener = l;
                        p.role = role;
                        p.configured = configured;
                    }
                }
                PortPlan::New(port) => {
                    info!("reload: listening on {}", port.addr);
                    self.add_port(l, port)?;
                }
            }
        }
        Ok(())
    }
}

/// Binds a new port for a reload; the error is one line naming the address.
fn bind(role: Role, addr: SocketAddr) -> Result<Port, String> {
    Port::bind(role, addr, &mut Vec::new())
        .map_err(|e| format!("cannot bind {addr}: {}", describe(&e)))
}

/// Whether a relay or agent may keep its tunnels (and a forward its state) under `new`.
fn keeps_state(old: &Mode, new: &Mode) -> bool {
    match (old, new) {
        (Mode::Forward(_), Mode::Forward(_)) => true,
        (Mode::Relay(a), Mode::Relay(b)) => {
            a.tunnel.secret == b.tunnel.secret
                && a.public
                    .iter()
                    .map(|s| &s.name)
                    .eq(b.public.iter().map(|s| &s.name))
        }
        (Mode::Agent(a), Mode::Agent(b)) => {
            a.tunnel.secret == b.tunnel.secret
                && a.relay == b.relay
                && a.services
                    .iter()
                    .map(|s| &s.name)
                    .eq(b.services.iter().map(|s| &s.name))
        }
        _ => false,
    }
}

/// Gives a listener its new configuration: the policy for new sessions, limits, and the
/// mode's options.
fn update(listener: &mut Listener, config: config::Listener) {
    if *listener.policy != config.policy {
        listener.policy = Rc::new(config.policy);
    }
    match (&mut listener.kind, &config.mode) {
        (Kind::Forward(f), Mode::Forward(c)) => f.upstreams.clone_from(&c.upstreams),
        (Kind::Relay(r), Mode::Relay(c)) => r.update(c),
        (Kind::Agent(a), Mode::Agent(c)) => a.update(c),
        _ => {}
    }
    listener.config = config;
}

/// The process-wide settings that differ (they need a restart).
fn global_changes(old: &Global, new: &Global) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |differs: bool, name| {
        if differs {
            changed.push(name);
        }
    };
    check(old.buffer_size != new.buffer_size, "buffer_size");
    check(old.max_sessions != new.max_sessions, "max_sessions");
    check(old.pool_buffers != new.pool_buffers, "pool_budget");
    check(old.drain_timeout != new.drain_timeout, "drain_timeout");
    check(old.metrics_listen != new.metrics_listen, "metrics_listen");
    check(old.log_format != new.log_format, "log_format");
    check(old.log_rate != new.log_rate, "log_rate");
    changed
}
