//! Cuts a byte stream into `\n`-terminated lines, each at most `max` bytes.
//!
//! A line that grows past `max` is not buffered further: the buffer is
//! dropped and [`Line::TooLong`] returned once, so a peer that sends a
//! megabyte without a newline costs the proxy `max` bytes, not a megabyte.
//! The shell answers it with a negative `RPRT` and closes.

/// One item out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Text(Vec<u8>),
    /// The current line passed the limit.
    TooLong,
}

#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    max: usize,
}

impl LineBuffer {
    pub fn new(max: usize) -> Self {
        LineBuffer {
            buf: Vec::with_capacity(max.min(256)),
            max: max.max(1),
        }
    }

    /// Bytes held for an unfinished line (never more than `max`).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; appends the complete lines to `out`. Stops at the first
    /// [`Line::TooLong`] (the rest of `bytes` is discarded: the connection
    /// is about to close).
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                out.push(Line::Text(line));
                continue;
            }
            if self.buf.len() >= self.max {
                self.buf = Vec::new();
                out.push(Line::TooLong);
                return;
            }
            self.buf.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(buf: &mut LineBuffer, bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        buf.push(bytes, &mut out);
        out
    }

    #[test]
    fn cuts_lines_across_reads_and_strips_cr() {
        let mut b = LineBuffer::new(16);
        assert_eq!(lines(&mut b, b"f\nm"), [Line::Text(b"f".to_vec())]);
        assert_eq!(b.pending(), 1);
        assert_eq!(
            lines(&mut b, b" VFOA\r\n\n"),
            [Line::Text(b"m VFOA".to_vec()), Line::Text(Vec::new())]
        );
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_not_buffered() {
        let mut b = LineBuffer::new(8);
        let out = lines(&mut b, &[b'x'; 1_000_000]);
        assert_eq!(out, [Line::TooLong]);
        assert!(b.pending() <= 8);
    }
}
