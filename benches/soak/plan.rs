//! What one soak session does, derived from the run seed and the session number
//! alone, so the client and the upstream agree on it without talking: payload
//! sizes each way, where each payload starts in the seeded byte pool, how the
//! session ends, and at which point a reset is sent.

/// Bytes the client writes before its payload: a magic word and the session
/// number, so the upstream can derive the same plan.
pub const HEADER_LEN: usize = 16;
const MAGIC: u64 = 0x7463_7062_7269_6467; // "tcpbridg"

/// The largest payload one side sends.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Payloads start at an offset below this in the pool.
const POOL_SPAN: usize = 1 << 20;

/// SplitMix64: small, fast and good enough to pick sizes and offsets.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (`max` small enough that the modulo bias is negligible).
    pub fn upto(&mut self, max: usize) -> usize {
        (self.next_u64() % (max as u64 + 1)) as usize
    }
}

/// The seeded bytes every payload is a window of: `POOL_SPAN + MAX_PAYLOAD` bytes,
/// so that any payload is one contiguous slice.
pub fn pool(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x5EE_D0FB_17E5);
    let mut bytes = Vec::with_capacity(POOL_SPAN + MAX_PAYLOAD);
    while bytes.len() < POOL_SPAN + MAX_PAYLOAD {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes
}

/// How a session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client sends everything, then `shutdown(WR)`; the upstream answers fully
    /// and closes once it has seen the client's EOF.
    ClientFin,
    /// The upstream sends everything, then `shutdown(WR)`; the client closes once it
    /// has sent everything and seen the upstream's EOF.
    UpstreamFin,
    /// The client resets (SO_LINGER 0) after sending `reset_at` payload bytes.
    ClientRst,
    /// The upstream resets (SO_LINGER 0) after sending `reset_at` payload bytes.
    UpstreamRst,
}

impl Ending {
    pub const ALL: [Ending; 4] = [
        Ending::ClientFin,
        Ending::UpstreamFin,
        Ending::ClientRst,
        Ending::UpstreamRst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Ending::ClientFin => "client-fin",
            Ending::UpstreamFin => "upstream-fin",
            Ending::ClientRst => "client-rst",
            Ending::UpstreamRst => "upstream-rst",
        }
    }

    pub fn is_reset(self) -> bool {
        matches!(self, Ending::ClientRst | Ending::UpstreamRst)
    }
}

/// One direction's payload: `len` bytes of the pool from `offset`.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    pub offset: usize,
    pub len: usize,
}

impl Stream {
    pub fn bytes(self, pool: &[u8]) -> &[u8] {
        &pool[self.offset..self.offset + self.len]
    }
}

/// Everything both peers need to know about session `number`.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub number: u64,
    /// Client to upstream.
    pub up: Stream,
    /// Upstream to client.
    pub down: Stream,
    pub ending: Ending,
    /// With a reset ending: how many of its own payload bytes the resetting side
    /// sends before it resets.
    pub reset_at: usize,
}

/// A payload size skewed small: half under 1 KiB, 30 % up to 16 KiB, 15 % up
/// to 64 KiB, 5 % up to 256 KiB (mean about 17 KiB).
fn size(rng: &mut Rng) -> usize {
    match rng.upto(99) {
        0..=49 => rng.upto(1024),
        50..=79 => rng.upto(16 * 1024),
        80..=94 => rng.upto(64 * 1024),
        _ => rng.upto(MAX_PAYLOAD),
    }
}

impl Plan {
    pub fn new(seed: u64, number: u64) -> Plan {
        let mut rng = Rng::new(seed ^ number.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let up = Stream {
            offset: rng.upto(POOL_SPAN - 1),
            len: size(&mut rng),
        };
        let down = Stream {
            offset: rng.upto(POOL_SPAN - 1),
            len: size(&mut rng),
        };
        let ending = Ending::ALL[rng.upto(3)];
        let reset_at = match ending {
            Ending::ClientRst => rng.upto(up.len),
            Ending::UpstreamRst => rng.upto(down.len),
            _ => 0,
        };
        Plan {
            number,
            up,
            down,
            ending,
            reset_at,
        }
    }

    pub fn header(number: u64) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC.to_le_bytes());
        header[8..].copy_from_slice(&number.to_le_bytes());
        header
    }

    /// The session number in a header, `None` when the magic word is wrong.
    pub fn parse_header(header: &[u8; HEADER_LEN]) -> Option<u64> {
        let (magic, number) = header.split_at(8);
        let magic = u64::from_le_bytes(magic.try_into().ok()?);
        let number = u64::from_le_bytes(number.try_into().ok()?);
        (magic == MAGIC).then_some(number)
    }
}
