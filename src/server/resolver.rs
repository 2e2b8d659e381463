//! Name look-ups off the event loop, [`THREADS`] threads for the whole process:
//! `getaddrinfo` blocks, so helper threads run the look-ups and wake the loop through a
//! mio `Waker` with each answer. An agent asks for its relay's name before reconnecting;
//! an upstream group asks for its names every `dns_refresh`; a `connect` or `socks`
//! listener for each destination name a client asks for (its own timeout drops an
//! answer that comes too late; the look-up still holds its place until it ends).
//!
//! Each request carries a [`Lookup`] key naming who asked, so the loop hands the answer
//! back to its owner. At most [`MAX_PENDING`] look-ups wait at once, one per key: a name
//! that resolves slowly never piles up requests. The threads are started on the first
//! request (a process whose addresses are all literal has none) and end when the loop
//! drops the `Resolver`.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use mio::Waker;

/// Look-ups waiting or running at once, over the whole process.
pub(super) const MAX_PENDING: usize = 256;
/// Threads running look-ups.
const THREADS: usize = 4;

/// Who asked: a listener's slot and what of it (its mode's own number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Lookup {
    pub(super) listener: usize,
    pub(super) what: u32,
}

/// One answer: the key, the name asked for, and what it resolved to.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) lookup: Lookup,
    pub(super) name: String,
    pub(super) addrs: io::Result<Vec<SocketAddr>>,
}

/// The thread's two channels, once started.
#[derive(Debug)]
struct Thread {
    requests: Sender<(Lookup, String)>,
    answers: Receiver<Answer>,
}

/// The process's resolver.
#[derive(Debug)]
pub(super) struct Resolver {
    waker: Arc<Waker>,
    thread: Option<Thread>,
    pending: HashSet<Lookup>,
}

impl Resolver {
    /// A resolver that starts its thread when first asked.
    pub(super) fn new(waker: Arc<Waker>) -> Resolver {
        Resolver {
            waker,
            thread: None,
            pending: HashSet::new(),
        }
    }

    /// Asks for `name` (`HOST:PORT`) on behalf of `lookup`. False when not queued: the
    /// same key is already pending, [`MAX_PENDING`] are, or no thread could be started
    /// (the caller asks again at its next refresh).
    pub(super) fn request(&mut self, lookup: Lookup, name: &str) -> bool {
        if self.pending.contains(&lookup) || self.pending.len() >= MAX_PENDING {
            return false;
        }
        if self.thread.is_none() {
            match spawn(Arc::clone(&self.waker)) {
                Ok(t) => self.thread = Some(t),
                Err(e) => {
                    log::warn!(
                        "cannot start the name resolver: {}",
                        crate::os::net::describe(&e)
                    );
                    return false;
                }
            }
        }
        let sent = self
            .thread
            .as_ref()
            .is_some_and(|t| t.requests.send((lookup, name.to_string())).is_ok());
        if sent {
            self.pending.insert(lookup);
        }
        sent
    }

    /// The next answer that has arrived.
    pub(super) fn take(&mut self) -> Option<Answer> {
        let answer = self.thread.as_ref()?.answers.try_recv().ok()?;
        self.pending.remove(&answer.lookup);
        Some(answer)
    }
}

/// Starts the threads: [`THREADS`] take look-ups from one queue, so a slow name holds
/// one of them, not every look-up behind it.
fn spawn(waker: Arc<Waker>) -> io::Result<Thread> {
    let (requests, jobs) = channel::<(Lookup, String)>();
    let jobs = Arc::new(Mutex::new(jobs));
    let (done, answers) = channel();
    for n in 0..THREADS {
        let (jobs, done, waker) = (Arc::clone(&jobs), done.clone(), Arc::clone(&waker));
        let started = thread::Builder::new()
            .name(format!("resolver-{n}"))
            .spawn(move || loop {
                // The lock is held only while waiting for the next job.
                let job = match jobs.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => break,
                };
                let Ok((lookup, name)) = job else { break };
                let addrs = name.to_socket_addrs().map(Iterator::collect);
                let answer = Answer {
                    lookup,
                    name,
                    addrs,
                };
                if done.send(answer).is_err() || waker.wake().is_err() {
                    break;
                }
            });
        // One thread is enough to answer; more only spread slow names.
        if let Err(e) = started {
            if n == 0 {
                return Err(e);
            }
            break;
        }
    }
    Ok(Thread { requests, answers })
}
