//! Process lifecycle: graceful shutdown on SIGTERM/SIGINT.
//!
//! Contract: on the first signal the listeners close at once (new connects
//! get ECONNREFUSED), live sessions finish up to `--drain-timeout`, the rest
//! are closed, and the process exits 0. A second signal exits at once.
//! The process is gone at the end of these tests, so instead of the fd
//! baseline they check the exit status and that nothing panicked.

use crate::support::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// Polls (bounded) until a connect to `addr` is refused: the listener is
/// closed. Any connect that still succeeds is dropped at once.
fn wait_refused(addr: SocketAddr, within: Duration) -> bool {
    wait_for(within, || {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) => e.kind() == ErrorKind::ConnectionRefused,
            Ok(s) => {
                drop(s);
                false
            }
        }
    })
}

/// An upstream that, after the warm-up echo, reports each connection and
/// writes to it until the write fails or times out (its client never reads),
/// so the session can never finish by itself.
fn stuck_upstream() -> (Upstream, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let up = scripted_server_with_warmup(move |mut s| {
        let _ = tx.send(());
        let chunk = vec![0x5a; 64 * 1024];
        for _ in 0..4096 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    (up, rx)
}

/// SIGTERM while 20 sessions each move 4 MiB both ways: a new connect right
/// after the signal is refused, all 20 transfers complete byte-exact, and the
/// process exits with code 0. Every sender pauses half-way until the signal
/// was handled, so all 20 sessions are certainly mid-transfer during the drain.
#[test]
fn sigterm_refuses_new_clients_and_drains_live_transfers() {
    const SESSIONS: u64 = 20;
    const LEN: u64 = 4 * MIB;
    watchdog(|| {
        let resume = Gate::new();
        let up_resume = resume.clone();
        let (up_tx, up_rx) = mpsc::channel();
        let (acc_tx, acc_rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let mut id = [0u8; 8];
            if s.read_exact(&mut id).is_err() {
                return; // a probe connect from wait_refused
            }
            let id = u64::from_le_bytes(id);
            let _ = acc_tx.send(id);
            let pause = Some((LEN / 2, up_resume.clone()));
            let flow = exchange_with_pause(s, 1000 + id, LEN, 64 * 1024, pause);
            let _ = up_tx.send((id, flow));
        });
        let mut proxy = Proxy::forward(&[up.addr], &["--drain-timeout", "60s"]);
        echo_once(proxy.addr());

        let (cl_tx, cl_rx) = mpsc::channel();
        for id in 0..SESSIONS {
            let mut c = connect(proxy.addr());
            let (cl_tx, resume) = (cl_tx.clone(), resume.clone());
            thread::spawn(move || {
                c.write_all(&id.to_le_bytes())
                    .expect("client writes its id");
                let pause = Some((LEN / 2, resume));
                let flow = exchange_with_pause(c, 2000 + id, LEN, 64 * 1024, pause);
                let _ = cl_tx.send((id, flow));
            });
        }
        for _ in 0..SESSIONS {
            acc_rx
                .recv_timeout(IO_TIMEOUT)
                .expect("every session reached the upstream before the signal");
        }

        proxy.send_signal(libc::SIGTERM);
        assert!(
            wait_refused(proxy.addr(), Duration::from_secs(2)),
            "new connects still accepted 2 s after SIGTERM; stderr:\n{}",
            proxy.stderr()
        );
        resume.open();

        let mut clients = std::collections::HashMap::new();
        let mut upstreams = std::collections::HashMap::new();
        for _ in 0..SESSIONS {
            let (id, f) = cl_rx
                .recv_timeout(Duration::from_secs(40))
                .expect("a client transfer finished");
            clients.insert(id, f);
            let (id, f) = up_rx
                .recv_timeout(Duration::from_secs(40))
                .expect("an upstream transfer finished");
            upstreams.insert(id, f);
        }
        for id in 0..SESSIONS {
            assert_flows_match(&clients[&id], &upstreams[&id]);
        }

        let status = proxy.wait_exit(Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after a graceful drain; stderr:\n{}",
            proxy.stderr()
        );
        proxy.assert_no_panic();
        up.assert_no_handler_panics();
    });
}

/// A second SIGTERM while a session that cannot finish is being drained
/// (default 10 s drain timeout) makes the process exit at once.
#[test]
fn second_sigterm_during_stuck_drain_exits_at_once() {
    watchdog(|| {
        let (up, accepted) = stuck_upstream();
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        echo_once(proxy.addr());
        let stuck_client = connect(proxy.addr());
        accepted
            .recv_timeout(IO_TIMEOUT)
            .expect("the stuck session reached the upstream");

        proxy.send_signal(libc::SIGTERM);
        assert!(
            wait_refused(proxy.addr(), Duration::from_secs(2)),
            "first SIGTERM not handled: listener still open"
        );
        let t0 = Instant::now();
        proxy.send_signal(libc::SIGTERM);
        let status = proxy.wait_exit(Duration::from_secs(3));
        eprintln!(
            "second SIGTERM: exited after {:?} with {status}",
            t0.elapsed()
        );
        proxy.assert_no_panic();
        drop(stuck_client);
    });
}

/// `--drain-timeout 1s` with a session whose client never reads: the process
/// exits about 1 s after SIGTERM with code 0, and the stuck client sees its
/// connection closed (FIN or RST after the buffered bytes).
#[test]
fn drain_timeout_closes_stuck_sessions_and_exits() {
    watchdog(|| {
        let (up, accepted) = stuck_upstream();
        let mut proxy = Proxy::forward(&[up.addr], &["--drain-timeout", "1s"]);
        echo_once(proxy.addr());
        let mut stuck_client = connect(proxy.addr());
        accepted
            .recv_timeout(IO_TIMEOUT)
            .expect("the stuck session reached the upstream");

        let t0 = Instant::now();
        proxy.send_signal(libc::SIGTERM);
        let status = proxy.wait_exit(Duration::from_secs(8));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(800),
            "exited {took:?} after SIGTERM, before the 1 s drain timeout"
        );
        assert!(
            took < Duration::from_secs(5),
            "exited only {took:?} after SIGTERM with a 1 s drain timeout"
        );
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after the drain timeout; stderr:\n{}",
            proxy.stderr()
        );
        proxy.assert_no_panic();

        let (_, _, end) = recv_hash(&mut stuck_client, 7);
        assert!(
            matches!(end, End::Eof | End::Reset),
            "stuck client: want FIN or RST after its data, got {end:?}"
        );
    });
}

/// SIGINT on an idle proxy: immediate, clean exit with code 0.
#[test]
fn sigint_on_idle_proxy_exits_zero() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        echo_once(proxy.addr());
        proxy.send_signal(libc::SIGINT);
        let status = proxy.wait_exit(Duration::from_secs(3));
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after SIGINT; stderr:\n{}",
            proxy.stderr()
        );
        proxy.assert_no_panic();
    });
}
