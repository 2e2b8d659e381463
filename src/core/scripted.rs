//! A scripted in-memory [`Stream`] for unit tests: reads and writes follow a script, and
//! everything the core did to it (bytes written, FIN, RST) is recorded for assertions.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};

use super::pool::{KernelPipe, OpenPipe};
use super::stream::{ConnectFailure, ConnectStatus, Stream};

/// What the next read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStep {
    /// Bytes the peer sent (handed out over as many reads as the reader's space needs).
    Data(Vec<u8>),
    /// `WouldBlock`.
    Block,
    /// The peer's FIN: `Ok(0)`, and every read after it too.
    Eof,
    /// The peer's RST: `ConnectionReset`, and every read after it too.
    Reset,
}

/// What the next write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    /// Takes up to this many bytes.
    Accept(usize),
    /// `WouldBlock`.
    Block,
    /// `BrokenPipe` (the peer is gone), and every write after it too.
    Reset,
}

/// A scripted stream. An exhausted read script blocks; an exhausted write script blocks
/// unless `accept_when_done` is set.
#[derive(Debug, Default)]
pub struct Scripted {
    /// What the next reads return.
    pub reads: VecDeque<ReadStep>,
    /// What the next writes do.
    pub writes: VecDeque<WriteStep>,
    /// Once `writes` is exhausted: take everything (`true`) or block (`false`).
    pub accept_when_done: bool,
    /// What the next connect checks return (then `Connected`).
    pub connect: VecDeque<ConnectStatus>,
    /// What `unacked` reports.
    pub unacked: usize,
    /// Every byte the core wrote, in order.
    pub written: Vec<u8>,
    /// Bytes the core has read.
    pub read_total: usize,
    /// Read calls made.
    pub read_calls: usize,
    /// Write calls made.
    pub write_calls: usize,
    /// `shutdown_write` calls made.
    pub shutdowns: usize,
    /// `written.len()` when the FIN was sent.
    pub fin_at: Option<usize>,
    /// The next this many `shutdown_write` calls answer `WouldBlock` (a TLS stream whose
    /// close_notify found no room).
    pub shutdown_blocks: usize,
    /// `abort` calls made.
    pub aborts: usize,
    /// The peer is gone: writes fail with `BrokenPipe`, shutdown with `NotConnected`.
    pub broken: bool,
    /// The stream cannot be spliced (`splice_fd` is `None`); otherwise scripted kernel
    /// pipes move its bytes through its reads and writes.
    pub no_splice: bool,
    ended: Option<ReadStep>,
}

impl Scripted {
    /// An empty script: reads and writes block.
    pub fn new() -> Scripted {
        Scripted::default()
    }

    /// A stream whose writes always succeed in full.
    pub fn sink() -> Scripted {
        Scripted {
            accept_when_done: true,
            ..Scripted::default()
        }
    }

    /// Queues bytes to be read.
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.reads.push_back(ReadStep::Data(bytes.to_vec()));
        self
    }

    /// True once the peer's FIN or RST is queued or read: what the kernel reports as
    /// "read closed" (EPOLLRDHUP) alongside readability.
    pub fn peer_closed(&self) -> bool {
        self.ended.is_some()
            || self
                .reads
                .iter()
                .any(|s| matches!(s, ReadStep::Eof | ReadStep::Reset))
    }

    /// Queues a read step.
    pub fn then(&mut self, step: ReadStep) -> &mut Self {
        self.reads.push_back(step);
        self
    }
}

impl Stream for Scripted {
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_calls += 1;
        let room: usize = bufs.iter().map(|b| b.len()).sum();
        assert!(room > 0, "the core read into an empty slice");
        if let Some(end) = &self.ended {
            return ended(end);
        }
        match self.reads.pop_front() {
            None | Some(ReadStep::Block) => Err(io::ErrorKind::WouldBlock.into()),
            Some(step @ (ReadStep::Eof | ReadStep::Reset)) => {
                let r = ended(&step);
                self.ended = Some(step);
                r
            }
            Some(ReadStep::Data(mut data)) => {
                let n = data.len().min(room);
                let mut copied = 0;
                for buf in bufs.iter_mut() {
                    let k = buf.len().min(n - copied);
                    buf[..k].copy_from_slice(&data[copied..copied + k]);
                    copied += k;
                }
                if n < data.len() {
                    self.reads.push_front(ReadStep::Data(data.split_off(n)));
                }
                self.read_total += n;
                Ok(n)
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_calls += 1;
        assert!(self.fin_at.is_none(), "the core wrote after its FIN");
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let step = match self.writes.pop_front() {
            Some(step) => step,
            None if self.accept_when_done => WriteStep::Accept(usize::MAX),
            None => WriteStep::Block,
        };
        match step {
            WriteStep::Block => Err(io::ErrorKind::WouldBlock.into()),
            WriteStep::Reset => {
                self.broken = true;
                Err(io::ErrorKind::BrokenPipe.into())
            }
            WriteStep::Accept(max) => {
                let mut n = 0;
                for buf in bufs {
                    let k = buf.len().min(max - n);
                    self.written.extend_from_slice(&buf[..k]);
                    n += k;
                }
                Ok(n)
            }
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdowns += 1;
        if self.broken {
            return Err(io::ErrorKind::NotConnected.into());
        }
        if self.shutdown_blocks > 0 {
            self.shutdown_blocks -= 1;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.fin_at = Some(self.written.len());
        Ok(())
    }

    fn abort(&mut self) {
        self.aborts += 1;
    }

    fn unacked(&self) -> io::Result<usize> {
        Ok(self.unacked)
    }

    fn connect_status(&mut self) -> ConnectStatus {
        self.connect.pop_front().unwrap_or(ConnectStatus::Connected)
    }

    fn splice_fd(&self) -> Option<i32> {
        // A stand-in: scripted kernel pipes never use it.
        (!self.no_splice).then_some(-1)
    }
}

fn ended(step: &ReadStep) -> io::Result<usize> {
    match step {
        ReadStep::Reset => Err(io::ErrorKind::ConnectionReset.into()),
        _ => Ok(0),
    }
}

/// A connect that fails with `failure` (for scripting [`Scripted::connect`]).
pub fn failed(failure: ConnectFailure) -> ConnectStatus {
    ConnectStatus::Failed(failure)
}

/// An in-memory kernel pipe: bytes pass through the streams' reads and writes (a copy
/// where the kernel would splice), with the kernel's answers, including "would block"
/// while holding bytes when the kernel pipe runs out of slots.
#[derive(Debug, Default)]
pub struct ScriptedPipe {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Fills to answer with `WouldBlock` while bytes are inside (out of slots), one each.
    pub out_of_slots: usize,
    /// Fills that succeed before every later one answers `Unsupported` (a stream that
    /// cannot be spliced; `None`: never).
    pub refuse_after: Option<usize>,
}

impl ScriptedPipe {
    /// An empty kernel pipe holding up to `capacity` bytes.
    pub fn new(capacity: usize) -> ScriptedPipe {
        ScriptedPipe {
            capacity,
            ..ScriptedPipe::default()
        }
    }

    /// A way to open scripted kernel pipes of `capacity` bytes, each answering
    /// "out of slots" on every `slots_every`-th fill while holding bytes (0: never).
    pub fn opener(capacity: usize, slots_every: usize) -> OpenPipe {
        let mut opened = 0usize;
        Box::new(move || {
            opened += 1;
            let mut p = ScriptedPipe::new(capacity);
            if slots_every > 0 && opened % slots_every == 0 {
                p.out_of_slots = usize::MAX;
            }
            Ok(Box::new(p) as Box<dyn KernelPipe>)
        })
    }
}

impl ScriptedPipe {
    /// A way to open scripted kernel pipes of `capacity` bytes whose fills are
    /// refused (`Unsupported`) after the first `after`.
    pub fn refusing(capacity: usize, after: usize) -> OpenPipe {
        Box::new(move || {
            let mut p = ScriptedPipe::new(capacity);
            p.refuse_after = Some(after);
            Ok(Box::new(p) as Box<dyn KernelPipe>)
        })
    }
}

impl KernelPipe for ScriptedPipe {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn fill(&mut self, source: &mut dyn Stream, max: usize) -> io::Result<usize> {
        if self.refuse_after == Some(0) {
            return Err(io::ErrorKind::Unsupported.into());
        }
        if let Some(left) = &mut self.refuse_after {
            *left -= 1;
        }
        if self.out_of_slots > 0 && !self.bytes.is_empty() {
            self.out_of_slots -= 1;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let room = max.min(self.capacity - self.bytes.len());
        assert!(room > 0, "the core spliced into a full kernel pipe");
        let mut tmp = vec![0u8; room];
        let n = source.read_vectored(&mut [IoSliceMut::new(&mut tmp)])?;
        self.bytes.extend(&tmp[..n]);
        Ok(n)
    }

    fn drain(&mut self, destination: &mut dyn Stream, max: usize) -> io::Result<usize> {
        assert!(
            max > 0 && !self.bytes.is_empty(),
            "the core spliced nothing out"
        );
        let (a, b) = self.bytes.as_slices();
        let a = &a[..a.len().min(max)];
        let b = &b[..b.len().min(max - a.len())];
        let n = destination.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?;
        self.bytes.drain(..n);
        Ok(n)
    }
}
