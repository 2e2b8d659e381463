//! Signals: SIGINT/SIGTERM start the drain (a second one exits at once), SIGHUP
//! reloads the configuration file (all or nothing, see `reload`), SIGUSR1 logs a stats
//! line.

use std::time::Instant;

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGUSR1};

use super::life::{notify, print_line};
use super::listeners::Listener;
use super::mode::Cx;
use super::{reload, Server, Stopped};
use crate::config::{self, reload::restart_needed, Source};

impl Server {
    /// Acts on the signals received since the last look.
    pub(super) fn on_signals(&mut self, now: Instant) {
        let mut stops = 0;
        let (mut reload, mut snapshot) = (false, false);
        for signal in self.signals.pending() {
            match signal {
                SIGHUP => reload = true,
                SIGUSR1 => snapshot = true,
                _ => stops += 1,
            }
        }
        if snapshot {
            let metrics = self
                .metrics
                .as_ref()
                .map_or((0, 0), |m| (m.requests, m.rejected));
            info!("{}", self.view(now, metrics).snapshot());
        }
        if stops == 0 {
            if reload && !self.life.stopping() {
                self.reload(now);
            }
            return;
        }
        if self.life.stopping() || stops > 1 {
            warn!(
                "second signal: exiting now, {} sessions cut",
                self.sessions.live()
            );
            self.life.stop = Some(Stopped::Forced);
            return;
        }
        notify("STOPPING=1");
        let ports: Vec<usize> = self.listeners.ports.iter().map(|(s, _)| s).collect();
        for slot in ports {
            self.listeners.drop_port(slot, self.poll.registry());
        }
        // The metrics endpoint stays open: the drain can be watched, and /healthz says 503.
        let all: Vec<usize> = self.listeners.slab.iter().map(|(l, _)| l).collect();
        for l in all {
            self.close_listener(l, now);
        }
        self.life.drain_until = Some(now + self.global.drain_timeout);
        info!(
            "stopping: listeners closed, {} sessions draining (up to {:?})",
            self.sessions.live(),
            self.global.drain_timeout
        );
    }

    /// Closes listener `l`: its tunnels and waiting clients go at once, its sessions
    /// finish (draining), and it is forgotten after the last one. Its ports must be gone.
    fn close_listener(&mut self, l: usize, now: Instant) {
        if let Some(x) = self.listeners.slab.get_mut(l) {
            x.closed = true;
        }
        self.with_mode(l, now, |m, cx| m.close(cx));
        self.listeners.forget_if_done(l, self.life.stopping());
    }

    /// SIGHUP: loads the configuration file again and applies it, all or nothing.
    /// Prints `RELOADED <fields>` or `RELOAD-FAILED <why>`.
    fn reload(&mut self, now: Instant) {
        let Source::File(path) = &self.source else {
            warn!("SIGHUP: started from flags, no configuration file to reload");
            return;
        };
        notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            crate::os::systemd::monotonic_usec()
        ));
        let planned = config::file::load(path)
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                let changed = restart_needed(&self.global, &cfg.global);
                if !changed.is_empty() {
                    warn!(
                        "reload: {} changed; these need a restart, the running values stay",
                        changed.join(", ")
                    );
                }
                reload::plan(&mut self.listeners, self.poll.registry(), cfg, now)
            });
        match planned {
            Ok(plan) => {
                let registry = self.poll.registry();
                let (deadlines, ids) = (&mut self.deadlines, &mut self.ids);
                let resolver = &mut self.resolver;
                let mut actions = Vec::new();
                let gone = reload::commit(plan, &mut self.listeners, registry, |listeners, l| {
                    if let Some(x) = listeners.slab.get_mut(l) {
                        let Listener {
                            mode,
                            counters,
                            policy,
                            config,
                            ..
                        } = x;
                        mode.close(&mut Cx {
                            registry,
                            deadlines: &mut *deadlines,
                            ids: &mut *ids,
                            resolver: &mut *resolver,
                            now,
                            listener: l,
                            policy,
                            sockets: &config.sockets,
                            counters,
                            actions: &mut actions,
                        });
                    }
                });
                // Record the closes of removed listeners' clients before forgetting them.
                self.apply(actions, now);
                for l in gone {
                    self.listeners.forget_if_done(l, false);
                }
                self.life.reloads += 1;
                let fields = self.ready_fields().join(" ");
                info!("reloaded the configuration: {fields}");
                print_line(&format!("RELOADED {fields}"));
            }
            Err(why) => {
                self.life.reload_failures += 1;
                error!("reload failed, the running configuration stays: {why}");
                print_line(&format!("RELOAD-FAILED {why}"));
            }
        }
        notify("READY=1");
    }
}
