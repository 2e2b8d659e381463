//! The PROXY protocol as configured: the version an upstream or an agent's service is
//! sent (`,proxy=v1|v2`), and the headers a listener accepts from clients
//! (`proxy_protocol_accept`, `proxy_protocol_trusted`, `proxy_protocol_timeout`).

use std::time::Duration;

use crate::core::policy::Cidr;

/// A version of the PROXY protocol (HAProxy's `doc/proxy-protocol.txt`): v1 is a line of
/// text, v2 a binary header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary form.
    V2,
}

impl ProxyProtocol {
    /// `v1` or `v2`, as written in flags and files.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
}

/// PROXY protocol headers accepted from clients (forward, and a relay's public ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAccept {
    /// Clients from `trusted` sources start with a header.
    pub accept: bool,
    /// Sources that must send one; any other must not.
    pub trusted: Vec<Cidr>,
    /// Deadline for the whole header, from the accept.
    pub timeout: Duration,
}

impl Default for ProxyAccept {
    fn default() -> ProxyAccept {
        ProxyAccept {
            accept: false,
            trusted: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}
