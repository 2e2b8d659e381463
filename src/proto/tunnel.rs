//! The tunnel protocol between agent and relay, version 1 (see `docs/protocol.md`).
//!
//! Every reader here is incremental and frame-exact: [`want`](HelloReader::want) says how
//! many more bytes the current message needs, the caller reads at most that many, so no
//! byte past a message is ever consumed (after ATTACH and READY the tunnel is raw bytes).
//! Sizes are fixed and small; a bad magic, version, length or frame type is an error as
//! soon as its byte arrives.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::auth::{Role, Secret, NONCE_LEN, PROOF_LEN};

/// First bytes of the challenge and of the hello.
pub const MAGIC: [u8; 4] = *b"TCPB";
/// Protocol version spoken here.
pub const VERSION: u8 = 1;
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

/// The relay's first message.
pub fn challenge(relay_nonce: &[u8; NONCE_LEN]) -> [u8; CHALLENGE_LEN] {
    let mut out = [0u8; CHALLENGE_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5..].copy_from_slice(relay_nonce);
    out
}

/// The agent's hello for `service` (a valid name), answering `relay_nonce`.
pub fn hello(
    secret: &Secret,
    relay_nonce: &[u8; NONCE_LEN],
    agent_nonce: &[u8; NONCE_LEN],
    service: &str,
) -> Vec<u8> {
    debug_assert!(valid_service_name(service));
    let mut out = Vec::with_capacity(MAX_HELLO);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(agent_nonce);
    out.push(service.len() as u8);
    out.extend_from_slice(service.as_bytes());
    out.extend_from_slice(&secret.proof(Role::Agent, relay_nonce, agent_nonce, service));
    out
}

/// The relay's answer to a verified hello.
pub fn welcome(
    secret: &Secret,
    relay_nonce: &[u8; NONCE_LEN],
    hello: &Hello,
) -> [u8; 1 + PROOF_LEN] {
    let mut out = [0u8; 1 + PROOF_LEN];
    out[0] = frame::WELCOME;
    out[1..].copy_from_slice(&secret.proof(
        Role::Relay,
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

/// Bytes accumulated toward one message of known maximum size.
#[derive(Debug, Clone)]
struct Accum<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Accum<N> {
    fn new() -> Self {
        Accum {
            buf: [0u8; N],
            len: 0,
        }
    }

    /// Appends what fits below `total`; returns how many bytes were taken.
    fn push(&mut self, bytes: &[u8], total: usize) -> usize {
        let n = bytes.len().min(total.saturating_sub(self.len));
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }
}

fn check_magic_and_version(buf: &[u8], len: usize) -> Result<(), ProtocolError> {
    let seen = len.min(4);
    if buf[..seen] != MAGIC[..seen] {
        return Err(ProtocolError::BadMagic);
    }
    if len > 4 && buf[4] != VERSION {
        return Err(ProtocolError::BadVersion(buf[4]));
    }
    Ok(())
}

/// An agent's hello as the relay read it; not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The agent's fresh nonce.
    pub agent_nonce: [u8; NONCE_LEN],
    /// The service the agent offers a tunnel for.
    pub service: String,
    /// The agent's proof.
    pub proof: [u8; PROOF_LEN],
}

impl Hello {
    /// True when the proof is right for this relay nonce (constant-time).
    pub fn verify(&self, secret: &Secret, relay_nonce: &[u8; NONCE_LEN]) -> bool {
        secret.verify(
            Role::Agent,
            relay_nonce,
            &self.agent_nonce,
            &self.service,
            &self.proof,
        )
    }
}

/// Reads the agent's hello (relay side).
#[derive(Debug, Clone)]
pub struct HelloReader(Accum<MAX_HELLO>);

impl Default for HelloReader {
    fn default() -> Self {
        HelloReader::new()
    }
}

impl HelloReader {
    /// Nothing read yet.
    pub fn new() -> HelloReader {
        HelloReader(Accum::new())
    }

    fn total(&self) -> usize {
        if self.0.len < HELLO_HEAD {
            HELLO_HEAD
        } else {
            HELLO_HEAD + usize::from(self.0.buf[HELLO_HEAD - 1]) + PROOF_LEN
        }
    }

    /// Bytes still needed (never zero before the hello is complete).
    pub fn want(&self) -> usize {
        self.total() - self.0.len
    }

    /// Takes bytes (at most [`want`](Self::want) are used); the hello once complete.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<Hello>, ProtocolError> {
        while !bytes.is_empty() {
            let total = self.total();
            let n = self.0.push(bytes, total);
            bytes = &bytes[n..];
            let a = &self.0;
            check_magic_and_version(&a.buf, a.len)?;
            if a.len == HELLO_HEAD {
                let name_len = usize::from(a.buf[HELLO_HEAD - 1]);
                if name_len == 0 || name_len > MAX_SERVICE {
                    return Err(ProtocolError::BadServiceName);
                }
            }
            if a.len >= HELLO_HEAD && a.len == self.total() {
                return self.finish().map(Some);
            }
            if n == 0 {
                break;
            }
        }
        Ok(None)
    }

    fn finish(&self) -> Result<Hello, ProtocolError> {
        let b = &self.0.buf;
        let name_len = usize::from(b[HELLO_HEAD - 1]);
        let name = &b[HELLO_HEAD..HELLO_HEAD + name_len];
        let service = std::str::from_utf8(name)
            .ok()
            .filter(|s| valid_service_name(s))
            .ok_or(ProtocolError::BadServiceName)?;
        let mut agent_nonce = [0u8; NONCE_LEN];
        agent_nonce.copy_from_slice(&b[5..5 + NONCE_LEN]);
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(&b[HELLO_HEAD + name_len..HELLO_HEAD + name_len + PROOF_LEN]);
        Ok(Hello {
            agent_nonce,
            service: service.to_string(),
            proof,
        })
    }
}

/// Reads the relay's challenge (agent side); yields the relay nonce.
#[derive(Debug, Clone)]
pub struct ChallengeReader(Accum<CHALLENGE_LEN>);

impl Default for ChallengeReader {
    fn default() -> Self {
        ChallengeReader::new()
    }
}

impl ChallengeReader {
    /// Nothing read yet.
    pub fn new() -> ChallengeReader {
        ChallengeReader(Accum::new())
    }

    /// Bytes still needed.
    pub fn want(&self) -> usize {
        CHALLENGE_LEN - self.0.len
    }

    /// Takes bytes; the relay nonce once complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<[u8; NONCE_LEN]>, ProtocolError> {
        self.0.push(bytes, CHALLENGE_LEN);
        check_magic_and_version(&self.0.buf, self.0.len)?;
        if self.0.len < CHALLENGE_LEN {
            return Ok(None);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.0.buf[5..]);
        Ok(Some(nonce))
    }
}

/// The relay's verdict on a hello, as the agent reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// WELCOME with the relay's proof (still to be verified by the agent).
    Welcome([u8; PROOF_LEN]),
    /// DENIED.
    Denied,
}

/// Reads WELCOME or DENIED (agent side).
#[derive(Debug, Clone)]
pub struct VerdictReader(Accum<{ 1 + PROOF_LEN }>);

impl Default for VerdictReader {
    fn default() -> Self {
        VerdictReader::new()
    }
}

impl VerdictReader {
    /// Nothing read yet.
    pub fn new() -> VerdictReader {
        VerdictReader(Accum::new())
    }

    /// Bytes still needed.
    pub fn want(&self) -> usize {
        if self.0.len == 0 {
            1
        } else {
            1 + PROOF_LEN - self.0.len
        }
    }

    /// Takes bytes; the verdict once complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Verdict>, ProtocolError> {
        if self.0.len == 0 {
            match bytes.first() {
                None => return Ok(None),
                Some(&frame::DENIED) => return Ok(Some(Verdict::Denied)),
                Some(&frame::WELCOME) => {}
                Some(&t) => return Err(ProtocolError::UnexpectedFrame(t)),
            }
        }
        self.0.push(bytes, 1 + PROOF_LEN);
        if self.0.len < 1 + PROOF_LEN {
            return Ok(None);
        }
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(&self.0.buf[1..]);
        Ok(Some(Verdict::Welcome(proof)))
    }
}

/// A frame the relay sends on an idle tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFrame {
    /// Still alive.
    Heartbeat,
    /// A client at this address is attached: raw bytes follow.
    Attach(SocketAddr),
}

/// Reads frames the relay sends on an idle tunnel (agent side).
#[derive(Debug, Clone)]
pub struct RelayFrameReader(Accum<MAX_ATTACH>);

impl Default for RelayFrameReader {
    fn default() -> Self {
        RelayFrameReader::new()
    }
}

impl RelayFrameReader {
    /// Between frames.
    pub fn new() -> RelayFrameReader {
        RelayFrameReader(Accum::new())
    }

    fn total(&self) -> usize {
        match self.0.len {
            0 => 1,
            1 => 2, // ATTACH: the family byte comes next
            _ if self.0.buf[1] == 4 => 1 + 1 + 4 + 2,
            _ => 1 + 1 + 16 + 2,
        }
    }

    /// Bytes still needed for the current frame.
    pub fn want(&self) -> usize {
        self.total() - self.0.len
    }

    /// Takes bytes; a frame once complete (the reader is then ready for the next one).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<RelayFrame>, ProtocolError> {
        while !bytes.is_empty() {
            if self.0.len == 0 {
                match bytes[0] {
                    frame::HEARTBEAT => return Ok(Some(RelayFrame::Heartbeat)),
                    frame::ATTACH => {}
                    t => return Err(ProtocolError::UnexpectedFrame(t)),
                }
            }
            let n = self.0.push(bytes, self.total());
            bytes = &bytes[n..];
            if self.0.len >= 2 && !matches!(self.0.buf[1], 4 | 6) {
                return Err(ProtocolError::BadAddressFamily(self.0.buf[1]));
            }
            if self.0.len >= 2 && self.0.len == self.total() {
                let b = &self.0.buf;
                let (ip, port_at) = if b[1] == 4 {
                    let o: [u8; 4] = [b[2], b[3], b[4], b[5]];
                    (IpAddr::V4(Ipv4Addr::from(o)), 6)
                } else {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&b[2..18]);
                    (IpAddr::V6(Ipv6Addr::from(o)), 18)
                };
                let port = u16::from_be_bytes([b[port_at], b[port_at + 1]]);
                self.0.len = 0;
                return Ok(Some(RelayFrame::Attach(SocketAddr::new(ip, port))));
            }
            if n == 0 {
                break;
            }
        }
        Ok(None)
    }
}

/// A frame the agent sends on a tunnel (one byte each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentFrame {
    /// Still alive.
    Heartbeat,
    /// The local service accepted: raw bytes follow.
    Ready,
    /// The local service refused.
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
