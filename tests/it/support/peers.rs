//! Real PROXY protocol peers as child processes: nginx reading headers on a `listen ...
//! proxy_protocol` port and logging what they said, and HAProxy writing them
//! (`send-proxy`, `send-proxy-v2`) in front of a tcpbridge listener. Each runs in a
//! directory of its own with its configuration and logs, is waited for by connecting,
//! and is killed by its PID when dropped.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fault::tool;
use super::nat::SecretDir;
use super::wait_for;

/// A port free now on 127.0.0.1 (for peers that cannot report the port they bound).
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address")
}

/// A peer process and where it listens.
pub struct Peer {
    pub addr: SocketAddr,
    pub dir: SecretDir,
    child: Child,
}

impl Peer {
    fn start(program: &str, args: &[String], addr: SocketAddr, dir: SecretDir) -> Peer {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut peer = Peer { addr, dir, child };
        let up = wait_for(Duration::from_secs(10), || TcpStream::connect(addr).is_ok());
        if !up {
            let _ = peer.child.kill();
            let out = peer.child.wait_with_output_now();
            panic!("{program} is not listening on {addr} after 10 s: {out}");
        }
        peer
    }

    /// A file of its directory, as text ("" when missing).
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path.join(name)).unwrap_or_default()
    }
}

trait OutputNow {
    fn wait_with_output_now(&mut self) -> String;
}

impl OutputNow for Child {
    fn wait_with_output_now(&mut self) -> String {
        use std::io::Read;
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = self.wait();
        err
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx answering HTTP on a `proxy_protocol` port; its access log (`access.log`) has one
/// line per request: `$proxy_protocol_addr:$proxy_protocol_port $remote_addr
/// $proxy_protocol_server_addr:$proxy_protocol_server_port`. `None` when nginx is
/// missing (outside CI).
pub fn nginx_reading_proxy() -> Option<Peer> {
    if !tool("nginx", &["-v"]) {
        return None;
    }
    let addr = free_port();
    let dir = SecretDir::new();
    let d = dir.path.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           log_format pp '$proxy_protocol_addr:$proxy_protocol_port $remote_addr \
         $proxy_protocol_server_addr:$proxy_protocol_server_port';\n\
           access_log {d}/access.log pp;\n\
           server {{ listen {addr} proxy_protocol; location / {{ return 200 \"ok\\n\"; }} }}\n\
         }}\n"
    );
    let path = dir.file("nginx.conf", conf.as_bytes());
    let args = vec![
        "-e".to_string(),
        format!("{d}/error.log"),
        "-p".to_string(),
        d.to_string(),
        "-c".to_string(),
        path.display().to_string(),
    ];
    Some(Peer::start("nginx", &args, addr, dir))
}

/// HAProxy in TCP mode on a port of its own, passing every connection to `to` with a
/// PROXY header (`send-proxy` for v1, `send-proxy-v2` for v2). `None` when HAProxy is
/// missing (outside CI).
pub fn haproxy_sending_proxy(to: SocketAddr, v2: bool) -> Option<Peer> {
    if !tool("haproxy", &["-v"]) {
        return None;
    }
    let addr = free_port();
    let dir = SecretDir::new();
    let send = if v2 { "send-proxy-v2" } else { "send-proxy" };
    let conf = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         listen front\n  bind {addr}\n  server back {to} {send}\n"
    );
    let path = dir.file("haproxy.cfg", conf.as_bytes());
    let args = vec![
        "-db".to_string(),
        "-f".to_string(),
        path.display().to_string(),
    ];
    Some(Peer::start("haproxy", &args, addr, dir))
}
