//! The options of `connect` and `socks` listeners: where they listen, the destination
//! policy, who may use them, and the bounds of a client's handshake. Part of the table
//! of options (see the parent module).

use std::net::SocketAddr;

use crate::config::meta::{Fallback, Kind, Meta, Scope};
use crate::config::setting::{Opt, Setting};
use crate::config::Dynamic;

use Fallback::Required;

/// The modes whose clients name their destination.
pub(super) const DYNAMIC_MODES: Scope = Scope::Own(&["connect", "socks"]);

const LISTEN: Opt<Dynamic, Vec<SocketAddr>> = Opt {
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

/// The options of `connect` and `socks` listeners.
pub const DYNAMIC: &[&dyn Setting<Dynamic>] = &[&LISTEN];
