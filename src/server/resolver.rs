//! Name resolution off the event loop: the agent re-resolves the relay's name before
//! reconnecting, and `getaddrinfo` blocks, so a helper thread does it and wakes the loop
//! through a mio `Waker`. The thread ends when the loop drops its `Resolver`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;

use mio::Waker;

/// A resolver thread and its two channels.
#[derive(Debug)]
pub(super) struct Resolver {
    requests: Sender<String>,
    answers: Receiver<io::Result<Vec<SocketAddr>>>,
    in_flight: bool,
}

impl Resolver {
    /// Starts the thread.
    pub(super) fn spawn(waker: Arc<Waker>) -> io::Result<Resolver> {
        let (requests, jobs) = channel::<String>();
        let (done, answers) = channel();
        thread::Builder::new()
            .name("resolver".into())
            .spawn(move || {
                for name in jobs {
                    let answer = name.to_socket_addrs().map(Iterator::collect);
                    if done.send(answer).is_err() || waker.wake().is_err() {
                        break;
                    }
                }
            })?;
        Ok(Resolver {
            requests,
            answers,
            in_flight: false,
        })
    }

    /// Asks for `name` (`HOST:PORT`) unless a request is already in flight.
    pub(super) fn request(&mut self, name: &str) {
        if !self.in_flight && self.requests.send(name.to_string()).is_ok() {
            self.in_flight = true;
        }
    }

    /// The answer, once it has arrived.
    pub(super) fn take(&mut self) -> Option<io::Result<Vec<SocketAddr>>> {
        let answer = self.answers.try_recv().ok()?;
        self.in_flight = false;
        Some(answer)
    }
}
