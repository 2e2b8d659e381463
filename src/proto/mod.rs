//! Wire protocols, as pure incremental parsers and builders: bytes in, values out, no
//! sockets: the agent–relay tunnel protocol (`docs/protocol.md`), the metrics endpoint's
//! HTTP requests, and the PROXY protocol (`docs/proxy-protocol.md`).

pub mod auth;
pub mod http;
pub mod proxy;
pub mod tunnel;
