//! A streaming, line-oriented rewriter for restore streams.
//!
//! Dumps can be gigabytes with single lines of many megabytes (bulk INSERTs, COPY rows), so the
//! filter never holds a whole dump or an arbitrary line: it looks only at the first bytes of each
//! line. Lines that start with one of the rule set's prefixes (short DDL such as `CREATE ROLE`)
//! are collected whole and handed to the rules; every other line streams straight through, or
//! is dropped while the rules are skipping a section.

use hasteward_exec::StreamFilter;

/// Longest line the rules are given whole; longer "interesting" lines pass through unchanged.
const MAX_RULE_LINE: usize = 1 << 20;

/// The decisions of one restore flavour.
pub trait LineRules: Send {
    /// Line prefixes the rules want to see whole.
    fn prefixes(&self) -> &[&'static [u8]];
    /// Handles one whole line (with its `\n`, if any), appending the replacement to `out`.
    fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>);
    /// True while lines that are not handed to [`LineRules::rewrite`] must be dropped.
    fn skipping(&self) -> bool {
        false
    }
}

enum Mode {
    /// At the start of a line, collecting enough bytes to decide.
    Start,
    /// Collecting a whole line for the rules.
    Collect,
    /// Passing the rest of the line through.
    Pass,
    /// Dropping the rest of the line.
    Drop,
}

/// A [`StreamFilter`] driven by [`LineRules`].
pub struct LineFilter<R: LineRules> {
    rules: R,
    mode: Mode,
    pending: Vec<u8>,
    longest_prefix: usize,
}

impl<R: LineRules> LineFilter<R> {
    /// A filter applying `rules`.
    pub fn new(rules: R) -> Self {
        let longest_prefix = rules.prefixes().iter().map(|p| p.len()).max().unwrap_or(0);
        Self {
            rules,
            mode: Mode::Start,
            pending: Vec::new(),
            longest_prefix,
        }
    }

    /// The rules, for inspection after the stream.
    pub fn rules(&self) -> &R {
        &self.rules
    }

    /// Decides what to do with a line starting with `head` (its first bytes, or all of it when
    /// `complete_line`). Returns `None` while more bytes are needed.
    fn decide(&self, head: &[u8], complete_line: bool) -> Option<Mode> {
        let mut could_match = false;
        for p in self.rules.prefixes() {
            if head.len() >= p.len() {
                if head.starts_with(p) {
                    return Some(Mode::Collect);
                }
            } else if p.starts_with(head) {
                could_match = true;
            }
        }
        if could_match && !complete_line && head.len() < self.longest_prefix {
            return None;
        }
        Some(if self.rules.skipping() {
            Mode::Drop
        } else {
            Mode::Pass
        })
    }

    fn finish_collected(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.pending);
        self.rules.rewrite(&line, out);
        self.mode = Mode::Start;
    }
}

impl<R: LineRules> StreamFilter for LineFilter<R> {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // Bytes input[run..i] pass through unchanged and are copied out in one go.
        let mut run = 0;
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            match self.mode {
                Mode::Pass => match memchr::memchr(b'\n', rest) {
                    Some(p) => {
                        i += p + 1;
                        self.mode = Mode::Start;
                    }
                    None => i = input.len(),
                },
                Mode::Drop => {
                    out.extend_from_slice(&input[run..i]);
                    match memchr::memchr(b'\n', rest) {
                        Some(p) => {
                            i += p + 1;
                            self.mode = Mode::Start;
                        }
                        None => i = input.len(),
                    }
                    run = i;
                }
                Mode::Start if self.pending.is_empty() => {
                    let line_end = memchr::memchr(b'\n', rest);
                    let line_len = line_end.map_or(rest.len(), |e| e + 1);
                    let head = &rest[..line_len.min(self.longest_prefix)];
                    match self.decide(head, line_end.is_some()) {
                        None => {
                            out.extend_from_slice(&input[run..i]);
                            self.pending.extend_from_slice(rest);
                            i = input.len();
                            run = i;
                        }
                        Some(Mode::Pass) => {
                            i += line_len;
                            if line_end.is_none() {
                                self.mode = Mode::Pass;
                            }
                        }
                        Some(Mode::Collect) => {
                            out.extend_from_slice(&input[run..i]);
                            if line_end.is_some() {
                                self.rules.rewrite(&rest[..line_len], out);
                            } else {
                                self.pending.extend_from_slice(rest);
                                self.mode = Mode::Collect;
                            }
                            i += line_len;
                            run = i;
                        }
                        Some(_) => {
                            out.extend_from_slice(&input[run..i]);
                            i += line_len;
                            run = i;
                            if line_end.is_none() {
                                self.mode = Mode::Drop;
                            }
                        }
                    }
                }
                Mode::Start => {
                    // A line start split across chunks: gather enough of it to decide.
                    out.extend_from_slice(&input[run..i]);
                    let newline = memchr::memchr(b'\n', rest);
                    let want = self
                        .longest_prefix
                        .saturating_sub(self.pending.len())
                        .max(1);
                    let take = newline.map_or(rest.len(), |e| e + 1).min(want);
                    self.pending.extend_from_slice(&rest[..take]);
                    i += take;
                    run = i;
                    let complete = self.pending.last() == Some(&b'\n');
                    match self.decide(&self.pending, complete) {
                        None => {}
                        Some(Mode::Collect) => {
                            self.mode = Mode::Collect;
                            if complete {
                                self.finish_collected(out);
                            }
                        }
                        Some(mode) => {
                            if matches!(mode, Mode::Pass) {
                                out.extend_from_slice(&self.pending);
                            }
                            self.pending.clear();
                            self.mode = if complete { Mode::Start } else { mode };
                        }
                    }
                }
                Mode::Collect => {
                    let (part, done) = match memchr::memchr(b'\n', rest) {
                        Some(p) => (&rest[..=p], true),
                        None => (rest, false),
                    };
                    self.pending.extend_from_slice(part);
                    i += part.len();
                    run = i;
                    if done {
                        self.finish_collected(out);
                    } else if self.pending.len() > MAX_RULE_LINE {
                        // Too long to be DDL the rules care about: let it through unchanged.
                        out.extend_from_slice(&self.pending);
                        self.pending.clear();
                        self.mode = Mode::Pass;
                    }
                }
            }
        }
        out.extend_from_slice(&input[run..]);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self.mode {
            Mode::Collect => self.finish_collected(out),
            Mode::Start if !self.pending.is_empty() => {
                if !self.rules.skipping() {
                    out.extend_from_slice(&self.pending);
                }
                self.pending.clear();
            }
            _ => {}
        }
    }
}

/// Runs a whole input through a filter in chunks of `chunk` bytes (tests and small inputs).
pub fn apply<R: LineRules>(filter: &mut LineFilter<R>, input: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        filter.feed(part, &mut out);
    }
    filter.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper {
        skip: bool,
    }

    impl LineRules for Upper {
        fn prefixes(&self) -> &[&'static [u8]] {
            &[b"create ", b"-- skip", b"-- resume"]
        }
        fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>) {
            if line.starts_with(b"-- skip") {
                self.skip = true;
            } else if line.starts_with(b"-- resume") {
                self.skip = false;
            } else {
                out.extend(line.iter().map(u8::to_ascii_uppercase));
            }
        }
        fn skipping(&self) -> bool {
            self.skip
        }
    }

    const INPUT: &[u8] = b"create table t;\ninsert 1;\ncreat\n-- skip\ninsert 2;\ncreate x;\n-- resume\nlast line without newline";

    #[test]
    fn same_output_for_every_chunk_size() {
        let expected: &[u8] =
            b"CREATE TABLE T;\ninsert 1;\ncreat\nCREATE X;\nlast line without newline";
        for chunk in 1..INPUT.len() + 2 {
            let mut f = LineFilter::new(Upper { skip: false });
            assert_eq!(
                String::from_utf8(apply(&mut f, INPUT, chunk)).unwrap(),
                String::from_utf8(expected.to_vec()).unwrap(),
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn long_plain_lines_stream_through() {
        let mut input = vec![b'x'; 3 << 20];
        input.push(b'\n');
        let mut f = LineFilter::new(Upper { skip: false });
        assert_eq!(apply(&mut f, &input, 65536), input);
    }
}
