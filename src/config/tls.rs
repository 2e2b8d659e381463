//! TLS settings of tunnels: whether relay and agent speak TLS (`tunnel_tls`), the relay's
//! identity files and what the agent accepts from the relay. Plain values: the files are
//! read (and checked by building their TLS configuration) when the configuration is
//! loaded, and the server makes the identities from them (`server::mode`), so a reload
//! that keeps these values keeps the tunnels and a generated key.
//!
//! The values are the same in a build without the `tls` feature (so `check` and config
//! files read the same), but such a build refuses a relay or agent with TLS tunnels or a
//! TLS file ([`WITHOUT_TLS`]); it never falls back to plain tunnels.

use crate::os::fingerprint::Fingerprint;
#[cfg(feature = "tls")]
use crate::os::tls::{RelayTls, TlsError, Trust};

/// Why a build without the `tls` feature refuses TLS tunnels and the TLS options.
pub const WITHOUT_TLS: &str = "this tcpbridge was built without TLS (cargo feature \"tls\")";

/// Whether tunnel connections run over TLS 1.3 (`tunnel_tls`); both ends must agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TunnelTls {
    /// TLS, with the proofs bound to the channel (protocol version 2).
    #[default]
    On,
    /// Plain TCP (protocol version 1), for a trusted network or a VPN.
    Off,
}

/// A file read when the configuration was loaded: its absolute path and its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PemFile {
    /// The path (absolute; read again on reload).
    pub path: String,
    /// What it held.
    pub pem: Vec<u8>,
}

/// Who the relay is to agents (`tunnel_tls_cert`, `tunnel_tls_key`): a key generated at
/// start-up when neither is given; a key file alone is presented as a raw public key
/// (it survives restarts, so agents can pin it); a certificate needs its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayIdentity {
    /// The certificate chain, leaf first.
    pub cert: Option<PemFile>,
    /// The private key.
    pub key: Option<PemFile>,
}

/// What an agent accepts from the relay (`tunnel_tls_pin`, or `tunnel_tls_ca` with
/// `tunnel_tls_name`): any key that signs the handshake when none is given (the proofs,
/// bound to the channel, authenticate the relay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTrust {
    /// Only the relay key with this fingerprint.
    pub pin: Option<Fingerprint>,
    /// CA certificates the relay's chain must lead to.
    pub ca: Option<PemFile>,
    /// The name the relay's certificate must carry.
    pub name: Option<String>,
}

#[cfg(feature = "tls")]
impl RelayIdentity {
    /// The identity its files make; `None` when no file is given (the relay then makes
    /// a key at start-up). A certificate without its key is refused when the
    /// configuration is read, so here it counts as no file.
    pub fn load(&self) -> Option<Result<RelayTls, TlsError>> {
        let key = self.key.as_ref()?;
        Some(match &self.cert {
            Some(cert) => RelayTls::from_pem(&cert.pem, &key.pem),
            None => RelayTls::from_key_pem(&key.pem),
        })
    }
}

#[cfg(feature = "tls")]
impl AgentTrust {
    /// What the agent accepts: a chain to the CA for the name, else the pinned key, else
    /// any key.
    pub fn trust(&self) -> Trust {
        match (&self.ca, &self.name, self.pin) {
            (Some(ca), Some(name), _) => Trust::Authority {
                roots_pem: ca.pem.clone(),
                name: name.clone(),
            },
            (_, _, Some(pin)) => Trust::Pinned(pin),
            _ => Trust::Any,
        }
    }
}
