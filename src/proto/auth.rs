//! The pre-shared secret and the HMAC-SHA256 proofs of the tunnel handshake.
//!
//! Each side proves it knows the secret without sending it: the agent's proof covers the
//! relay's fresh nonce (so a recorded handshake cannot be replayed), its own nonce, the
//! service name and the role; the relay answers with the same MAC under its own role, so
//! the agent knows it talks to the real relay. Proofs are compared in constant time.
//!
//! Version 1 (plain tunnels) covers only those; version 2 (tunnels over TLS) also covers
//! the TLS channel's exporter value (RFC 9266 `tls-exporter`), so a man in the middle
//! terminating TLS on both sides holds two channels with two values and cannot relay a
//! proof from one to the other ([`Channel`]).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes in a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes in a proof (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;
/// The shortest secret accepted.
pub const MIN_SECRET: usize = 32;

/// Bytes in a TLS channel binding (the exporter value).
pub const BINDING_LEN: usize = 32;

/// The channel a handshake runs on, as far as the proofs are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Plain TCP: protocol version 1, proofs over the nonces, name and role.
    Plain,
    /// TLS: protocol version 2, proofs also over this channel's exporter value.
    Tls([u8; BINDING_LEN]),
}

impl Channel {
    /// The protocol version spoken on this channel (1 plain, 2 TLS).
    pub fn version(&self) -> u8 {
        match self {
            Channel::Plain => 1,
            Channel::Tls(_) => 2,
        }
    }
}

/// Which side a proof speaks for; part of the MAC input, so one side's proof never
/// passes as the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The NAT side, proving itself to the relay.
    Agent,
    /// The public side, answering the agent.
    Relay,
}

impl Role {
    fn label(self, channel: &Channel) -> &'static [u8] {
        match (self, channel) {
            (Role::Agent, Channel::Plain) => b"tcpbridge-v1 agent",
            (Role::Relay, Channel::Plain) => b"tcpbridge-v1 relay",
            (Role::Agent, Channel::Tls(_)) => b"tcpbridge-v2 agent",
            (Role::Relay, Channel::Tls(_)) => b"tcpbridge-v2 relay",
        }
    }
}

/// The pre-shared secret. Its `Debug` never shows the bytes.
/// Equality (for comparing configurations on reload) is not constant-time; proofs are
/// checked with the constant-time `verify`. The default, empty, is a placeholder of a
/// configuration being built: a secret file always yields at least [`MIN_SECRET`] bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Why a secret file's contents were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// Empty after trimming white space.
    Empty,
    /// Fewer than [`MIN_SECRET`] bytes.
    TooShort(usize),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => write!(f, "the secret is empty"),
            SecretError::TooShort(n) => write!(
                f,
                "the secret is {n} bytes; at least {MIN_SECRET} are required \
                 (make one with `tcpbridge gen-secret`)"
            ),
        }
    }
}

impl Secret {
    /// The secret in a file's contents: surrounding white space (a trailing newline) is
    /// not part of it. At least [`MIN_SECRET`] bytes.
    pub fn from_file_contents(contents: &[u8]) -> Result<Secret, SecretError> {
        let trimmed = contents.trim_ascii();
        match trimmed.len() {
            0 => Err(SecretError::Empty),
            n if n < MIN_SECRET => Err(SecretError::TooShort(n)),
            _ => Ok(Secret(trimmed.to_vec())),
        }
    }

    /// The proof `role` gives for this handshake on `channel`.
    pub fn proof(
        &self,
        role: Role,
        channel: &Channel,
        relay_nonce: &[u8; NONCE_LEN],
        agent_nonce: &[u8; NONCE_LEN],
        service: &str,
    ) -> [u8; PROOF_LEN] {
        self.mac(role, channel, relay_nonce, agent_nonce, service)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a proof made on `channel`, in constant time.
    pub fn verify(
        &self,
        role: Role,
        channel: &Channel,
        relay_nonce: &[u8; NONCE_LEN],
        agent_nonce: &[u8; NONCE_LEN],
        service: &str,
        proof: &[u8],
    ) -> bool {
        self.mac(role, channel, relay_nonce, agent_nonce, service)
            .verify_slice(proof)
            .is_ok()
    }

    fn mac(
        &self,
        role: Role,
        channel: &Channel,
        relay_nonce: &[u8; NONCE_LEN],
        agent_nonce: &[u8; NONCE_LEN],
        service: &str,
    ) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(role.label(channel));
        if let Channel::Tls(binding) = channel {
            mac.update(binding);
        }
        mac.update(relay_nonce);
        mac.update(agent_nonce);
        mac.update(&[service.len() as u8]);
        mac.update(service.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_file_contents(b"0123456789abcdef0123456789abcdef\n").expect("valid")
    }

    #[test]
    fn short_and_empty_secrets_are_refused() {
        assert_eq!(
            Secret::from_file_contents(b"  \n").map(|_| ()),
            Err(SecretError::Empty)
        );
        assert_eq!(
            Secret::from_file_contents(b"short\n").map(|_| ()),
            Err(SecretError::TooShort(5))
        );
    }

    #[test]
    fn trailing_newline_is_not_part_of_the_secret() {
        let a = secret();
        let b = Secret::from_file_contents(b"0123456789abcdef0123456789abcdef").expect("valid");
        let (r, g) = ([1u8; 32], [2u8; 32]);
        assert_eq!(
            a.proof(Role::Agent, &Channel::Plain, &r, &g, "ssh"),
            b.proof(Role::Agent, &Channel::Plain, &r, &g, "ssh")
        );
    }

    #[test]
    fn proofs_bind_role_nonces_and_service() {
        let s = secret();
        let (r, g) = ([1u8; 32], [2u8; 32]);
        let p = s.proof(Role::Agent, &Channel::Plain, &r, &g, "ssh");
        assert!(s.verify(Role::Agent, &Channel::Plain, &r, &g, "ssh", &p));
        assert!(
            !s.verify(Role::Relay, &Channel::Plain, &r, &g, "ssh", &p),
            "role"
        );
        assert!(
            !s.verify(Role::Agent, &Channel::Plain, &[9u8; 32], &g, "ssh", &p),
            "relay nonce"
        );
        assert!(
            !s.verify(Role::Agent, &Channel::Plain, &r, &[9u8; 32], "ssh", &p),
            "agent nonce"
        );
        assert!(
            !s.verify(Role::Agent, &Channel::Plain, &r, &g, "web", &p),
            "service"
        );
        assert!(
            !s.verify(Role::Agent, &Channel::Plain, &r, &g, "ssh", &p[..31]),
            "truncated"
        );
    }

    #[test]
    fn another_secret_gives_another_proof() {
        let other = Secret::from_file_contents(&[b'x'; 40]).expect("valid");
        let (r, g) = ([1u8; 32], [2u8; 32]);
        let p = secret().proof(Role::Agent, &Channel::Plain, &r, &g, "ssh");
        assert!(!other.verify(Role::Agent, &Channel::Plain, &r, &g, "ssh", &p));
    }

    #[test]
    fn version_two_proofs_bind_the_channel() {
        let s = secret();
        let (r, g) = ([1u8; 32], [2u8; 32]);
        let (a, b) = (Channel::Tls([7u8; 32]), Channel::Tls([8u8; 32]));
        assert_eq!((Channel::Plain.version(), a.version()), (1, 2));
        let p = s.proof(Role::Agent, &a, &r, &g, "ssh");
        assert!(s.verify(Role::Agent, &a, &r, &g, "ssh", &p));
        assert!(
            !s.verify(Role::Agent, &b, &r, &g, "ssh", &p),
            "other channel"
        );
        assert!(
            !s.verify(Role::Agent, &Channel::Plain, &r, &g, "ssh", &p),
            "v1"
        );
        assert!(!s.verify(Role::Relay, &a, &r, &g, "ssh", &p), "role");
        let plain = s.proof(Role::Agent, &Channel::Plain, &r, &g, "ssh");
        assert!(
            !s.verify(Role::Agent, &a, &r, &g, "ssh", &plain),
            "v1 as v2"
        );
        assert_ne!(
            s.proof(Role::Relay, &a, &r, &g, "ssh"),
            s.proof(Role::Relay, &b, &r, &g, "ssh")
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", secret()), "Secret(32 bytes)");
    }
}
