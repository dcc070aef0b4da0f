//! A bounded tail of a byte stream, for keeping the end of a child's stderr.

use std::collections::VecDeque;

/// Keeps only the last `capacity` bytes pushed into it.
#[derive(Debug, Clone)]
pub struct Tail {
    buf: VecDeque<u8>,
    capacity: usize,
    dropped: u64,
}

impl Tail {
    /// A tail keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            dropped: 0,
        }
    }

    /// Appends bytes, discarding the oldest when over capacity.
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = if bytes.len() > self.capacity {
            self.dropped += (bytes.len() - self.capacity) as u64;
            &bytes[bytes.len() - self.capacity..]
        } else {
            bytes
        };
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.dropped += overflow as u64;
        }
        self.buf.extend(bytes);
    }

    /// How many bytes were discarded from the front.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept bytes as lossy UTF-8, trimmed, starting at a line boundary when bytes were dropped.
    pub fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        let mut s = String::from_utf8_lossy(&v).into_owned();
        if self.dropped > 0 {
            if let Some(pos) = s.find('\n') {
                s.drain(..=pos);
            }
        }
        s.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_end() {
        let mut t = Tail::new(8);
        t.push(b"abc\n");
        t.push(b"defgh\nij");
        assert_eq!(t.dropped(), 4);
        assert_eq!(t.text(), "ij");
        let mut t = Tail::new(4);
        t.push(b"0123456789");
        assert_eq!(t.dropped(), 6);
    }

    #[test]
    fn short_input_is_kept_whole() {
        let mut t = Tail::new(64);
        t.push(b"  error: boom\n");
        assert_eq!(t.text(), "error: boom");
    }
}
