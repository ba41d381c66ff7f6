//! What a child wrote: a capture with flat memory (head + tail), and the live log file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

/// Combined stdout+stderr, kept within `cap` bytes: the first half as it came, the last half in a
/// ring. Memory stays at `cap` however much the child writes.
#[derive(Debug)]
pub(super) struct Capture {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    total: u64,
}

impl Capture {
    pub(super) fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        let tail_cap = cap - head_cap;
        Capture {
            head: Vec::new(),
            head_cap,
            tail: VecDeque::new(),
            tail_cap,
            total: 0,
        }
    }

    pub(super) fn push(&mut self, mut bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let n = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// Total bytes pushed, kept or not.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// The text, lossy for bytes that are not UTF-8 and for NUL bytes (each becomes U+FFFD: a
    /// PostgreSQL text holds no NUL, and the end of an execution that printed one could not be
    /// recorded), with a marker where bytes were dropped.
    pub(super) fn into_text(self) -> String {
        let tail = Vec::from(self.tail);
        let kept = (self.head.len() + tail.len()) as u64;
        if kept == self.total {
            let mut all = self.head;
            all.extend_from_slice(&tail);
            return text(&all);
        }
        // Cut where a character starts, so no half character turns into a replacement glyph.
        let head = trim_partial_end(&self.head);
        let tail = trim_partial_start(&tail);
        let omitted = self.total - (head.len() + tail.len()) as u64;
        format!(
            "{}\n[… {} of output omitted …]\n{}",
            text(head),
            human_bytes(omitted),
            text(tail)
        )
    }
}

/// Drop a UTF-8 sequence cut short at the end (at most 3 bytes); invalid bytes stay.
fn trim_partial_end(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(3) {
        let at = bytes.len() - back;
        let len = match bytes[at] {
            0x80..=0xBF => continue,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return bytes,
        };
        return if len > back { &bytes[..at] } else { bytes };
    }
    bytes
}

/// Skip continuation bytes of a character whose start was dropped (at most 3 bytes).
fn trim_partial_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|b| (0x80..=0xBF).contains(*b))
        .count();
    &bytes[skip..]
}

/// `512 bytes`, `64.0 KiB`, `48.2 MiB`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The file `cronmgr logs --follow` reads while the job runs. Writing stops after `cap` bytes with
/// a one-line marker; a write error stops it too (the job is not failed for its log).
pub(super) struct LiveLog {
    file: File,
    path: PathBuf,
    cap: usize,
    written: usize,
    stopped: bool,
}

impl LiveLog {
    pub(super) fn new(file: File, path: PathBuf, cap: usize) -> Self {
        LiveLog {
            file,
            path,
            cap,
            written: 0,
            stopped: false,
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        if self.stopped {
            return;
        }
        let n = (self.cap - self.written).min(bytes.len());
        let mut result = self.file.write_all(&bytes[..n]);
        self.written += n;
        if result.is_ok() && n < bytes.len() {
            let marker = format!(
                "\n[… output cap of {} reached: the rest is not logged here …]\n",
                human_bytes(self.cap as u64)
            );
            result = self.file.write_all(marker.as_bytes());
            self.stopped = true;
        }
        if let Err(err) = result {
            tracing::warn!(path = %self.path.display(), "writing the live log failed, stopping it: {err}");
            self.stopped = true;
        }
    }
}

/// Bytes as text: invalid UTF-8 and NUL bytes become U+FFFD.
fn text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(cap: usize, chunks: &[&[u8]]) -> Capture {
        let mut c = Capture::new(cap);
        for chunk in chunks {
            c.push(chunk);
        }
        c
    }

    #[test]
    fn small_output_is_kept_whole() {
        let c = capture(16, &[b"hello ", b"world"]);
        assert_eq!(c.total(), 11);
        assert_eq!(c.into_text(), "hello world");
    }

    #[test]
    fn output_exactly_at_cap_has_no_marker() {
        let c = capture(8, &[b"abcd", b"efgh"]);
        assert_eq!(c.into_text(), "abcdefgh");
    }

    #[test]
    fn large_output_keeps_head_and_tail_with_marker() {
        let mut c = Capture::new(8);
        c.push(b"HEAD");
        for _ in 0..1000 {
            c.push(b"xxxxxxxxxx");
        }
        c.push(b"TAIL");
        assert_eq!(c.total(), 10_008);
        assert_eq!(c.into_text(), "HEAD\n[… 9.8 KiB of output omitted …]\nTAIL");
    }

    #[test]
    fn one_huge_chunk_keeps_head_and_tail() {
        let mut data = vec![b'.'; 100];
        data[..2].copy_from_slice(b"AB");
        data[98..].copy_from_slice(b"YZ");
        let c = capture(4, &[&data]);
        assert_eq!(c.into_text(), "AB\n[… 96 bytes of output omitted …]\nYZ");
    }

    #[test]
    fn memory_stays_within_cap() {
        let mut c = Capture::new(1024);
        let chunk = vec![b'z'; 4096];
        for _ in 0..100 {
            c.push(&chunk);
        }
        assert_eq!(c.head.len() + c.tail.len(), 1024);
        assert_eq!(c.total(), 409_600);
    }

    #[test]
    fn cut_characters_are_dropped_not_garbled() {
        // "é" is 2 bytes, "€" is 3: the head cut falls inside "€", the tail cut inside "é".
        let c = capture(6, &[b"ab\xE2\x82\xAC", b"-------", "xé!!".as_bytes()]);
        assert_eq!(c.into_text(), "ab\n[… 13 bytes of output omitted …]\n!!");
    }

    #[test]
    fn invalid_bytes_are_lossy() {
        let c = capture(64, &[b"\xFF\xFEabc"]);
        assert_eq!(c.into_text(), "\u{FFFD}\u{FFFD}abc");
        let mut c = Capture::new(64);
        c.push(b"a\0b\0");
        assert_eq!(
            c.into_text(),
            "a\u{FFFD}b\u{FFFD}",
            "no NUL reaches the store"
        );
        let c = capture(4, &[b"a\xFF", b"0123456789", b"\xFEb"]);
        assert_eq!(
            c.into_text(),
            "a\u{FFFD}\n[… 10 bytes of output omitted …]\n\u{FFFD}b"
        );
    }

    #[test]
    fn zero_cap_keeps_only_the_marker() {
        let c = capture(0, &[b"abc"]);
        assert_eq!(c.into_text(), "\n[… 3 bytes of output omitted …]\n");
        assert_eq!(capture(0, &[]).into_text(), "");
    }

    #[test]
    fn sizes_read_like_a_human_wrote_them() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(50_541_363), "48.2 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn live_log_stops_at_cap_with_a_marker() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("live.log");
        let mut log = LiveLog::new(File::create(&path)?, path.clone(), 5);
        log.write(b"abc");
        log.write(b"defgh");
        log.write(b"ijk");
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(
            text,
            "abcde\n[… output cap of 5 bytes reached: the rest is not logged here …]\n"
        );
        Ok(())
    }
}
