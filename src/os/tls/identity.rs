//! Who the relay is to an agent, and what an agent accepts: the TLS configurations of
//! both ends of a tunnel.
//!
//! By default there is nothing to manage. The relay makes an Ed25519 key at start-up and
//! presents it as an RFC 7250 raw public key (no certificate, no name, no validity
//! dates); the agent accepts any key but still checks that the handshake is signed by
//! it, and records the key's [`Fingerprint`]. What stops a man in the middle is not the
//! key but the tunnel's challenge–response, whose proofs cover the TLS channel's
//! exporter value (see `docs/tls.md`). An agent may also pin the fingerprint (the same
//! check with an expected value), or verify a certificate chain against CA certificates
//! with a server name, for operators who run a PKI.
//!
//! A relay given a certificate and its key serves both kinds of agent: the one that asks
//! for a raw public key (default or pinned) gets the certificate's key as one, the one
//! that verifies a chain gets the chain. The choice is made from the ClientHello, before
//! the handshake goes on (see `TlsStream::server`).
//!
//! A fingerprint is always SHA-256 over the key's DER SubjectPublicKeyInfo, whichever way
//! the key was presented: a pin survives renewing a certificate with the same key, and it
//! is `openssl pkey -pubin -outform der | sha256sum` of the key.
//!
//! Only TLS 1.3, only the `ring` provider; no session tickets or resumption (each tunnel
//! is one full handshake, so each has its own exporter value and no state is kept).

use std::fmt;
use std::sync::Arc;

pub use crate::os::fingerprint::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{
    verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::{
    AlwaysResolvesServerRawPublicKeys, CertificateType, ClientHello, NoServerSessionStorage,
};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

/// The name an agent gives when it verifies no name (raw public keys carry none; no SNI
/// is sent).
const NO_NAME: &str = "tcpbridge";

/// Why a TLS configuration could not be made.
#[derive(Debug)]
pub enum TlsError {
    /// The system's random source failed while making a key.
    Random,
    /// A PEM input held no usable item of this kind ("certificate", "private key", "CA
    /// certificate").
    Pem(&'static str),
    /// The private key is of a kind the provider cannot sign with, or has no public key.
    Key,
    /// rustls refused the configuration (a key that does not match its certificate, a bad
    /// CA certificate, a bad server name...).
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Random => write!(f, "the system's random source failed"),
            TlsError::Pem(what) => write!(f, "no usable {what} in the PEM file"),
            TlsError::Key => write!(f, "the private key cannot be used for TLS 1.3"),
            TlsError::Rustls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> TlsError {
        TlsError::Rustls(e)
    }
}

/// The `ring` provider (the approved one). rustls deprecates it for lacking a
/// post-quantum key exchange (X25519MLKEM768 needs aws-lc-rs): tunnels use X25519 or the
/// NIST curves. See `docs/tls.md`.
///
/// X25519 first: the provider's own order puts P-384 first, whose key exchange cost
/// about 1 ms of CPU per handshake on each side here (X25519: about 0.2 ms), paid by
/// every new client, since the agent replaces each paired tunnel at once.
///
/// AES-128-GCM first: the provider puts AES-256-GCM first, whose four more rounds per
/// block cost bulk transfer CPU on both ends; a 128-bit key is TLS 1.3's mandatory
/// suite and ample against any attacker of a tunnel (see `docs/tls.md`).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    })
}

/// The relay's TLS identity: its key as a raw public key, and its certificate chain when
/// one was configured.
#[derive(Debug, Clone)]
pub struct RelayTls {
    raw: Arc<ServerConfig>,
    chain: Option<Arc<ServerConfig>>,
    fingerprint: Fingerprint,
}

impl RelayTls {
    /// A fresh Ed25519 key, presented as a raw public key only.
    pub fn generate() -> Result<RelayTls, TlsError> {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|_| TlsError::Random)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()));
        RelayTls::build(key, None)
    }

    /// A private key of a PEM file (PKCS#8, SEC1 or PKCS#1), presented as a raw public
    /// key only: a relay identity that survives restarts (so agents can pin it) without
    /// any certificate (`openssl genpkey -algorithm ed25519`).
    pub fn from_key_pem(key_pem: &[u8]) -> Result<RelayTls, TlsError> {
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::Pem("private key"))?;
        RelayTls::build(key, None)
    }

    /// The certificate chain (leaf first) and private key of PEM files. Agents that
    /// verify a chain get the chain; the others get the leaf's key as a raw public key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<RelayTls, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::Pem("certificate"))?;
        if chain.is_empty() {
            return Err(TlsError::Pem("certificate"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::Pem("private key"))?;
        RelayTls::build(key, Some(chain))
    }

    fn build(
        key: PrivateKeyDer<'static>,
        chain: Option<Vec<CertificateDer<'static>>>,
    ) -> Result<RelayTls, TlsError> {
        let provider = provider();
        let signer = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|_| TlsError::Key)?;
        let spki = signer.public_key().ok_or(TlsError::Key)?.to_vec();
        let fingerprint = Fingerprint::of_key(&spki);
        let raw_key = CertifiedKey::new(vec![CertificateDer::from(spki)], signer);
        let raw = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(Arc::new(
                raw_key,
            ))));
        let chain = match chain {
            None => None,
            Some(chain) => Some(without_tickets(
                ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_no_client_auth()
                    .with_single_cert(chain, key)?,
            )),
        };
        Ok(RelayTls {
            raw: without_tickets(raw),
            chain,
            fingerprint,
        })
    }

    /// The fingerprint of the relay's key: what the relay logs at start-up and what an
    /// agent may pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The configuration for this ClientHello: the raw public key when the agent asks
    /// for one (or when there is no chain: rustls then refuses an agent that wants a
    /// chain, with a `handshake_failure` alert), else the chain.
    pub(super) fn config_for(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        let wants_raw = hello
            .server_cert_types()
            .is_some_and(|types| types.contains(&CertificateType::RawPublicKey));
        match &self.chain {
            Some(chain) if !wants_raw => chain.clone(),
            _ => self.raw.clone(),
        }
    }
}

fn without_tickets(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Arc::new(config)
}

/// What an agent accepts from the relay.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Any key that signs the handshake (the default: the tunnel's proofs, bound to the
    /// channel, authenticate the relay).
    Any,
    /// Only the key with this fingerprint.
    Pinned(Fingerprint),
    /// A certificate chain to one of these PEM CA certificates, valid for `name`.
    Authority {
        /// The CA certificates, PEM.
        roots_pem: Vec<u8>,
        /// The name the relay's certificate must carry (also sent as SNI).
        name: String,
    },
}

/// The agent's TLS configuration: how it greets and checks the relay.
#[derive(Debug, Clone)]
pub struct AgentTls {
    pub(super) config: Arc<ClientConfig>,
    pub(super) name: ServerName<'static>,
    /// The relay presents a raw public key (not a chain).
    pub(super) raw: bool,
}

impl AgentTls {
    /// The configuration that accepts what `trust` says.
    pub fn new(trust: Trust) -> Result<AgentTls, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let (mut config, name, raw) = match trust {
            Trust::Any | Trust::Pinned(_) => {
                let expected = match trust {
                    Trust::Pinned(f) => Some(f),
                    _ => None,
                };
                let verifier = KeyVerifier {
                    expected,
                    algorithms: provider.signature_verification_algorithms,
                };
                let mut config = builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth();
                config.enable_sni = false;
                let name = ServerName::try_from(NO_NAME)
                    .map_err(|_| TlsError::Rustls(rustls::Error::General("name".into())))?;
                (config, name, true)
            }
            Trust::Authority { roots_pem, name } => {
                let mut roots = RootCertStore::empty();
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(&roots_pem) {
                    let cert = cert.map_err(|_| TlsError::Pem("CA certificate"))?;
                    roots.add(cert)?;
                    added += 1;
                }
                if added == 0 {
                    return Err(TlsError::Pem("CA certificate"));
                }
                let name = ServerName::try_from(name)
                    .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                let config = builder.with_root_certificates(roots).with_no_client_auth();
                (config, name, false)
            }
        };
        config.resumption = Resumption::disabled();
        Ok(AgentTls {
            config: Arc::new(config),
            name,
            raw,
        })
    }
}

/// Accepts the relay's raw public key if it has the expected fingerprint (or any, when
/// none is expected); the handshake's signature is always checked with that key.
#[derive(Debug)]
struct KeyVerifier {
    expected: Option<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for KeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Raw public keys were negotiated: the entry is the key's SubjectPublicKeyInfo.
        match self.expected {
            Some(expected) if expected != Fingerprint::of_key(end_entity) => Err(
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
            ),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered.
        Err(rustls::Error::General("only TLS 1.3 is offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
        verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The fingerprint of the key in a presented end-entity entry: the entry itself for a raw
/// public key, the certificate's SubjectPublicKeyInfo otherwise.
pub(super) fn presented_fingerprint(entry: &CertificateDer<'_>, raw: bool) -> Option<Fingerprint> {
    if raw {
        return Some(Fingerprint::of_key(entry));
    }
    let cert = webpki::EndEntityCert::try_from(entry).ok()?;
    Some(Fingerprint::of_key(cert.subject_public_key_info().as_ref()))
}
