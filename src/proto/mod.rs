//! Wire protocols, as pure incremental parsers and builders: bytes in, values out, no
//! sockets. Today the agent–relay tunnel protocol (`docs/protocol.md`).

pub mod auth;
pub mod http;
pub mod tunnel;
