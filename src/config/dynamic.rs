//! The options of a `connect` or `socks` listener as the server runs from them: where it
//! listens, its destination rules, who may use it, and the bounds of a handshake.

use std::net::SocketAddr;
use std::time::Duration;

use crate::core::credentials::Credentials;
use crate::core::policy::{Cidr, Rule};

/// `connect` and `socks`: each client names its destination (an HTTP CONNECT request,
/// a SOCKS5 request), which is checked against the destination policy before it is
/// dialed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dynamic {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// `--allow` rules: exceptions to the default deny of internal ranges and ports.
    pub allow: Vec<Rule>,
    /// `--deny` rules: more destinations refused.
    pub deny: Vec<Rule>,
    /// Clients allowed to use the proxy (empty: any).
    pub client_allow: Vec<Cidr>,
    /// The credentials file (absolute; read again on reload), if any.
    pub credentials_file: Option<String>,
    /// The users it lists (empty: no credentials asked for).
    pub credentials: Credentials,
    /// Absolute bound on a client's handshake, from accept to its whole request.
    pub handshake_timeout: Duration,
    /// Bound on the look-up of a destination's name.
    pub resolve_timeout: Duration,
    /// Most clients in their handshake (reading, resolving, dialing) at once.
    pub max_handshakes: usize,
    /// Most handshakes and sessions at once from one client address.
    pub max_sessions_per_client: usize,
}

impl Default for Dynamic {
    fn default() -> Dynamic {
        Dynamic {
            listen: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            client_allow: Vec::new(),
            credentials_file: None,
            credentials: Credentials::default(),
            handshake_timeout: Duration::from_secs(10),
            resolve_timeout: Duration::from_secs(5),
            max_handshakes: 256,
            max_sessions_per_client: 128,
        }
    }
}
