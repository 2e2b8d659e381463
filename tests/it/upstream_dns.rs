//! Upstream groups, names: an upstream given by name is looked up again every
//! `--dns-refresh` off the event loop.
//!
//! - When the name moves to another address, new sessions follow it within a bounded
//!   wait and a session opened before keeps echoing; `/upstreams` shows the new address
//!   under the same target.
//! - A failed look-up keeps the last addresses: sessions go on to them, and follow the
//!   name once it resolves again.
//!
//! The name comes from a hosts file the test controls: the proxy runs in a private mount
//! namespace (`unshare --mount --propagation private`) where that file is bind-mounted
//! over `/etc/hosts`, and a `hosts: files` nsswitch.conf over `/etc/nsswitch.conf` (a
//! missing name then fails at once instead of asking the machine's DNS). The shell
//! `exec`s the proxy, so the PID started is the proxy's. The test rewrites the hosts
//! file in place (same inode, so the mount sees it). The two upstreams listen on one
//! port number at 127.0.0.2 and 127.0.0.3. Needs root and `unshare`: skipped without,
//! failed under `CI=true`.

use crate::support::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Rewrites `path` in place: truncated and written through the same inode.
fn rewrite(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("write the hosts file");
}

/// The upstreams, the hosts file (naming `app.test` at 127.0.0.2) and the proxy with
/// `--upstream app.test:PORT --dns-refresh 1s`; `None` when the mount namespace cannot
/// be had outside CI.
fn start() -> Option<(Echoes, SecretDir, PathBuf, Proxy)> {
    if !tool("unshare", &["--mount", "--propagation", "private", "true"]) {
        return None;
    }
    let e = Echoes::same_port(&["127.0.0.2", "127.0.0.3"]);
    let port = e.addrs[0].port();
    let dir = SecretDir::new();
    let hosts = dir.file("hosts", b"127.0.0.2 app.test\n");
    let nss = dir.file("nsswitch.conf", b"hosts: files\n");
    let script = format!(
        "mount --bind {} /etc/hosts && mount --bind {} /etc/nsswitch.conf && exec {BIN} \
         forward --listen 127.0.0.1:0 --upstream app.test:{port} --dns-refresh 1s \
         --metrics-listen 127.0.0.1:0",
        hosts.display(),
        nss.display()
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
    let proxy = Proxy::spawn_program("unshare", &args, |_| {});
    let exe = std::fs::read_link(format!("/proc/{}/exe", proxy.pid)).expect("the child's exe");
    let bin = std::fs::canonicalize(BIN).expect("canonical path of the binary");
    assert_eq!(
        exe, bin,
        "PID {} is the proxy itself (unshare and sh exec'd it)",
        proxy.pid
    );
    Some((e, dir, hosts, proxy))
}

/// Each `/upstreams` line as (target, addr).
fn members(metrics: std::net::SocketAddr) -> Vec<(String, String)> {
    upstream_lines(metrics)
        .into_iter()
        .map(|f| {
            let get = |k: &str| {
                f.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get("target"), get("addr"))
        })
        .collect()
}

/// Complete sessions until one reaches upstream `i` (10 s, ten refreshes); every one
/// must succeed.
fn follow(proxy: &Proxy, e: &Echoes, i: usize) {
    let reached = wait_for(Duration::from_secs(10), || {
        let before = e.accepted(i);
        full_session(proxy.addr()).unwrap_or_else(|why| panic!("a session failed: {why}"));
        e.accepted(i) > before
    });
    assert!(
        reached,
        "new sessions never reached {}: {:?}\n{}",
        e.addrs[i],
        e.counts(),
        proxy.stderr()
    );
}

#[test]
fn new_sessions_follow_a_name_that_moves() {
    watchdog(|| {
        let Some((e, _dir, hosts, mut proxy)) = start() else {
            return;
        };
        let metrics = proxy.field_addr("metrics");
        let target = format!("app.test:{}", e.addrs[0].port());
        let baseline = proxy.baseline();
        for _ in 0..5 {
            full_session(proxy.addr()).expect("a session to 127.0.0.2");
        }
        assert_eq!(e.counts(), vec![5, 0]);
        assert_eq!(
            members(metrics),
            vec![(target.clone(), e.addrs[0].to_string())]
        );
        let mut before = connect(proxy.addr());
        echo_roundtrip(&mut before, b"old");

        rewrite(&hosts, "127.0.0.3 app.test\n");
        follow(&proxy, &e, 1);
        let counts = e.counts();
        for _ in 0..5 {
            full_session(proxy.addr()).expect("a session to 127.0.0.3");
        }
        assert_eq!(
            moved(&counts, &e.counts()),
            vec![0, 5],
            "all on the new address"
        );
        assert_eq!(
            members(metrics),
            vec![(target.clone(), e.addrs[1].to_string())]
        );
        let line = format!("upstream {target}: now [{}]", e.addrs[1]);
        let logged = proxy.wait_log(&line, Duration::from_secs(5));
        assert!(logged, "no `{line}`:\n{}", proxy.stderr());

        echo_roundtrip(&mut before, b"still there");
        before.shutdown(Shutdown::Write).expect("shutdown");
        assert!(
            matches!(read_end(&mut before), End::Eof),
            "the old session ends cleanly"
        );
        drop(before);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn a_failed_look_up_keeps_the_last_addresses() {
    watchdog(|| {
        let Some((e, _dir, hosts, mut proxy)) = start() else {
            return;
        };
        let metrics = proxy.field_addr("metrics");
        let target = format!("app.test:{}", e.addrs[0].port());
        let baseline = proxy.baseline();
        full_session(proxy.addr()).expect("a session to 127.0.0.2");

        rewrite(&hosts, "127.0.0.9 other.test\n");
        let line = format!("upstream {target}: cannot resolve");
        assert!(
            proxy.wait_log(&line, Duration::from_secs(10)),
            "no `{line}` within ten refreshes:\n{}",
            proxy.stderr()
        );
        for k in 0..10 {
            full_session(proxy.addr()).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        assert_eq!(e.counts(), vec![11, 0], "the last address serves");
        assert_eq!(members(metrics), vec![(target, e.addrs[0].to_string())]);

        rewrite(&hosts, "127.0.0.3 app.test\n");
        follow(&proxy, &e, 1);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}
