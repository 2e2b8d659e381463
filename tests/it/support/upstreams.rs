//! Upstream groups under test: a set of echo upstreams whose connections are counted and
//! which may stop listening and listen again on their port, short sessions through the
//! proxy that report whether the client was served, and the proxy's `/upstreams` view.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::net::{echo_conn, http_get, scripted_server_at, with_timeouts, Upstream};

/// Echo upstreams on fixed ports, each one stoppable.
pub struct Echoes {
    pub addrs: Vec<SocketAddr>,
    servers: Vec<Option<Upstream>>,
    /// Connections accepted by servers since stopped.
    past: Vec<usize>,
}

impl Echoes {
    /// `n` echo upstreams on 127.0.0.1.
    pub fn new(n: usize) -> Echoes {
        let servers: Vec<Upstream> = (0..n)
            .map(|_| scripted_server_at("127.0.0.1:0".parse().expect("addr"), echo_conn))
            .collect();
        Echoes {
            addrs: servers.iter().map(|s| s.addr).collect(),
            servers: servers.into_iter().map(Some).collect(),
            past: vec![0; n],
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

    /// Upstream `i` stops listening: returns once its port refuses (a connection in
    /// the backlog of the closing listener would be reset, not refused).
    pub fn stop(&mut self, i: usize) {
        if let Some(s) = self.servers[i].take() {
            let (addr, n) = (s.addr, s.accepted());
            drop(s);
            let refused = super::wait_for(Duration::from_secs(5), || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
            });
            assert!(refused, "{addr} still accepts after being stopped");
            self.past[i] += n;
        }
    }

    /// Upstream `i` listens again on its port.
    pub fn start(&mut self, i: usize) {
        if self.servers[i].is_none() {
            self.servers[i] = Some(scripted_server_at(self.addrs[i], echo_conn));
        }
    }
}

/// One short session: connect, one byte each way, close. True when echoed.
pub fn served(proxy: SocketAddr) -> bool {
    let Ok(s) = TcpStream::connect_timeout(&proxy, Duration::from_secs(5)) else {
        return false;
    };
    let mut s = with_timeouts(s);
    let mut b = [0u8; 1];
    s.write_all(b"x").is_ok() && matches!(s.read(&mut b), Ok(1)) && b == *b"x"
}

/// `n` short sessions; how many were not served.
pub fn failures(proxy: SocketAddr, n: usize) -> usize {
    (0..n).filter(|_| !served(proxy)).count()
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
