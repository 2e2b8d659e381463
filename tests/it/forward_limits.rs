//! Forward mode, limits: `--max-sessions` makes extra clients wait in the
//! kernel backlog until a session closes, and running out of file descriptors
//! (RLIMIT_NOFILE) neither spins the CPU nor stalls the waiting clients.

use crate::support::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// `--max-sessions 2`: while two sessions live, a third client gets no
/// service (its bytes are not echoed, the upstream sees no third connection);
/// once one session closes, the third client is served.
#[test]
fn max_sessions_holds_extra_client_until_a_session_closes() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &["--max-sessions", "2"]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();
        let before = up.accepted();

        let mut a = connect(proxy.addr());
        let mut b = connect(proxy.addr());
        echo_roundtrip(&mut a, b"first");
        echo_roundtrip(&mut b, b"second");

        let mut third = connect(proxy.addr()); // completes in the kernel backlog
        third
            .set_read_timeout(Some(Duration::from_millis(700)))
            .expect("read timeout");
        third.write_all(b"third").expect("third client write");
        let mut buf = [0u8; 5];
        match third.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => {
                panic!("third client should get no service while 2 sessions live, got {other:?}")
            }
        }
        assert_eq!(
            up.accepted() - before,
            2,
            "the upstream should see only the 2 admitted sessions"
        );

        drop(a); // the first session ends: client FIN, echo upstream FINs back
        third
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        let got = read_exact_n(&mut third, 5, "third client once a slot is free");
        assert_eq!(&got, b"third");
        echo_roundtrip(&mut b, b"second still works");

        drop(b);
        drop(third);
        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}

/// Records client `i`'s result; panics with the proxy's unusual log lines
/// (every close other than a plain EOF) if it got no correct echo.
fn record(
    proxy: &Proxy,
    served: &mut Vec<usize>,
    (i, r): (usize, Result<bool, String>),
    when: &str,
) {
    if r != Ok(true) {
        let log = proxy.stderr();
        let unusual: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("reason=client-eof") && !l.contains("reason=upstream-eof"))
            .collect();
        panic!(
            "client {i}: no correct echo ({when}): {r:?}\nproxy log without EOF closes:\n{}",
            unusual.join("\n")
        );
    }
    served.push(i);
}

/// Connects `clients` clients that each send a tag and wait for its echo,
/// while the proxy can only hold a few sessions. Checks: some but not all are
/// served at first; over a 1 s window with every slot held the proxy uses
/// < 0.2 s of CPU (no accept spin); once the served clients close, every
/// waiting client is served too. Returns how many were served at first.
fn held_clients_are_all_served_without_spin(proxy: &mut Proxy, clients: usize) -> usize {
    // Each client thread: send its tag, wait for the echo, report it, then
    // hold the session until the gate opens (late clients pass at once).
    let gate = Gate::new();
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..clients {
        let mut c = connect(proxy.addr());
        let (tx, gate) = (tx.clone(), gate.clone());
        threads.push(thread::spawn(move || {
            let tag = format!("client-{i:03}");
            c.set_read_timeout(Some(Duration::from_secs(40)))
                .expect("read timeout");
            let result = c.write_all(tag.as_bytes()).and_then(|()| {
                let mut got = vec![0u8; tag.len()];
                c.read_exact(&mut got).map(|()| got == tag.as_bytes())
            });
            let _ = tx.send((i, result.map_err(|e| e.to_string())));
            gate.wait(Duration::from_secs(50));
            let _ = c.shutdown(Shutdown::Write);
            let _ = read_end(&mut c);
        }));
    }
    drop(tx);

    // Collect the echoes of the clients the proxy could take, until none came
    // for 500 ms (bounded: a few dozen sessions at most).
    let mut served = Vec::new();
    let settle = Instant::now() + Duration::from_secs(15);
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(500)) {
        record(proxy, &mut served, m, "before the release");
        assert!(
            Instant::now() < settle,
            "echoes kept coming for 15 s with too few fds"
        );
    }
    let held = served.len();
    assert!(held > 0, "no client was served at all\n{}", proxy.dump());
    assert!(
        held < clients,
        "all {clients} clients served at once: did the fd limit apply?"
    );

    // 1 s window, all slots held: the proxy must not spin on accept.
    let cpu0 = proxy.cpu_time();
    let window_end = Instant::now() + Duration::from_secs(1);
    while let Ok(m) = rx.recv_timeout(window_end.saturating_duration_since(Instant::now())) {
        record(proxy, &mut served, m, "during the CPU window");
    }
    let cpu = proxy.cpu_time() - cpu0;
    assert!(
        cpu < Duration::from_millis(200),
        "proxy used {cpu:?} of CPU in 1 s while out of fds: a spin\n{}",
        proxy.stderr()
    );
    proxy.assert_alive();

    gate.open(); // held clients close; the waiting ones are served in turn
    let deadline = Instant::now() + Duration::from_secs(30);
    while served.len() < clients {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(m) => record(proxy, &mut served, m, "after the release"),
            Err(_) => panic!(
                "only {}/{clients} clients served after the release ({held} before)\n{}",
                served.len(),
                proxy.dump()
            ),
        }
    }
    for t in threads {
        t.join().expect("client thread");
    }
    held
}

/// RLIMIT_NOFILE=64 and 100 clients connected and held: the proxy uses
/// (almost) no CPU for 1 s while it cannot accept more, and once the held
/// sessions are closed every one of the 100 clients gets its echo.
#[test]
fn fd_exhaustion_neither_spins_nor_stalls_waiting_clients() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward_with_nofile(&[up.addr], &[], 64);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        held_clients_are_all_served_without_spin(&mut proxy, 100);

        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}

/// The fd limit is lowered *after* start-up (prlimit on the running proxy),
/// so `--max-sessions` (default 1024) does not stop accepting first and
/// `accept` itself fails with EMFILE once 5 sessions are open. The listener
/// must pause and retry (no spin, no stall): 20 clients all get served.
#[test]
fn accept_emfile_pauses_and_retries_without_spinning() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();
        // Room for exactly 5 sessions of 2 fds each above the baseline.
        proxy.set_nofile(proxy.limit_leaving_free_fds(10));

        let held = held_clients_are_all_served_without_spin(&mut proxy, 20);
        assert!(
            held <= 5,
            "{held} sessions with room for 5: the lowered limit did not apply"
        );

        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}
