//! Upstream groups under test: sets of upstreams whose accepted connections are counted
//! ([`Echoes`]), each serving in one of the ways of [`Serve`] (echo, a slow start, a
//! banner, an idle timeout) and able to stop listening and listen again on its port;
//! short sessions through the proxy that report how they went; the proxy's `/upstreams`
//! view and per-upstream metrics; checks of shares against weights and of log lines
//! against the changes they report; the fd baseline of a proxy holding warm connections.

use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::net::{echo_conn, http_get, scripted_server_at, with_timeouts, Upstream};
use super::{log_count, prom, read_end, scrape_metrics, wait_for, End, Proxy};

/// How a test upstream serves each connection it accepts.
#[derive(Debug, Clone, Copy)]
pub enum Serve {
    /// Echoes until EOF, then half-closes.
    Echo,
    /// Waits this long after the accept, then echoes (a server slow to start a
    /// connection: a login, a busy accept loop).
    Delayed(Duration),
    /// Writes this banner at once, then echoes (server-speaks-first: SSH, SMTP).
    Banner(&'static [u8]),
    /// Echoes, and closes a connection on which nothing arrived for this long (a
    /// server's idle timeout).
    IdleClose(Duration),
}

impl Serve {
    /// The handler of one connection; `serving` counts the connections it started to
    /// serve (past the delay).
    fn handler(self, serving: Arc<AtomicUsize>) -> impl Fn(TcpStream) + Send + Sync + 'static {
        move |mut s| {
            if let Serve::Delayed(delay) = self {
                // The upstream's behaviour under test, not a synchronisation.
                thread::sleep(delay);
            }
            serving.fetch_add(1, Ordering::SeqCst);
            match self {
                Serve::Echo | Serve::Delayed(_) => echo_conn(s),
                Serve::Banner(banner) if s.write_all(banner).is_ok() => echo_conn(s),
                Serve::Banner(_) => {}
                Serve::IdleClose(idle) => echo_until_idle(s, idle),
            }
        }
    }
}

/// Echoes `s` until EOF (then half-closes) or until nothing came for `idle` (then
/// closes).
fn echo_until_idle(mut s: TcpStream, idle: Duration) {
    if s.set_read_timeout(Some(idle)).is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) if s.write_all(&buf[..n]).is_ok() => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Idle for too long (WouldBlock/TimedOut), or broken: closed on drop.
            _ => return,
        }
    }
}

/// Upstreams on fixed ports, serving as one [`Serve`] says, each one stoppable.
pub struct Echoes {
    pub addrs: Vec<SocketAddr>,
    how: Serve,
    servers: Vec<Option<Upstream>>,
    /// Connections accepted by servers since stopped.
    past: Vec<usize>,
    serving: Vec<Arc<AtomicUsize>>,
}

impl Echoes {
    /// `n` echo upstreams on 127.0.0.1.
    pub fn new(n: usize) -> Echoes {
        Echoes::serving(n, Serve::Echo)
    }

    /// `n` upstreams on 127.0.0.1 serving as `how` says.
    pub fn serving(n: usize, how: Serve) -> Echoes {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        Echoes::bound(vec![any; n], how)
    }

    /// Echo upstreams on each loopback address of `ips`, all on one port number (the
    /// first bound on port 0, the others on its port; another port when one of those
    /// is taken, up to 20 times).
    pub fn same_port(ips: &[&str]) -> Echoes {
        let at =
            |ip: &str, port: u16| -> SocketAddr { format!("{ip}:{port}").parse().expect("addr") };
        for _ in 0..20 {
            let mut e = Echoes::bound(vec![at(ips[0], 0)], Serve::Echo);
            let port = e.addrs[0].port();
            let rest: Vec<SocketAddr> = ips[1..].iter().map(|ip| at(ip, port)).collect();
            if rest.iter().all(|a| std::net::TcpListener::bind(a).is_ok()) {
                let more = Echoes::bound(rest, Serve::Echo);
                e.addrs.extend(more.addrs);
                e.servers.extend(more.servers);
                e.past.extend(more.past);
                e.serving.extend(more.serving);
                return e;
            }
        }
        panic!("no port free on every one of {ips:?} in 20 tries");
    }

    fn bound(at: Vec<SocketAddr>, how: Serve) -> Echoes {
        let serving: Vec<Arc<AtomicUsize>> = at.iter().map(|_| Arc::default()).collect();
        let servers: Vec<Upstream> = at
            .iter()
            .zip(&serving)
            .map(|(a, c)| scripted_server_at(*a, how.handler(Arc::clone(c))))
            .collect();
        Echoes {
            addrs: servers.iter().map(|s| s.addr).collect(),
            how,
            past: vec![0; servers.len()],
            servers: servers.into_iter().map(Some).collect(),
            serving,
        }
    }

    /// Connections upstream `i` accepted over all its lives.
    pub fn accepted(&self, i: usize) -> usize {
        self.past[i] + self.servers[i].as_ref().map_or(0, Upstream::accepted)
    }

    /// Every upstream's count.
    pub fn counts(&self) -> Vec<usize> {
        (0..self.addrs.len()).map(|i| self.accepted(i)).collect()
    }

    /// Connections upstream `i` started serving (past its delay).
    pub fn served(&self, i: usize) -> usize {
        self.serving[i].load(Ordering::SeqCst)
    }

    /// Upstream `i` stops listening: returns once its port refuses (a connection in
    /// the backlog of the closing listener would be reset, not refused).
    pub fn stop(&mut self, i: usize) {
        if let Some(s) = self.servers[i].take() {
            let (addr, n) = (s.addr, s.accepted());
            drop(s);
            let refused = wait_for(Duration::from_secs(5), || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
            });
            assert!(refused, "{addr} still accepts after being stopped");
            self.past[i] += n;
        }
    }

    /// Upstream `i` listens again on its port.
    pub fn start(&mut self, i: usize) {
        if self.servers[i].is_none() {
            let handler = self.how.handler(Arc::clone(&self.serving[i]));
            self.servers[i] = Some(scripted_server_at(self.addrs[i], handler));
        }
    }

    /// Panics if a handler thread of a listening upstream panicked.
    pub fn assert_no_handler_panics(&self) {
        for s in self.servers.iter().flatten() {
            s.assert_no_handler_panics();
        }
    }
}

/// `ADDR[,weight=W][,backup]`, as `--upstream` takes it.
pub fn member(addr: SocketAddr, weight: Option<u32>, backup: bool) -> String {
    let weight = weight.map_or(String::new(), |w| format!(",weight={w}"));
    format!("{addr}{weight}{}", if backup { ",backup" } else { "" })
}

/// `forward --listen 127.0.0.1:0 --upstream M... EXTRA... --metrics-listen 127.0.0.1:0`.
pub fn group_proxy(members: &[String], extra: &[&str]) -> Proxy {
    let mut args: Vec<String> = ["forward", "--listen", "127.0.0.1:0"]
        .map(String::from)
        .into();
    for m in members {
        args.extend(["--upstream".to_string(), m.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--metrics-listen", "127.0.0.1:0"].map(String::from));
    Proxy::spawn_strings(&args)
}

/// One complete session: 16 bytes echoed, a half-close, EOF. When it returns the proxy
/// has closed the session (it sent the client the upstream's FIN as its last act), so
/// the next one is picked with no session of this client live. The error says what
/// went wrong.
pub fn full_session(proxy: SocketAddr) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    echo_and_close(with_timeouts(s))
}

/// [`full_session`] from the loopback address `ip` (bound before the connect).
pub fn full_session_from(proxy: SocketAddr, ip: &str) -> Result<(), String> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| format!("socket: {e}"))?;
    let local: SocketAddr = format!("{ip}:0")
        .parse()
        .map_err(|e| format!("{ip}: {e}"))?;
    sock.bind(&local.into())
        .map_err(|e| format!("bind {local}: {e}"))?;
    sock.connect_timeout(&proxy.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect from {ip}: {e}"))?;
    echo_and_close(with_timeouts(sock.into()))
}

fn echo_and_close(mut s: TcpStream) -> Result<(), String> {
    let msg = b"0123456789abcdef";
    s.write_all(msg).map_err(|e| format!("write: {e}"))?;
    let mut got = [0u8; 16];
    s.read_exact(&mut got)
        .map_err(|e| format!("reading the echo: {e}"))?;
    if &got != msg {
        return Err(format!("echo {got:?}"));
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    match read_end(&mut s) {
        End::Eof => Ok(()),
        other => Err(format!("after the half-close: {other:?}")),
    }
}

/// A fresh client is closed by the proxy without any byte (every upstream failed):
/// how long that took, or what happened instead.
pub fn closed_without_data(proxy: SocketAddr) -> Result<Duration, String> {
    let s = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let mut s = with_timeouts(s);
    let start = Instant::now();
    match read_end(&mut s) {
        End::Eof => Ok(start.elapsed()),
        other => Err(format!("{other:?} after {:?}", start.elapsed())),
    }
}

/// Which counters of `after` moved from `before`, by how much.
pub fn moved(before: &[usize], after: &[usize]) -> Vec<usize> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// Prints `counts` and checks each is within `tolerance` (a fraction) of its share of
/// the total by `weights`.
pub fn assert_shares(what: &str, counts: &[usize], weights: &[u32], tolerance: f64) {
    let total: usize = counts.iter().sum();
    let weight: u32 = weights.iter().sum();
    let want: Vec<f64> = weights
        .iter()
        .map(|&w| total as f64 * f64::from(w) / f64::from(weight))
        .collect();
    eprintln!("{what}: observed {counts:?}, by weight {want:?}");
    for (i, (&n, &w)) in counts.iter().zip(&want).enumerate() {
        let off = (n as f64 - w).abs() / w;
        assert!(
            off <= tolerance,
            "{what}: upstream {i} got {n} of {total} sessions, want {w:.0} ± {:.0} %: {counts:?}",
            tolerance * 100.0
        );
    }
}

/// `/upstreams` of the metrics endpoint `metrics`: each line's fields.
pub fn upstream_lines(metrics: SocketAddr) -> Vec<Vec<(String, String)>> {
    let (status, body) = http_get(metrics, "/upstreams");
    assert_eq!(status, 200, "/upstreams answered {status}: {body}");
    body.lines()
        .map(|l| {
            l.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The field `key` of `addr`'s line in `/upstreams`.
pub fn upstream_field(metrics: SocketAddr, addr: SocketAddr, key: &str) -> Option<String> {
    let want = addr.to_string();
    upstream_lines(metrics).into_iter().find_map(|fields| {
        let mine = fields.iter().any(|(k, v)| k == "addr" && *v == want);
        mine.then(|| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })?
    })
}

/// A numeric field of `addr`'s line in `/upstreams` (panics when absent).
pub fn upstream_count(metrics: SocketAddr, addr: SocketAddr, key: &str) -> u64 {
    let v = upstream_field(metrics, addr, key);
    v.as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("/upstreams: no number `{key}=` for {addr}: {v:?}"))
}

/// The series of `name` for upstream `addr` (summed over other labels) in `/metrics`.
pub fn upstream_metric(metrics: SocketAddr, name: &str, addr: SocketAddr) -> f64 {
    let addr = addr.to_string();
    prom::sum(&scrape_metrics(metrics), name, &[("upstream", &addr)])
}

/// The state `tcpbridge_upstream_state` reports for `addr` (the one series at 1).
pub fn metric_state(metrics: SocketAddr, addr: SocketAddr) -> String {
    let samples = scrape_metrics(metrics);
    let addr = addr.to_string();
    let on: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "tcpbridge_upstream_state" && s.value == 1.0)
        .filter(|s| s.labels.get("upstream") == Some(&addr))
        .filter_map(|s| s.labels.get("state").map(String::as_str))
        .collect();
    assert_eq!(on.len(), 1, "{addr}: states at 1: {on:?}");
    on[0].to_string()
}

/// The family `name` summed over every upstream.
pub fn metric_total(metrics: SocketAddr, name: &str) -> f64 {
    prom::sum(&scrape_metrics(metrics), name, &[])
}

/// Each ejection of `addr` was logged once (as many `down: ejected` lines as
/// `tcpbridge_upstream_ejections_total` counts, at least one), and it was logged up
/// again `ups` times. Polled for 5 s: stderr is read by a thread of the test.
pub fn assert_logged_once_per_change(
    proxy: &Proxy,
    metrics: SocketAddr,
    addr: SocketAddr,
    ups: usize,
) {
    let counts = || {
        let ejections = upstream_metric(metrics, "tcpbridge_upstream_ejections_total", addr);
        let down = log_count(proxy, &format!("upstream {addr} down: ejected"));
        let up = log_count(proxy, &format!("upstream {addr} up again"));
        (ejections as usize, down, up)
    };
    let ok = wait_for(Duration::from_secs(5), || {
        let (ejections, down, up) = counts();
        ejections >= 1 && down == ejections && up == ups
    });
    let (ejections, down, up) = counts();
    assert!(
        ok,
        "{addr}: {down} ejection lines for {ejections} ejections, {up} `up again` for {ups}\n{}",
        proxy.stderr()
    );
}

/// Waits until the pool holds `n` idle warm connections (`tcpbridge_upstream_warm_idle`,
/// 10 s), so the next session is lent one.
pub fn wait_pool_full(metrics: SocketAddr, n: usize) {
    let idle = || metric_total(metrics, "tcpbridge_upstream_warm_idle");
    let full = wait_for(Duration::from_secs(10), || idle() == n as f64);
    assert!(full, "the pool never held {n} warm connections: {}", idle());
}

/// The fd baseline of a proxy whose pool holds `n` warm connections: once
/// `tcpbridge_upstream_warm_idle` is `n` and its only TCP sockets besides listeners
/// are those `n`, its fd count (kernel pipes aside). [`Proxy::assert_quiescent`]
/// compares against it once the pool is full again.
pub fn warm_baseline(proxy: &Proxy, metrics: SocketAddr, n: usize) -> usize {
    let settled = wait_for(Duration::from_secs(10), || {
        metric_total(metrics, "tcpbridge_upstream_warm_idle") == n as f64
            && proxy.session_sockets().len() == n
    });
    assert!(
        settled,
        "the pool never settled at {n} warm connections: warm_idle {}, sockets {}\n{}",
        metric_total(metrics, "tcpbridge_upstream_warm_idle"),
        proxy.session_sockets().len(),
        proxy.dump()
    );
    proxy.steady_fds()
}
