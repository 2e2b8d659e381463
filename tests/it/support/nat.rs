//! NAT-traversal harness: secret files, `relay` and `agent` child processes,
//! the [`Chain`] (public client -> relay -> agent -> local service), raw
//! tunnel handshakes (HMAC-SHA256 computed here from the protocol text,
//! independently of the product's code) and settle checks for processes that
//! keep tunnels open while idle.
//!
//! Protocol bytes (contract, `docs/protocol.md`):
//! relay -> agent `"TCPB" 0x01 relay_nonce[32]`; agent -> relay
//! `"TCPB" 0x01 agent_nonce[32] name_len name proof[32]`; relay -> agent
//! `0x01 proof[32]` (WELCOME) or `0x02` (DENIED). The agent's proof is
//! `HMAC-SHA256(secret, "tcpbridge-v1 agent" || relay_nonce || agent_nonce
//! || [name_len] || name)`, the relay's the same with `"tcpbridge-v1 relay"`.

use super::{echo_once, wait_for, with_timeouts, Proxy, TCP_CLOSE_WAIT, TCP_LISTEN};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The service name every chain uses.
pub const SERVICE: &str = "svc";
/// The shared secret of a chain (64 hex characters, used as text).
pub const SECRET: &str = "3f1c9a27d4e85b60a2f7c3198e4d6b05c7a1e92f3b8d4c6a0e5f7b2d9c1a3e48";
/// A different, equally valid secret.
pub const OTHER_SECRET: &str = "b7e2d9041c6f3a85e9d27b4c0f1a6e3d5c8b2f7a9e4d1c6b3a0f5e8d2c7b9a14";
/// Magic and version at the start of the challenge and the hello.
pub const MAGIC_V1: [u8; 5] = *b"TCPB\x01";
/// Bytes in the relay's challenge.
pub const CHALLENGE_LEN: usize = 37;
/// How long an idle state must hold to count as settled.
const STABLE: Duration = Duration::from_millis(100);

/// A private temporary directory for secret files, removed on drop.
pub struct SecretDir {
    pub path: PathBuf,
}

impl SecretDir {
    pub fn new() -> SecretDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tcpbridge-nat-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        SecretDir { path }
    }

    /// Writes `contents` to `name` (mode 0600) and returns its path.
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        p
    }

    /// A path in the directory where no file exists.
    pub fn missing(&self) -> PathBuf {
        self.path.join("no-such-secret")
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// Plain tunnels (protocol version 1), for relays and agents that face a test speaking
/// the tunnel protocol by hand.
pub const PLAIN: [&str; 2] = ["--tunnel-tls", "off"];

/// What a relay or agent needs in this build: nothing with the `tls` feature (TLS
/// tunnels, the default), [`PLAIN`] without it (the binary has plain tunnels only).
pub const BUILD_TUNNELS: &[&str] = if cfg!(feature = "tls") { &[] } else { &PLAIN };

/// A relay or agent the harness starts gets [`BUILD_TUNNELS`] unless its test chose
/// `--tunnel-tls` itself.
fn plain_without_tls(args: &mut Vec<String>) {
    if !args.iter().any(|a| a == PLAIN[0]) {
        args.extend(owned(BUILD_TUNNELS));
    }
}

/// `relay --tunnel-listen TUNNEL --public svc=PUBLIC --secret-file S EXTRA...`.
pub fn relay_args(tunnel: &str, public: &str, secret: &Path, extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "relay".into(),
        "--tunnel-listen".into(),
        tunnel.into(),
        "--public".into(),
        format!("{SERVICE}={public}"),
        "--secret-file".into(),
        path_str(secret),
    ];
    v.extend(extra.iter().cloned());
    plain_without_tls(&mut v);
    v
}

/// `agent --relay RELAY --service svc=SERVICE --secret-file S EXTRA...`.
pub fn agent_args(
    relay: SocketAddr,
    service: SocketAddr,
    secret: &Path,
    extra: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "agent".into(),
        "--relay".into(),
        relay.to_string(),
        "--service".into(),
        format!("{SERVICE}={service}"),
        "--secret-file".into(),
        path_str(secret),
    ];
    v.extend(extra.iter().cloned());
    plain_without_tls(&mut v);
    v
}

/// Converts `&[&str]` to owned strings.
pub fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A relay on `tunnel` / `public` (`127.0.0.1:0` for any port); waits for
/// READY and returns it with its `tunnel=` and `public.svc=` addresses.
pub fn spawn_relay(
    secret: &Path,
    tunnel: &str,
    public: &str,
    extra: &[String],
) -> (Proxy, SocketAddr, SocketAddr) {
    let relay = Proxy::spawn_strings(&relay_args(tunnel, public, secret, extra));
    let t = relay.field_addr("tunnel");
    let p = relay.field_addr(&format!("public.{SERVICE}"));
    (relay, t, p)
}

/// An agent for `service` behind `relay`; waits for READY (the first tunnel
/// is authenticated) and checks its fields.
pub fn spawn_agent(
    relay: SocketAddr,
    service: SocketAddr,
    secret: &Path,
    extra: &[String],
) -> Proxy {
    let agent = Proxy::spawn_strings(&agent_args(relay, service, secret, extra));
    assert_eq!(agent.field_addr("relay"), relay, "agent READY relay=");
    assert_eq!(
        agent.field(&format!("service.{SERVICE}")),
        Some(service.to_string().as_str()),
        "agent READY service.{SERVICE}= ({:?})",
        agent.ready
    );
    agent
}

/// Waits until `cond` has held without interruption for 100 ms (bounded by
/// `within`): an idle state, not a passing moment of a tunnel replacement.
pub fn wait_stable(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let mut since: Option<Instant> = None;
    wait_for(within, || {
        if !cond() {
            since = None;
            return false;
        }
        since.get_or_insert_with(Instant::now).elapsed() >= STABLE
    })
}

/// One pass over `/proc`: (non-listening TCP sockets, of which in
/// CLOSE-WAIT) owned by `p`.
fn tcp_census(p: &Proxy) -> (usize, usize) {
    let owned = p.owned_tcp();
    let active = owned.iter().filter(|s| s.state != TCP_LISTEN).count();
    let close_wait = owned.iter().filter(|s| s.state == TCP_CLOSE_WAIT).count();
    (active, close_wait)
}

/// Waits until `p` owns exactly `sockets` non-listening TCP sockets (its
/// idle tunnels), none in CLOSE-WAIT, with a stable fd count (kernel pipes
/// aside: [`Proxy::steady_fds`]); returns that count: the baseline of
/// [`assert_settled`].
pub fn settle(p: &Proxy, what: &str, sockets: usize) -> usize {
    let mut last = usize::MAX;
    let ok = wait_stable(Duration::from_secs(10), || {
        let fds = p.steady_fds();
        let same = fds == last;
        last = fds;
        same && tcp_census(p) == (sockets, 0)
    });
    if !ok {
        panic!(
            "{what}: no idle point with {sockets} tunnel sockets to take the fd baseline\n{}",
            p.dump()
        );
    }
    last
}

/// Checks `p` is alive (no panic) and gets back, within `within`, to
/// `baseline` fds (kernel pipes aside) with exactly `sockets` non-listening
/// TCP sockets and none in CLOSE-WAIT, steadily, then to no kernel pipe
/// ([`Proxy::assert_pipes_closed`]); panics with a dump otherwise.
pub fn assert_settled(
    p: &mut Proxy,
    what: &str,
    baseline: usize,
    sockets: usize,
    within: Duration,
) {
    p.assert_alive();
    let ok = wait_stable(within, || {
        p.steady_fds() == baseline && tcp_census(p) == (sockets, 0)
    });
    if !ok {
        panic!(
            "{what} not quiescent after {within:?}: fds {} without kernel pipes (baseline {baseline}), tunnel/session sockets {} (want {sockets}), CLOSE-WAIT {}\n{}",
            p.steady_fds(),
            p.session_sockets().len(),
            p.close_wait_owned().len(),
            p.dump()
        );
    }
    p.assert_pipes_closed();
    p.assert_alive();
}

/// Relay + agent in front of a local service, sharing [`SECRET`].
pub struct Chain {
    pub dir: SecretDir,
    pub secret: PathBuf,
    pub relay: Proxy,
    pub agent: Proxy,
    pub tunnel: SocketAddr,
    pub public: SocketAddr,
    /// The agent's `--pool`: idle tunnels it keeps per service.
    pub pool: usize,
    relay_extra: Vec<String>,
    pub relay_base: usize,
    pub agent_base: usize,
}

/// Options of a [`Chain`] before it starts.
pub struct ChainBuilder {
    service: SocketAddr,
    pool: usize,
    relay_extra: Vec<String>,
    agent_extra: Vec<String>,
}

impl ChainBuilder {
    /// The agent's `--pool` (default here: 2).
    pub fn pool(mut self, n: usize) -> Self {
        self.pool = n;
        self
    }
    /// Extra relay arguments.
    pub fn relay(mut self, args: &[&str]) -> Self {
        self.relay_extra.extend(owned(args));
        self
    }
    /// Extra agent arguments.
    pub fn agent(mut self, args: &[&str]) -> Self {
        self.agent_extra.extend(owned(args));
        self
    }
    /// Starts relay then agent, both READY; no warm-up, no baseline yet.
    pub fn start(self) -> Chain {
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let (relay, tunnel, public) =
            spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &self.relay_extra);
        let mut agent_extra = owned(&["--pool", &self.pool.to_string()]);
        agent_extra.extend(self.agent_extra);
        let agent = spawn_agent(tunnel, self.service, &secret, &agent_extra);
        Chain {
            dir,
            secret,
            relay,
            agent,
            tunnel,
            public,
            pool: self.pool,
            relay_extra: self.relay_extra,
            relay_base: 0,
            agent_base: 0,
        }
    }
    /// [`ChainBuilder::start`], then one echo session and the fd baselines.
    pub fn warm(self) -> Chain {
        let mut c = self.start();
        c.warm_up();
        c
    }
}

impl Chain {
    /// A chain for `service` with the defaults (pool 2).
    pub fn builder(service: SocketAddr) -> ChainBuilder {
        ChainBuilder {
            service,
            pool: 2,
            relay_extra: Vec::new(),
            agent_extra: Vec::new(),
        }
    }

    /// One echo session through the chain (the service's first connection
    /// must echo), then [`Chain::take_baseline`].
    pub fn warm_up(&mut self) {
        echo_once(self.public);
        self.take_baseline();
    }

    /// Records both fd baselines once relay and agent each hold exactly the
    /// agent's pool of idle tunnels.
    pub fn take_baseline(&mut self) {
        self.relay_base = settle(&self.relay, "relay", self.pool);
        self.agent_base = settle(&self.agent, "agent", self.pool);
    }

    /// Records the relay's fd baseline only (after [`Chain::restart_relay`]).
    pub fn take_baseline_relay(&mut self) {
        self.relay_base = settle(&self.relay, "relay", self.pool);
    }

    /// Both processes back to their baselines, holding only the idle pool.
    pub fn assert_quiescent(&mut self, within: Duration) {
        assert!(
            self.relay_base > 0 && self.agent_base > 0,
            "no baseline taken"
        );
        assert_settled(&mut self.relay, "relay", self.relay_base, self.pool, within);
        assert_settled(&mut self.agent, "agent", self.agent_base, self.pool, within);
    }

    /// SIGKILLs the relay and starts a new one on the same tunnel and public
    /// ports (same options); its baseline is still to be taken.
    pub fn restart_relay(&mut self) {
        self.relay.send_signal(libc::SIGKILL);
        self.relay.wait_exit(Duration::from_secs(5));
        let (relay, tunnel, public) = spawn_relay(
            &self.secret,
            &self.tunnel.to_string(),
            &self.public.to_string(),
            &self.relay_extra,
        );
        assert_eq!(tunnel, self.tunnel, "restarted relay: same tunnel port");
        assert_eq!(public, self.public, "restarted relay: same public port");
        self.relay = relay;
        self.relay_base = 0;
    }

    /// Both processes' stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- relay stderr ---\n{}\n--- agent stderr ---\n{}",
            self.relay.stderr(),
            self.agent.stderr()
        )
    }
}

// ---------------------------------------------------------------------------
// Raw handshakes against the relay's tunnel port.

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn proof(label: &[u8], secret: &[u8], relay: &[u8; 32], agent: &[u8; 32], name: &[u8]) -> [u8; 32] {
    hmac_sha256(secret, &[label, relay, agent, &[name.len() as u8], name])
}

/// The agent's proof for `name` answering `relay_nonce`.
pub fn agent_proof(
    secret: &[u8],
    relay_nonce: &[u8; 32],
    agent_nonce: &[u8; 32],
    name: &[u8],
) -> [u8; 32] {
    proof(
        b"tcpbridge-v1 agent",
        secret,
        relay_nonce,
        agent_nonce,
        name,
    )
}

/// The relay's proof in WELCOME.
pub fn relay_proof(
    secret: &[u8],
    relay_nonce: &[u8; 32],
    agent_nonce: &[u8; 32],
    name: &[u8],
) -> [u8; 32] {
    proof(
        b"tcpbridge-v1 relay",
        secret,
        relay_nonce,
        agent_nonce,
        name,
    )
}

/// A complete hello: `"TCPB" 0x01 agent_nonce len name proof`.
pub fn hello_bytes(
    secret: &[u8],
    relay_nonce: &[u8; 32],
    agent_nonce: &[u8; 32],
    name: &[u8],
) -> Vec<u8> {
    let mut v = MAGIC_V1.to_vec();
    v.extend_from_slice(agent_nonce);
    v.push(name.len() as u8);
    v.extend_from_slice(name);
    v.extend_from_slice(&agent_proof(secret, relay_nonce, agent_nonce, name));
    v
}

/// Connects to the tunnel port and reads the 37-byte challenge (checking
/// magic and version); returns the socket and the relay nonce.
pub fn open_probe(tunnel: SocketAddr) -> (TcpStream, [u8; 32]) {
    let mut s = with_timeouts(
        TcpStream::connect_timeout(&tunnel, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to the tunnel port {tunnel}: {e}")),
    );
    s.set_nodelay(true).expect("TCP_NODELAY");
    let mut c = [0u8; CHALLENGE_LEN];
    s.read_exact(&mut c)
        .unwrap_or_else(|e| panic!("reading the relay's 37-byte challenge: {e}"));
    assert_eq!(c[..5], MAGIC_V1, "challenge must start with TCPB 0x01");
    let mut nonce = [0u8; 32];
    nonce.copy_from_slice(&c[5..]);
    (s, nonce)
}

/// Reads an agent's hello (playing the relay): its nonce, the service name
/// and its proof; checks magic and version.
pub fn read_hello(s: &mut TcpStream) -> ([u8; 32], Vec<u8>, [u8; 32]) {
    let mut head = [0u8; 38];
    s.read_exact(&mut head)
        .unwrap_or_else(|e| panic!("reading the agent's hello: {e}"));
    assert_eq!(head[..5], MAGIC_V1, "hello must start with TCPB 0x01");
    let mut nonce = [0u8; 32];
    nonce.copy_from_slice(&head[5..37]);
    let len = usize::from(head[37]);
    let mut rest = vec![0u8; len + 32];
    s.read_exact(&mut rest)
        .unwrap_or_else(|e| panic!("reading the agent's hello name and proof: {e}"));
    let mut proof = [0u8; 32];
    proof.copy_from_slice(&rest[len..]);
    rest.truncate(len);
    (nonce, rest, proof)
}

/// What the relay answered to a hello (or to garbage).
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// WELCOME with the relay's proof.
    Welcome([u8; 32]),
    /// DENIED, then the relay closed (EOF or RST).
    Denied,
    /// The relay closed without a verdict (EOF or RST).
    Closed,
    /// Nothing within the bound.
    Silent,
    /// Bytes that are neither.
    Other(String),
}

/// Reads the relay's answer within `within`: WELCOME + proof, or DENIED /
/// nothing followed by the close. A DENIED not followed by a close within
/// the bound is reported as `Other`.
pub fn read_answer(s: &mut TcpStream, within: Duration) -> Answer {
    let deadline = Instant::now() + within;
    let mut denied = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return if denied {
                Answer::Other("DENIED but no close".into())
            } else {
                Answer::Silent
            };
        }
        s.set_read_timeout(Some(left)).expect("set_read_timeout");
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => {
                return if denied {
                    Answer::Denied
                } else {
                    Answer::Closed
                }
            }
            Ok(_) if !denied && b[0] == 0x02 => denied = true,
            Ok(_) if !denied && b[0] == 0x01 => {
                let mut p = [0u8; 32];
                return match s.read_exact(&mut p) {
                    Ok(()) => Answer::Welcome(p),
                    Err(e) => Answer::Other(format!("WELCOME then {e}")),
                };
            }
            Ok(_) => return Answer::Other(format!("byte 0x{:02x} (denied: {denied})", b[0])),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return if denied {
                    Answer::Denied
                } else {
                    Answer::Closed
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Answer::Other(format!("read error {e}")),
        }
    }
}

/// Writes all of `bytes`; errors (the relay may already have closed) are
/// returned, not raised.
pub fn try_send(s: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    s.write_all(bytes)
}

/// Waits until the relay's stderr has a line saying a handshake or an
/// authentication failed that names `src`'s IP; returns that line.
pub fn failure_line(relay: &Proxy, src: SocketAddr, within: Duration) -> Option<String> {
    let ip = src.ip().to_string();
    let find = || {
        relay
            .stderr()
            .lines()
            .find(|l| {
                (l.contains("authentication failed") || l.contains("handshake failed"))
                    && l.contains(&ip)
            })
            .map(str::to_string)
    };
    if wait_for(within, || find().is_some()) {
        find()
    } else {
        None
    }
}

/// Number of occurrences of `needle` in the relay's or agent's stderr.
pub fn log_count(p: &Proxy, needle: &str) -> usize {
    p.stderr().matches(needle).count()
}
