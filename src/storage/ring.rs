//! The ring buffer: a partition's most recent acknowledged records, in memory, bounded in bytes.
//!
//! Offsets are dense, so the record for an offset is found by subtraction, and tail reads and live
//! subscribers never touch the disk. Eviction drops the oldest records first.

use std::collections::VecDeque;

use super::record::Record;

#[derive(Debug)]
pub struct RingBuffer {
    records: VecDeque<Record>,
    bytes: usize,
    capacity_bytes: usize,
}

impl RingBuffer {
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            records: VecDeque::new(),
            bytes: 0,
            capacity_bytes,
        }
    }

    /// Appends records that directly follow what the ring holds, evicting the oldest to stay within
    /// the byte bound. A gap (records not following on) empties the ring first.
    pub fn extend(&mut self, records: impl IntoIterator<Item = Record>) {
        for rec in records {
            if self.end_offset().is_some_and(|end| end != rec.offset) {
                self.records.clear();
                self.bytes = 0;
            }
            self.bytes += rec.encoded_len();
            self.records.push_back(rec);
            while self.bytes > self.capacity_bytes {
                match self.records.pop_front() {
                    Some(old) => self.bytes -= old.encoded_len(),
                    None => break,
                }
            }
        }
    }

    /// Drops records below `offset` (after retention moved the log start past them).
    pub fn trim_before(&mut self, offset: u64) {
        while self.records.front().is_some_and(|r| r.offset < offset) {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= old.encoded_len();
            }
        }
    }

    pub fn first_offset(&self) -> Option<u64> {
        self.records.front().map(|r| r.offset)
    }

    fn end_offset(&self) -> Option<u64> {
        self.records.back().map(|r| r.offset + 1)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records from `offset` on, if the ring holds `offset`: at most `max_records`, and within
    /// `max_bytes` of keys and values except that the first record always comes.
    pub fn read(&self, offset: u64, max_records: usize, max_bytes: usize) -> Option<Vec<Record>> {
        let first = self.first_offset()?;
        if offset < first || offset >= self.end_offset()? {
            return None;
        }
        let skip = (offset - first) as usize;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for rec in self.records.iter().skip(skip).take(max_records) {
            let size = rec.key.len() + rec.value.len();
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(rec.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(offset: u64) -> Record {
        Record {
            offset,
            timestamp: 0,
            key: Bytes::new(),
            value: Bytes::from(vec![b'x'; 64]),
            headers: Vec::new(),
        }
    }

    #[test]
    fn bounded_and_serves_only_what_it_holds() {
        let size = rec(0).encoded_len();
        let mut ring = RingBuffer::new(size * 10);
        ring.extend((0..25).map(rec));
        assert_eq!(ring.len(), 10);
        assert!(ring.bytes() <= size * 10);
        assert_eq!(ring.first_offset(), Some(15));
        assert!(ring.read(14, 10, 1 << 20).is_none());
        assert!(ring.read(25, 10, 1 << 20).is_none());
        let got = ring.read(20, 3, 1 << 20).unwrap();
        assert_eq!(
            got.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![20, 21, 22]
        );
        assert_eq!(
            ring.read(20, 10, 1).unwrap().len(),
            1,
            "first record always comes"
        );
        assert_eq!(ring.read(20, 10, 130).unwrap().len(), 2);
    }

    #[test]
    fn gap_resets_and_oversized_record_is_not_kept() {
        let mut ring = RingBuffer::new(1000);
        ring.extend((0..3).map(rec));
        ring.extend([rec(10)]);
        assert_eq!(ring.first_offset(), Some(10));
        assert_eq!(ring.len(), 1);
        let mut small = RingBuffer::new(10);
        small.extend([rec(0)]);
        assert!(small.is_empty());
    }
}
