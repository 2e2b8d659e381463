//! Fuzzes the tunnel protocol's incremental readers (`proto::tunnel`): the relay's
//! challenge, the agent's hello, the relay's verdict and the frames on an idle tunnel.
//!
//! Input: byte 0 picks the reader, byte 1 the chunk size of one of the three feeds, the
//! rest is the byte stream. The stream is fed three ways, as a caller does (never more
//! than `want()` bytes at a time): one byte at a time, `want()` bytes at a time, and in
//! chunks of the chosen size. Checked:
//! - the three feeds yield the same messages and the same error, and an error is
//!   reported in the chunk holding the offending byte;
//! - `want()` is never zero before a message is complete and never reaches past it;
//! - every message re-encodes to exactly the bytes it was read from;
//! - a bad magic or version is an error at its own byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpbridge::proto::auth::{Channel, PROOF_LEN};
use tcpbridge::proto::tunnel::{
    agent_frame, attach, challenge, frame, AgentFrame, ChallengeReader, HelloReader, ProtocolError,
    RelayFrame, RelayFrameReader, Verdict, VerdictReader, CHALLENGE_LEN, MAGIC, MAX_ATTACH,
    MAX_HELLO, VERSION,
};

/// What one feed produced: each message with the stream offset where it ended.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A message and the bytes it re-encodes to.
    Message(Vec<u8>),
    /// An error (the offset is checked separately).
    Error(ProtocolError),
}

/// One reader under test, behind a common face.
trait Reader {
    /// Bytes still needed.
    fn want(&self) -> usize;
    /// Feeds; `Some(Ok(encoded))` for a complete message.
    fn feed(&mut self, bytes: &[u8]) -> Option<Result<Vec<u8>, ProtocolError>>;
    /// The reader goes on after a message (idle-tunnel frames) or stops (one-shot).
    fn repeats(&self) -> bool {
        false
    }
    /// Longest message.
    fn max(&self) -> usize;
}

struct Hello(HelloReader);
struct Challenge(ChallengeReader);
struct VerdictR(VerdictReader);
struct Frames(RelayFrameReader);

impl Reader for Hello {
    fn want(&self) -> usize {
        self.0.want()
    }
    fn feed(&mut self, bytes: &[u8]) -> Option<Result<Vec<u8>, ProtocolError>> {
        match self.0.feed(bytes) {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some(h)) => {
                assert!(
                    tcpbridge::proto::tunnel::valid_service_name(&h.service),
                    "a hello with an invalid service name was accepted"
                );
                let mut out = Vec::new();
                out.extend_from_slice(&MAGIC);
                out.push(VERSION);
                out.extend_from_slice(&h.agent_nonce);
                out.push(h.service.len() as u8);
                out.extend_from_slice(h.service.as_bytes());
                out.extend_from_slice(&h.proof);
                Some(Ok(out))
            }
        }
    }
    fn max(&self) -> usize {
        MAX_HELLO
    }
}

impl Reader for Challenge {
    fn want(&self) -> usize {
        self.0.want()
    }
    fn feed(&mut self, bytes: &[u8]) -> Option<Result<Vec<u8>, ProtocolError>> {
        match self.0.feed(bytes) {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some(nonce)) => Some(Ok(challenge(&Channel::Plain, &nonce).to_vec())),
        }
    }
    fn max(&self) -> usize {
        CHALLENGE_LEN
    }
}

impl Reader for VerdictR {
    fn want(&self) -> usize {
        self.0.want()
    }
    fn feed(&mut self, bytes: &[u8]) -> Option<Result<Vec<u8>, ProtocolError>> {
        match self.0.feed(bytes) {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some(Verdict::Denied)) => Some(Ok(vec![frame::DENIED])),
            Ok(Some(Verdict::Welcome(proof))) => {
                let mut out = vec![frame::WELCOME];
                out.extend_from_slice(&proof);
                Some(Ok(out))
            }
        }
    }
    fn max(&self) -> usize {
        1 + PROOF_LEN
    }
}

impl Reader for Frames {
    fn want(&self) -> usize {
        self.0.want()
    }
    fn feed(&mut self, bytes: &[u8]) -> Option<Result<Vec<u8>, ProtocolError>> {
        match self.0.feed(bytes) {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some(RelayFrame::Heartbeat)) => Some(Ok(vec![frame::HEARTBEAT])),
            Ok(Some(RelayFrame::Attach(addr))) => {
                let (bytes, n) = attach(addr);
                Some(Ok(bytes[..n].to_vec()))
            }
        }
    }
    fn repeats(&self) -> bool {
        true
    }
    fn max(&self) -> usize {
        MAX_ATTACH
    }
}

fn reader(kind: u8) -> Box<dyn Reader> {
    match kind % 4 {
        0 => Box::new(Hello(HelloReader::new())),
        1 => Box::new(Challenge(ChallengeReader::new())),
        2 => Box::new(VerdictR(VerdictReader::new())),
        _ => Box::new(Frames(RelayFrameReader::new())),
    }
}

/// Feeds `stream` in chunks of at most `chunk` bytes (0: as many as wanted); returns the
/// events, each with the offset of the end of the chunk that produced it.
fn run(kind: u8, stream: &[u8], chunk: usize) -> Vec<(Event, usize)> {
    let mut r = reader(kind);
    let mut events = Vec::new();
    let mut at = 0;
    let mut message_start = 0;
    while at < stream.len() {
        let want = r.want();
        assert!(want > 0, "want() is zero before a message is complete");
        assert!(
            at - message_start + want <= r.max(),
            "want() reaches past the longest message"
        );
        let n = if chunk == 0 { want } else { want.min(chunk) };
        let n = n.min(stream.len() - at);
        let result = r.feed(&stream[at..at + n]);
        at += n;
        match result {
            None => {}
            Some(Ok(encoded)) => {
                assert_eq!(
                    encoded,
                    &stream[message_start..at],
                    "a message does not re-encode to the bytes it was read from"
                );
                events.push((Event::Message(encoded), at));
                message_start = at;
                if !r.repeats() {
                    break;
                }
            }
            Some(Err(e)) => {
                events.push((Event::Error(e), at));
                break;
            }
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let [kind, chunk, stream @ ..] = data else {
        return;
    };
    let stream = &stream[..stream.len().min(4096)];
    let bytewise = run(*kind, stream, 1);
    let greedy = run(*kind, stream, 0);
    let chunked = run(*kind, stream, 1 + usize::from(*chunk % 64));
    for other in [&greedy, &chunked] {
        assert_eq!(
            bytewise.len(),
            other.len(),
            "feeds disagree on the messages"
        );
        for ((a, at_a), (b, at_b)) in bytewise.iter().zip(other.iter()) {
            assert_eq!(a, b, "feeds disagree");
            // Messages end on the same byte: the readers are frame-exact. An error is
            // seen in the chunk that holds the offending byte.
            match a {
                Event::Message(_) => assert_eq!(at_a, at_b, "a message ends elsewhere"),
                Event::Error(_) => assert!(at_a <= at_b, "an error before its byte"),
            }
        }
    }
    // A bad magic or version is reported at its own byte.
    if let Some((Event::Error(e), at)) = bytewise.last() {
        let start = bytewise.iter().rev().nth(1).map_or(0, |(_, at)| *at);
        let offset = at - start;
        match e {
            ProtocolError::BadMagic => {
                assert!(offset <= 4 && stream[at - 1] != MAGIC[offset - 1]);
            }
            ProtocolError::BadVersion(v) => {
                assert!(offset == 5 && *v != VERSION && stream[at - 1] == *v);
            }
            _ => {}
        }
    }
    // Agent frames are single bytes: exactly three are known.
    for &b in stream.iter().take(64) {
        let expected = match b {
            frame::HEARTBEAT => Some(AgentFrame::Heartbeat),
            frame::READY => Some(AgentFrame::Ready),
            frame::REFUSED => Some(AgentFrame::Refused),
            _ => None,
        };
        assert_eq!(agent_frame(b).ok(), expected, "agent frame byte {b:#04x}");
    }
});
