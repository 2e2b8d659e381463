//! `connect` and `socks` listeners: each client names its destination.
use crate::config::{Dynamic, Mode};

/// A `connect` or `socks` listener's own state.
#[derive(Debug)]
pub(super) struct DynamicState {
    opts: Dynamic,
}

impl DynamicState {
    pub(super) fn new(_mode: &Mode, opts: &Dynamic) -> DynamicState {
        DynamicState { opts: opts.clone() }
    }
}

impl DynamicState {
    pub(super) fn close(&mut self, _cx: &mut super::Cx<'_>) {}

    pub(super) fn entries(&self) -> usize {
        0
    }
}
