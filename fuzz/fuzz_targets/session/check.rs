//! The session target's record of what each peer sent, and the checks run on a closed
//! session (see `session_script.rs` for the invariants).

use tcpbridge::core::reason::{CloseReason, Side};
use tcpbridge::core::scripted::Scripted;
use tcpbridge::core::handover::ResetPolicy;
use tcpbridge::core::session::{Drive, Session};

use super::{Case, ATTACH, READY, REFUSED};

/// Most bytes one peer sends.
const MAX_PAYLOAD: usize = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Open,
    Eof,
    Reset,
}

/// What one peer has sent so far.
pub struct Peer {
    pub payload: Vec<u8>,
    pub ending: Ending,
    /// A write to it failed: it reset, maybe after its FIN.
    pub write_reset: bool,
    salt: u64,
}

impl Peer {
    pub fn new(salt: u64) -> Peer {
        Peer {
            payload: Vec::new(),
            ending: Ending::Open,
            write_reset: false,
            salt,
        }
    }

    /// `n` more bytes, none equal to its neighbours' by position (a reordered, lost or
    /// repeated byte shows as a mismatch).
    pub fn more(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(MAX_PAYLOAD - self.payload.len());
        let start = self.payload.len();
        let bytes: Vec<u8> = (start..start + n)
            .map(|i| mix(i as u64 ^ self.salt))
            .collect();
        self.payload.extend_from_slice(&bytes);
        bytes
    }
}

fn mix(x: u64) -> u8 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u8
}

/// The destination got a prefix of the source's payload; all of it with a FIN right after
/// on a clean close; never a byte after the FIN, never a FIN before the last byte read.
fn check_direction(name: &str, source: &Peer, read: usize, got: &[u8], fin: Option<usize>) {
    assert!(
        source.payload.starts_with(got),
        "{name}: bytes delivered are not the bytes sent ({} of {})",
        got.len(),
        source.payload.len()
    );
    if let Some(at) = fin {
        assert_eq!(at, got.len(), "{name}: bytes written after the FIN");
        assert_eq!(
            at, read,
            "{name}: FIN after {at} bytes, {read} read from the source"
        );
        if source.ending == Ending::Eof {
            assert_eq!(at, source.payload.len(), "{name}: FIN before the last byte");
        }
    }
}

/// Checks a closed session against what its peers did.
pub fn check(mut c: Case) {
    let reason = c.closed.expect("closed");
    let io = |s: &mut Session<Scripted>| {
        let (cl, up) = (
            s.stream(Side::Client).read_calls + s.stream(Side::Client).write_calls,
            s.stream(Side::Upstream).read_calls,
        );
        cl + up + s.stream(Side::Upstream).write_calls
    };
    let calls = io(&mut c.s);
    let again = c.s.drive(&mut c.pool, c.now, &c.policy, 1000);
    assert_eq!(
        again,
        Drive::Closed(reason),
        "a closed session changed its reason"
    );
    assert_eq!(calls, io(&mut c.s), "a closed session did I/O");
    assert_eq!(c.s.buffers_held(), 0, "a closed session holds a buffer");
    assert_eq!(c.pool.lent(), c.held.len(), "buffers kept after close");
    let (client, mut upstream) = c.s.into_streams();

    // Owed to a paired tunnel before the client's bytes: ATTACH.
    let attach_unsent = if c.paired {
        ATTACH.len() - upstream.written.len().min(ATTACH.len())
    } else {
        0
    };
    if c.paired {
        let sent = upstream.written.len().min(ATTACH.len());
        assert_eq!(upstream.written[..sent], ATTACH[..sent], "ATTACH first");
        assert!(
            upstream.fin_at.is_none_or(|at| at >= ATTACH.len()),
            "FIN inside ATTACH"
        );
        upstream.written.drain(..sent);
        upstream.fin_at = upstream.fin_at.map(|at| at - sent);
    }
    let mut to_client = client.written.as_slice();
    let mut client_fin = client.fin_at;
    if c.replies {
        let reply = if c.connect_failed { REFUSED } else { READY };
        if to_client.first() == Some(&reply[0]) {
            to_client = &to_client[1..];
            client_fin = client_fin.map(|at| at - 1);
        }
        if c.connect_failed {
            assert!(
                to_client.is_empty(),
                "bytes to an agent's client after REFUSED"
            );
        }
    }
    check_direction(
        "to_upstream",
        &c.client,
        client.read_total,
        &upstream.written,
        upstream.fin_at,
    );
    let relayed = upstream.read_total.saturating_sub(c.status_len);
    check_direction("to_client", &c.upstream, relayed, to_client, client_fin);

    assert!(
        client.shutdowns <= 1 && upstream.shutdowns <= 1,
        "FIN sent twice"
    );
    assert!(
        client.aborts <= 1 && upstream.aborts <= 1,
        "a stream was aborted twice"
    );
    let clean = matches!(reason, CloseReason::ClientEof | CloseReason::UpstreamEof);
    if clean {
        assert!(
            c.client.ending == Ending::Eof && c.upstream.ending == Ending::Eof,
            "{reason:?} without both peers sending FIN"
        );
        assert_eq!(
            upstream.written.len(),
            c.client.payload.len(),
            "clean close lost bytes"
        );
        assert_eq!(
            to_client.len(),
            c.upstream.payload.len(),
            "clean close lost bytes"
        );
        assert!(
            upstream.fin_at.is_some() && client_fin.is_some(),
            "clean close without FIN"
        );
    }
    let reset = |p: &Peer| p.ending == Ending::Reset || p.write_reset;
    if reason == CloseReason::ClientReset {
        assert!(reset(&c.client), "client-reset without a client RST");
    }
    if reason == CloseReason::UpstreamReset {
        assert!(reset(&c.upstream), "upstream-reset without an upstream RST");
    }
    if c.policy.reset_policy == ResetPolicy::Fin {
        // Owed to the client: an agent's READY once connected, then the relayed bytes.
        let reply = usize::from(c.replies && (c.connected_seen || !client.written.is_empty()));
        let lost_to_upstream = attach_unsent > 0 || upstream.written.len() < client.read_total;
        let lost_to_client = client.written.len() < reply + relayed;
        // A peer found gone on write loses what it is owed anyway.
        let upstream_ok = upstream.aborts == 0 || lost_to_upstream || c.upstream.write_reset;
        let client_ok = client.aborts == 0 || lost_to_client || c.client.write_reset;
        assert!(
            upstream_ok && client_ok,
            "an RST was sent under the fin policy with nothing lost ({reason:?}): \
             client aborts {}, wrote {} of {}+{relayed}; upstream aborts {}, wrote {} of {}",
            client.aborts,
            client.written.len(),
            reply,
            upstream.aborts,
            upstream.written.len(),
            client.read_total,
        );
    }
}
