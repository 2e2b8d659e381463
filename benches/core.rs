//! Micro-benchmarks of the relay core without sockets: the ring buffer and a pipe moving
//! bytes between two in-memory streams, in bytes per second. A regression in the core
//! shows here before it hides in the noise of a loopback benchmark.
//!
//! `cargo bench --bench core` (criterion; `-- --quick` for a short look).

use std::hint::black_box;
use std::io::{self, IoSlice, IoSliceMut};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use tcpbridge::core::pipe::Pipe;
use tcpbridge::core::pool::Pool;
use tcpbridge::core::ring::Ring;
use tcpbridge::core::stream::{ConnectStatus, Peer, Stream};

/// An endless source of bytes handing out at most `chunk` per read, and a sink that
/// takes at most `chunk` per write: the shape of a busy socket, without the kernel.
struct Memory {
    chunk: usize,
    moved: u64,
}

impl Stream for Memory {
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let mut n = 0;
        for buf in bufs.iter_mut() {
            let k = buf.len().min(self.chunk - n);
            buf[..k].fill(0xA5);
            n += k;
            if n == self.chunk {
                break;
            }
        }
        self.moved += n as u64;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut n = 0;
        for buf in bufs {
            let k = buf.len().min(self.chunk - n);
            black_box(&buf[..k]);
            n += k;
            if n == self.chunk {
                break;
            }
        }
        self.moved += n as u64;
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn abort(&mut self) {}

    fn unacked(&self) -> io::Result<usize> {
        Ok(0)
    }

    fn connect_status(&mut self) -> ConnectStatus {
        ConnectStatus::Connected
    }
}

const TOTAL: u64 = 4 << 20;

/// Fills and drains one ring until `TOTAL` bytes went through; odd chunk sizes make the
/// stored bytes wrap, so the vectored paths are exercised.
fn ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Bytes(TOTAL));
    for (ring_size, chunk) in [(16 << 10, 16 << 10), (16 << 10, 5000), (64 << 10, 9000)] {
        let id = BenchmarkId::from_parameter(format!("{ring_size}B ring, {chunk}B chunks"));
        group.bench_function(id, |b| {
            b.iter(|| {
                let mut r = Ring::new(vec![0u8; ring_size].into_boxed_slice());
                let mut source = Memory { chunk, moved: 0 };
                let mut sink = Memory { chunk, moved: 0 };
                while sink.moved < TOTAL {
                    if !r.is_full() {
                        let _ = r.read_from(&mut source);
                    }
                    if !r.is_empty() {
                        let _ = r.write_to(&mut sink);
                    }
                }
                black_box(sink.moved)
            });
        });
    }
    group.finish();
}

/// A pipe pumping between two in-memory streams, with the pool lending and taking back
/// its buffer as the ring empties: the steady-state data path of a session.
fn pipe(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe");
    group.throughput(Throughput::Bytes(TOTAL));
    for chunk in [1024usize, 16 << 10] {
        let id = BenchmarkId::from_parameter(format!("16KiB ring, {chunk}B chunks"));
        group.bench_function(id, |b| {
            b.iter(|| {
                let mut pool = Pool::new(16 << 10, 2);
                let mut p = Pipe::new();
                let mut source = Peer::new(Memory { chunk, moved: 0 });
                let mut sink = Peer::new(Memory { chunk, moved: 0 });
                source.ready.read_closed = true;
                while sink.stream.moved < TOTAL {
                    source.ready.readable = true;
                    sink.ready.writable = true;
                    p.pump(&mut source, &mut sink, true, &mut pool);
                }
                black_box(p.delivered())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, ring, pipe);
criterion_main!(benches);
