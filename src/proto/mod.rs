//! Wire protocols, as pure incremental parsers and builders: bytes in, values out, no
//! sockets: the agent–relay tunnel protocol (`docs/protocol.md`), the metrics endpoint's
//! HTTP requests, the PROXY protocol (`docs/proxy-protocol.md`), and the requests of
//! the coming `connect` and `socks` modes (HTTP CONNECT, SOCKS5).

pub mod auth;
pub mod connect;
pub mod http;
pub mod proxy;
pub mod socks;
pub mod tunnel;
