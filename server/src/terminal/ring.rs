//! A fixed-size buffer of the most recent terminal output, replayed to viewers that attach.

use std::collections::VecDeque;

use bytes::Bytes;

/// Keeps the last `capacity` bytes pushed into it; older bytes fall off the front.
#[derive(Debug)]
pub struct RingBuffer {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl RingBuffer {
    pub fn new(capacity: usize) -> Self {
        RingBuffer { bytes: VecDeque::with_capacity(capacity), capacity }
    }

    pub fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.bytes.extend(data);
    }

    /// A copy of what the buffer holds, oldest byte first.
    pub fn snapshot(&self) -> Bytes {
        let (front, back) = self.bytes.as_slices();
        let mut out = Vec::with_capacity(self.bytes.len());
        out.extend_from_slice(front);
        out.extend_from_slice(back);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_most_recent_bytes() {
        let mut ring = RingBuffer::new(5);
        ring.push(b"abc");
        assert_eq!(ring.snapshot(), "abc");
        ring.push(b"defg");
        assert_eq!(ring.snapshot(), "cdefg");
        ring.push(b"0123456789");
        assert_eq!(ring.snapshot(), "56789");
    }
}
