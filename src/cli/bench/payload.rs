//! Bench record values and their verification.
//!
//! A value is printable ASCII so that every transport (gRPC, legacy frames, JSON over HTTP)
//! carries it unchanged:
//!
//! ```text
//! pppppppp ssssssssssssssss cccccccc filler...
//! producer  sequence         crc32c   (hex, 8 + 16 + 8 = 32 bytes, no spaces)
//! ```
//! The CRC32C covers the producer and sequence digits and the filler, and the filler depends on
//! the sequence, so a value that is corrupted, truncated, or swapped with another fails.
//! The [`Verifier`] checks, per consumer, that each partition's offsets go up by exactly one, that
//! every value verifies, and that every acknowledged (producer, sequence) arrives exactly once.

use std::collections::HashMap;

/// Bytes of the value's header (producer, sequence, checksum).
pub const HEADER: usize = 32;
/// Most verification errors kept with their message (the rest are only counted).
const KEPT_ERRORS: usize = 20;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn hex(out: &mut Vec<u8>, v: u64, digits: usize) {
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((v >> (i * 4)) & 0xf) as usize]);
    }
}

fn unhex(b: &[u8]) -> Option<u64> {
    // Lowercase only, as written: any other byte is damage.
    b.iter().try_fold(0u64, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

/// What follows a value's header (formatv2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The alphabet rotated by the sequence, repeated.
    Filler,
    /// A JSON event (user, session, page, device...) that varies with the sequence, as an
    /// application would log it: compressible like real events, unlike random bytes.
    Json,
}

const PAGES: [&str; 8] = [
    "/",
    "/products",
    "/products/espresso-machine",
    "/cart",
    "/checkout",
    "/account/orders",
    "/search?q=grinder",
    "/products/milk-frother",
];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
];

/// A JSON event for record `sequence`, padded or cut to `len` bytes.
fn json_event(sequence: u64, len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let mut i = 0u64;
    while out.len() - start < len {
        let n = sequence.wrapping_mul(31).wrapping_add(i);
        let event = format!(
            r#"{{"type":"page_view","ts":{},"user_id":"u-{:06}","session":"s-{:08x}","page":"{}","referrer":"{}","device":{{"ua":"{}","screen":"{}x{}"}},"cart_items":{},"latency_ms":{}}},"#,
            1_700_000_000_000u64 + sequence * 7 + i,
            n % 50_000,
            n / 20,
            PAGES[(n % 8) as usize],
            PAGES[((n / 8) % 8) as usize],
            AGENTS[(n % 3) as usize],
            1280 + (n % 4) * 160,
            720 + (n % 3) * 180,
            n % 5,
            20 + n % 300,
        );
        out.extend_from_slice(event.as_bytes());
        i += 1;
    }
    out.truncate(start + len);
}

/// The value producer `producer` sends as its record number `sequence`, `size` bytes long
/// (at least [`HEADER`]).
#[cfg(test)]
pub fn encode(producer: u32, sequence: u64, size: usize) -> Vec<u8> {
    encode_kind(producer, sequence, size, Kind::Filler)
}

/// [`encode`] with the given kind of filler.
pub fn encode_kind(producer: u32, sequence: u64, size: usize, kind: Kind) -> Vec<u8> {
    let size = size.max(HEADER);
    let mut v = Vec::with_capacity(size);
    hex(&mut v, u64::from(producer), 8);
    hex(&mut v, sequence, 16);
    v.extend_from_slice(b"00000000");
    if kind == Kind::Json {
        json_event(sequence, size - HEADER, &mut v);
    }
    // The filler is the alphabet rotated by the sequence, repeated: copied in slices, since this
    // runs for every record the benchmark sends.
    let start = (sequence % 64) as usize;
    let rotated: [u8; 64] = std::array::from_fn(|i| ALPHABET[(start + i) % ALPHABET.len()]);
    while v.len() < size {
        let take = (size - v.len()).min(64);
        v.extend_from_slice(&rotated[..take]);
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&v[..24]), &v[HEADER..]);
    let mut digits = Vec::with_capacity(8);
    hex(&mut digits, u64::from(crc), 8);
    v[24..HEADER].copy_from_slice(&digits);
    v
}

/// The producer and sequence of a value, if it verifies.
///
/// # Errors
/// What is wrong with the value.
pub fn decode(value: &[u8], size: usize) -> Result<(u32, u64), String> {
    if value.len() != size.max(HEADER) {
        return Err(format!(
            "value of {} bytes, expected {}",
            value.len(),
            size.max(HEADER)
        ));
    }
    let field = |r: std::ops::Range<usize>| unhex(&value[r]).ok_or("header is not hex");
    let producer = field(0..8)? as u32;
    let sequence = field(8..24)?;
    let stored = field(24..HEADER)? as u32;
    let computed = crc32c::crc32c_append(crc32c::crc32c(&value[..24]), &value[HEADER..]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch for producer {producer} sequence {sequence}: stored {stored:08x}, \
             computed {computed:08x}"
        ));
    }
    // The filler repeats the alphabet rotated by the sequence: compared 64 bytes at a time (a
    // byte-by-byte zip with a cycled iterator cost the consumer more than the broker's read).
    let start = (sequence % 64) as usize;
    let rotated: [u8; 64] = std::array::from_fn(|i| ALPHABET[(start + i) % ALPHABET.len()]);
    let filler_ok = value[HEADER..].chunks(64).all(|c| c == &rotated[..c.len()]);
    if !filler_ok {
        return Err(format!(
            "producer {producer} sequence {sequence}: filler does not match its sequence"
        ));
    }
    Ok((producer, sequence))
}

/// One bit per sequence number of one producer.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    count: u64,
}

impl Seen {
    /// Marks `seq`; false when it was already marked.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let was = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        if !was {
            self.count += 1;
        }
        !was
    }
}

/// Checks what one consumer receives.
pub struct Verifier {
    size: usize,
    next_offset: HashMap<(usize, u32), u64>,
    seen: Vec<Seen>,
    pub received: u64,
    pub errors: Vec<String>,
    pub error_count: u64,
}

impl Verifier {
    pub fn new(producers: u32, size: usize) -> Self {
        Self {
            size,
            next_offset: HashMap::new(),
            seen: (0..producers).map(|_| Seen::default()).collect(),
            received: 0,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    fn fail(&mut self, message: String) {
        self.error_count += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(message);
        }
    }

    /// Checks one record of topic number `topic`. Topics are fresh, so each partition starts at 0.
    pub fn check(&mut self, topic: usize, partition: u32, offset: u64, value: &[u8]) {
        self.received += 1;
        let next = self.next_offset.entry((topic, partition)).or_insert(0);
        if offset != *next {
            let expected = *next;
            *next = offset + 1;
            self.fail(format!(
                "topic {topic} partition {partition}: offset {offset} arrived, expected {expected}"
            ));
        } else {
            *next += 1;
        }
        match decode(value, self.size) {
            Err(e) => self.fail(format!(
                "topic {topic} partition {partition} offset {offset}: {e}"
            )),
            Ok((producer, seq)) => match self.seen.get_mut(producer as usize) {
                None => self.fail(format!("offset {offset}: unknown producer {producer}")),
                Some(s) => {
                    if !s.insert(seq) {
                        self.fail(format!(
                            "producer {producer} sequence {seq} arrived twice (offset {offset})"
                        ));
                    }
                }
            },
        }
    }

    /// Final check against what each producer had acknowledged (`acked[p]` sequences, from 0).
    pub fn finish(&mut self, acked: &[u64]) {
        for (p, &n) in acked.iter().enumerate() {
            let got = self.seen.get(p).map_or(0, |s| s.count);
            if got != n {
                self.fail(format!(
                    "producer {p}: {got} distinct records arrived, {n} were acknowledged"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_detect_damage() {
        for size in [0, 32, 33, 100, 1024] {
            let v = encode(3, 123_456_789, size);
            assert_eq!(v.len(), size.max(HEADER));
            assert!(v.iter().all(u8::is_ascii_graphic));
            assert_eq!(decode(&v, size), Ok((3, 123_456_789)));
            for i in 0..v.len() {
                let mut bad = v.clone();
                bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
                assert!(decode(&bad, size).is_err(), "size {size} byte {i}");
            }
        }
        // A value moved to another sequence's place does not pass as that sequence.
        assert_ne!(encode(0, 1, 100)[HEADER..], encode(0, 2, 100)[HEADER..]);
    }

    #[test]
    fn verifier_finds_gaps_duplicates_and_missing() {
        let mut v = Verifier::new(2, 40);
        v.check(0, 0, 0, &encode(0, 0, 40));
        v.check(0, 0, 1, &encode(1, 0, 40));
        v.check(0, 1, 0, &encode(0, 1, 40));
        v.finish(&[2, 1]);
        assert_eq!(v.error_count, 0, "{:?}", v.errors);
        let mut v = Verifier::new(1, 40);
        v.check(0, 0, 0, &encode(0, 0, 40));
        v.check(0, 0, 2, &encode(0, 0, 40));
        v.finish(&[2]);
        assert_eq!(v.error_count, 3, "{:?}", v.errors);
    }
}
