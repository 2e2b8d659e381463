//! A listener's groups as operators see them: one view per member.

use std::time::Instant;

use super::Upstreams;
use crate::core::upstream::State;
use crate::stats::upstream::UpstreamView;

impl Upstreams {
    /// Every member as the views show it.
    pub(in crate::server::mode) fn views<'a>(
        &'a self,
        listener: &'a str,
        now: Instant,
    ) -> Vec<UpstreamView<'a>> {
        let mut out = Vec::new();
        for io in &self.groups {
            for (i, m) in io.members.iter().enumerate() {
                let target = io
                    .targets
                    .iter()
                    .zip(&io.resolved)
                    .find(|(_, r)| r.contains(&m.addr))
                    .map_or("-", |(t, _)| t.target.as_str());
                let (weight, backup) = io
                    .targets
                    .iter()
                    .find(|t| t.target == target)
                    .map_or((1, false), |t| (t.weight, t.backup));
                out.push(UpstreamView {
                    listener,
                    group: &io.name,
                    target,
                    addr: m.addr,
                    state: match io.group.state(i, now) {
                        Some(State::Up) | None => "up",
                        Some(State::Down) => "down",
                        Some(State::Ejected { .. }) => "ejected",
                    },
                    weight,
                    backup,
                    sessions: io.group.sessions(i),
                    ejections: io.group.ejections(i),
                    warm_idle: m.idle.len(),
                    counters: &m.counters,
                });
            }
        }
        out
    }
}
