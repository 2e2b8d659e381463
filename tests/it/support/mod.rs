//! Shared harness for the tcpbridge integration tests.
//!
//! - [`proxy`]: the proxy as a child process, so its file descriptors,
//!   sockets, CPU time and signals can be observed through `/proc/PID` alone;
//! - [`procfs`]: parsing of `/proc/PID/net/tcp{,6}`;
//! - [`net`]: loopback clients and upstream servers, blocking `std::net`
//!   sockets on std threads, each with read and write timeouts;
//! - [`data`]: payload patterns, sha256, full-duplex transfers;
//! - [`cli`]: runs of the binary that should exit by themselves;
//! - [`nat`]: relay and agent processes, the relay -> agent [`Chain`], raw
//!   tunnel handshakes and settle checks for processes holding idle tunnels;
//! - [`path`]: the data path (copy or splice) of the current test, and
//!   [`both_paths!`], which runs one test body on each;
//! - [`pipes`]: the proxy's kernel pipe descriptors, kept apart from fd
//!   baselines (spares come and go) and required to be gone at rest;
//! - [`chaos`] and [`fault`]: the chaos relay and the fault-injection proxy
//!   with its invariant checks, iptables and `ss -K`;
//! - [`strace`]: syscall fault injection and syscall counts;
//! - [`dynamic`]: `connect` and `socks` listeners, their clients' side of HTTP
//!   CONNECT and SOCKS5, curl, a tiny HTTP destination, close lines;
//! - [`peers`]: nginx and HAProxy as PROXY protocol peers;
//! - [`upstreams`]: upstream groups: counted upstreams that stop and listen
//!   again, serve slowly, greet or time out idle connections; `/upstreams`,
//!   per-upstream metrics, shares against weights, warm-pool baselines;
//! - [`sockopts`]: the keepalive and TCP_USER_TIMEOUT of the proxy's own
//!   sockets, read exactly through copies of its descriptors;
//! - here: [`wait_until`], the per-test [`watchdog`], [`Gate`] and
//!   [`enter_private_netns`].
//!
//! Synchronisation rule: the only short sleep in the suite is the 5 ms poll
//! inside [`wait_until`], used to observe `/proc` state and process exit.
//! Everything else waits on events (the READY line, reads bounded by a
//! timeout, channels, gates).

pub mod chaos;
pub mod cli;
pub mod data;
pub mod dynamic;
pub mod fault;
pub mod nat;
pub mod net;
pub mod path;
pub mod peers;
pub mod pipes;
pub mod procfs;
pub mod prom;
pub mod proxy;
pub mod sockopts;
pub mod strace;
#[cfg(feature = "tls")]
pub mod tls;
pub mod upstreams;

pub use chaos::*;
pub use cli::*;
pub use data::*;
pub use dynamic::*;
pub use fault::*;
pub use nat::*;
pub use net::*;
pub use path::*;
pub use peers::*;
pub use procfs::*;
pub use proxy::*;
pub use sockopts::*;
pub use strace::*;
pub use upstreams::*;

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Default bound for a whole test body.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Polling period of [`wait_until`].
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Polls `cond` every 5 ms until it returns true (returns true) or `deadline`
/// passes (returns false after one last check).
///
/// This is the only place in the suite where a short sleep is used: to poll
/// state that produces no event (`/proc/PID/*`, `try_wait`, a log buffer).
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return cond();
        }
        thread::sleep(POLL_EVERY);
    }
}

/// [`wait_until`] with a relative bound.
pub fn wait_for(within: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_until(Instant::now() + within, cond)
}

thread_local! {
    /// PIDs of the proxies spawned by the current test body, so the watchdog
    /// can kill them if the body hangs (their `Drop` would never run).
    pub(crate) static TEST_PIDS: RefCell<Option<Arc<Mutex<Vec<u32>>>>> = const { RefCell::new(None) };
}

/// Runs `body` on its own thread and fails the test if it takes longer than
/// [`TEST_LIMIT`]. A panic in the body is re-raised on the test thread.
pub fn watchdog<F: FnOnce() + Send + 'static>(body: F) {
    watchdog_for(TEST_LIMIT, body)
}

/// [`watchdog`] with an explicit bound.
///
/// The body's thread inherits the test's [`DataPath`].
///
/// On timeout, the proxies this body spawned (and has not reaped) are killed
/// by PID so they do not outlive the test binary.
pub fn watchdog_for<F: FnOnce() + Send + 'static>(limit: Duration, body: F) {
    let pids = Arc::new(Mutex::new(Vec::<u32>::new()));
    let body_pids = Arc::clone(&pids);
    let (tx, rx) = mpsc::channel();
    let name = thread::current().name().unwrap_or("test-body").to_string();
    let data_path = DataPath::current();
    let handle = thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            TEST_PIDS.with(|c| *c.borrow_mut() = Some(body_pids));
            DataPath::inherit(data_path);
            let result = panic::catch_unwind(AssertUnwindSafe(body));
            let _ = tx.send(result);
        })
        .expect("spawn the test body thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => {
            let _ = handle.join();
        }
        Ok(Err(payload)) => {
            let _ = handle.join();
            panic::resume_unwind(payload);
        }
        Err(_) => {
            let stuck: Vec<u32> = pids.lock().map(|v| v.clone()).unwrap_or_default();
            for pid in &stuck {
                // Our own unreaped children: the PID cannot have been reused.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            panic!("watchdog: test `{name}` did not finish within {limit:?} (killed proxy pids {stuck:?})");
        }
    }
}

/// Appends everything read from `pipe` to `buf` until EOF (a child's stderr
/// or stdout drained on its own thread so the child never blocks on it).
pub fn drain_into(mut pipe: impl std::io::Read, buf: Arc<Mutex<String>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut s) = buf.lock() {
                    s.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
        }
    }
}

/// Moves the current thread into a fresh, private network namespace with only
/// `lo` (brought up). Threads and child processes started afterwards from this
/// thread inherit it; the rest of the test binary is unaffected.
///
/// Returns false (after printing a skip line) when this is not possible and
/// the `CI` environment variable is not `true`; panics when `CI=true`, so a
/// missing capability cannot turn CI green.
pub fn enter_private_netns() -> bool {
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    let result = if rc != 0 {
        Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ))
    } else {
        match Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
        {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("`ip link set lo up` exited with {s}")),
            Err(e) => Err(format!("cannot run `ip link set lo up`: {e}")),
        }
    };
    match result {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
                panic!("private network namespace required but unavailable: {why}");
            }
            eprintln!(
                "SKIP: private network namespace unavailable ({why}); set CI=true to fail instead"
            );
            false
        }
    }
}

/// A one-shot gate: threads [`Gate::wait`] until someone calls [`Gate::open`].
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }
    /// Opens the gate for all current and future waiters.
    pub fn open(&self) {
        let (lock, cv) = &*self.0;
        *lock.lock().expect("gate lock") = true;
        cv.notify_all();
    }
    /// Waits until the gate is open or `limit` passes; returns whether it opened.
    pub fn wait(&self, limit: Duration) -> bool {
        let (lock, cv) = &*self.0;
        let guard = lock.lock().expect("gate lock");
        let (guard, _) = cv
            .wait_timeout_while(guard, limit, |open| !*open)
            .expect("gate wait");
        *guard
    }
}
