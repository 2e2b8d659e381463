//! The tunnel protocol between agent and relay (see `docs/protocol.md`): version 1 on
//! plain TCP, version 2 over TLS (the same messages, proofs bound to the TLS channel:
//! [`Channel`]). The version byte of the challenge and the hello says which.
//!
//! Every reader here is incremental and frame-exact: [`want`](HelloReader::want) says how
//! many more bytes the current message needs, the caller reads at most that many, so no
//! byte past a message is ever consumed (after ATTACH and READY the tunnel is raw bytes).
//! Sizes are fixed and small; a bad magic, version, length or frame type is an error as
//! soon as its byte arrives.

use std::net::{IpAddr, SocketAddr};

use super::auth::{Channel, Role, Secret, NONCE_LEN, PROOF_LEN};

mod readers;

pub use readers::{
    ChallengeReader, Hello, HelloReader, RelayFrame, RelayFrameReader, Verdict, VerdictReader,
};

/// First bytes of the challenge and of the hello.
pub const MAGIC: [u8; 4] = *b"TCPB";
/// Protocol version on plain tunnels (`Channel::Plain.version()`).
pub const VERSION: u8 = 1;
/// Protocol version on TLS tunnels (`Channel::Tls(_).version()`).
pub const VERSION_TLS: u8 = 2;
/// Longest service name.
pub const MAX_SERVICE: usize = 64;
/// Bytes in the relay's challenge: magic, version, relay nonce.
pub const CHALLENGE_LEN: usize = 4 + 1 + NONCE_LEN;
/// Bytes in the hello before the service name: magic, version, agent nonce, name length.
const HELLO_HEAD: usize = 4 + 1 + NONCE_LEN + 1;
/// Longest hello.
pub const MAX_HELLO: usize = HELLO_HEAD + MAX_SERVICE + PROOF_LEN;
/// Longest ATTACH frame: type, family, IPv6 address, port.
pub const MAX_ATTACH: usize = 1 + 1 + 16 + 2;

/// Frame types.
pub mod frame {
    /// relay → agent: authenticated; followed by the relay's proof.
    pub const WELCOME: u8 = 0x01;
    /// relay → agent: refused (no reason given); the relay closes.
    pub const DENIED: u8 = 0x02;
    /// either way on an idle tunnel: still alive.
    pub const HEARTBEAT: u8 = 0x10;
    /// relay → agent: a client is attached; followed by its address, then raw bytes.
    pub const ATTACH: u8 = 0x20;
    /// agent → relay: the service accepted; raw bytes follow.
    pub const READY: u8 = 0x21;
    /// agent → relay: the service refused; the agent closes.
    pub const REFUSED: u8 = 0x22;
}

/// A violation of the protocol. The relay answers every one the same way (DENIED or a
/// plain close), so a peer never learns which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// The first four bytes are not `TCPB`.
    BadMagic,
    /// A version this build does not speak.
    BadVersion(u8),
    /// A service name of length 0 or over 64, or with bytes outside `[A-Za-z0-9._-]`.
    BadServiceName,
    /// A frame type not allowed here.
    UnexpectedFrame(u8),
    /// An ATTACH address family other than 4 or 6.
    BadAddressFamily(u8),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::BadMagic => write!(f, "bad magic"),
            ProtocolError::BadVersion(v) => write!(f, "unsupported version {v}"),
            ProtocolError::BadServiceName => write!(f, "bad service name"),
            ProtocolError::UnexpectedFrame(t) => write!(f, "unexpected frame 0x{t:02x}"),
            ProtocolError::BadAddressFamily(a) => write!(f, "bad address family {a}"),
        }
    }
}

/// True for 1 to 64 bytes of `[A-Za-z0-9._-]`.
pub fn valid_service_name(name: &str) -> bool {
    (1..=MAX_SERVICE).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The relay's first message on `channel`.
pub fn challenge(channel: &Channel, relay_nonce: &[u8; NONCE_LEN]) -> [u8; CHALLENGE_LEN] {
    let mut out = [0u8; CHALLENGE_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = channel.version();
    out[5..].copy_from_slice(relay_nonce);
    out
}

/// The agent's hello for `service` (a valid name) on `channel`, answering `relay_nonce`.
pub fn hello(
    secret: &Secret,
    channel: &Channel,
    relay_nonce: &[u8; NONCE_LEN],
    agent_nonce: &[u8; NONCE_LEN],
    service: &str,
) -> Vec<u8> {
    debug_assert!(valid_service_name(service));
    let mut out = Vec::with_capacity(MAX_HELLO);
    out.extend_from_slice(&MAGIC);
    out.push(channel.version());
    out.extend_from_slice(agent_nonce);
    out.push(service.len() as u8);
    out.extend_from_slice(service.as_bytes());
    out.extend_from_slice(&secret.proof(Role::Agent, channel, relay_nonce, agent_nonce, service));
    out
}

/// The relay's answer to a verified hello on `channel`.
pub fn welcome(
    secret: &Secret,
    channel: &Channel,
    relay_nonce: &[u8; NONCE_LEN],
    hello: &Hello,
) -> [u8; 1 + PROOF_LEN] {
    let mut out = [0u8; 1 + PROOF_LEN];
    out[0] = frame::WELCOME;
    out[1..].copy_from_slice(&secret.proof(
        Role::Relay,
        channel,
        relay_nonce,
        &hello.agent_nonce,
        &hello.service,
    ));
    out
}

/// The ATTACH frame for a client at `addr`: the bytes and their count.
pub fn attach(addr: SocketAddr) -> ([u8; MAX_ATTACH], usize) {
    let mut out = [0u8; MAX_ATTACH];
    out[0] = frame::ATTACH;
    let n = match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = 4;
            out[2..6].copy_from_slice(&ip.octets());
            6
        }
        IpAddr::V6(ip) => {
            out[1] = 6;
            out[2..18].copy_from_slice(&ip.octets());
            18
        }
    };
    out[n..n + 2].copy_from_slice(&addr.port().to_be_bytes());
    (out, n + 2)
}

/// A frame the agent sends on a tunnel (one byte each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentFrame {
    /// Still alive.
    Heartbeat,
    /// The service (the agent's upstream) accepted: raw bytes follow.
    Ready,
    /// The service refused.
    Refused,
}

/// Reads one agent frame byte (relay side).
pub fn agent_frame(byte: u8) -> Result<AgentFrame, ProtocolError> {
    match byte {
        frame::HEARTBEAT => Ok(AgentFrame::Heartbeat),
        frame::READY => Ok(AgentFrame::Ready),
        frame::REFUSED => Ok(AgentFrame::Refused),
        t => Err(ProtocolError::UnexpectedFrame(t)),
    }
}

#[cfg(test)]
mod tests;
