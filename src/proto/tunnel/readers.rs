//! The incremental, frame-exact readers of the tunnel handshake and of idle tunnels:
//! each says how many more bytes its message needs ([`want`](HelloReader::want)), so no
//! byte past a message is ever consumed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    frame, valid_service_name, ProtocolError, CHALLENGE_LEN, HELLO_HEAD, MAGIC, MAX_ATTACH,
    MAX_HELLO, MAX_SERVICE, VERSION,
};
use crate::proto::auth::{Channel, Role, Secret, NONCE_LEN, PROOF_LEN};

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

fn check_magic_and_version(buf: &[u8], len: usize, version: u8) -> Result<(), ProtocolError> {
    let seen = len.min(4);
    if buf[..seen] != MAGIC[..seen] {
        return Err(ProtocolError::BadMagic);
    }
    if len > 4 && buf[4] != version {
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
    /// True when the proof is right for this relay nonce on `channel` (constant-time).
    pub fn verify(
        &self,
        secret: &Secret,
        channel: &Channel,
        relay_nonce: &[u8; NONCE_LEN],
    ) -> bool {
        secret.verify(
            Role::Agent,
            channel,
            relay_nonce,
            &self.agent_nonce,
            &self.service,
            &self.proof,
        )
    }
}

/// Reads the agent's hello (relay side).
#[derive(Debug, Clone)]
pub struct HelloReader(Accum<MAX_HELLO>, u8);

impl Default for HelloReader {
    fn default() -> Self {
        HelloReader::new()
    }
}

impl HelloReader {
    /// Nothing read yet; expects version 1 (plain tunnels).
    pub fn new() -> HelloReader {
        HelloReader::expecting(VERSION)
    }

    /// Nothing read yet; any version but `version` is an error.
    pub fn expecting(version: u8) -> HelloReader {
        HelloReader(Accum::new(), version)
    }

    /// Bytes of the hello read so far (a handshake's progress).
    pub fn received(&self) -> usize {
        self.0.len
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
            check_magic_and_version(&a.buf, a.len, self.1)?;
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
pub struct ChallengeReader(Accum<CHALLENGE_LEN>, u8);

impl Default for ChallengeReader {
    fn default() -> Self {
        ChallengeReader::new()
    }
}

impl ChallengeReader {
    /// Nothing read yet; expects version 1 (plain tunnels).
    pub fn new() -> ChallengeReader {
        ChallengeReader::expecting(VERSION)
    }

    /// Nothing read yet; any version but `version` is an error.
    pub fn expecting(version: u8) -> ChallengeReader {
        ChallengeReader(Accum::new(), version)
    }

    /// Bytes still needed.
    pub fn want(&self) -> usize {
        CHALLENGE_LEN - self.0.len
    }

    /// Takes bytes; the relay nonce once complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<[u8; NONCE_LEN]>, ProtocolError> {
        self.0.push(bytes, CHALLENGE_LEN);
        check_magic_and_version(&self.0.buf, self.0.len, self.1)?;
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
