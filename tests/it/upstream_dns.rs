//! Upstream groups, names: an upstream given by name is looked up again every
//! `--dns-refresh` off the event loop; when the name moves to another address new
//! sessions follow it and a session opened before keeps going.
//!
//! The name comes from a hosts file this test controls: the proxy runs in a private
//! mount namespace (`unshare --mount`) where that file is bind-mounted over
//! `/etc/hosts`, and the test rewrites it in place (same inode, so the mount sees it).

use crate::support::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// Rewrites `path` in place: truncated and written through the same inode.
fn rewrite(path: &std::path::Path, text: &str) {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("write the hosts file");
}

#[test]
fn new_sessions_follow_a_name_that_moves() {
    watchdog(|| {
        if !tool("unshare", &["--mount", "--propagation", "private", "true"]) {
            return;
        }
        // Two echo upstreams on one port number, at 127.0.0.2 and 127.0.0.3.
        let port = {
            let probe = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
            probe.local_addr().expect("addr").port()
        };
        let at = |ip: &str| -> SocketAddr { format!("{ip}:{port}").parse().expect("addr") };
        let first = scripted_server_at(at("127.0.0.2"), echo_conn);
        let second = scripted_server_at(at("127.0.0.3"), echo_conn);
        let dir = SecretDir::new();
        let hosts = dir.file("hosts", b"127.0.0.2 app.test\n");
        let script = format!(
            "mount --bind {} /etc/hosts && exec {BIN} forward --listen 127.0.0.1:0 \
             --upstream app.test:{port} --dns-refresh 1s --metrics-listen 127.0.0.1:0",
            hosts.display()
        );
        let args = [
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ];
        let mut proxy = Proxy::spawn_program("unshare", &args, |_| {});
        let baseline = proxy.baseline();
        assert_eq!(failures(proxy.addr(), 5), 0);
        assert_eq!((first.accepted(), second.accepted()), (5, 0));
        let mut before = connect(proxy.addr());
        echo_roundtrip(&mut before, b"old");

        rewrite(&hosts, "127.0.0.3 app.test\n");
        assert!(
            wait_for(Duration::from_secs(10), || served(proxy.addr())
                && second.accepted() > 0),
            "new sessions never reached the new address: first {} second {}\n{}",
            first.accepted(),
            second.accepted(),
            proxy.stderr()
        );
        let (a, b) = (first.accepted(), second.accepted());
        assert_eq!(failures(proxy.addr(), 5), 0);
        assert_eq!(
            (first.accepted(), second.accepted()),
            (a, b + 5),
            "all on the new address"
        );
        echo_roundtrip(&mut before, b"still there");
        drop(before);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}
