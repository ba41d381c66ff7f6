//! Giving back, once the runner is loaded, the memory that only start-up needed.
//!
//! An idle runner's resident size is mostly not its jobs: it is the pages of its own binary that
//! start-up touched (argument parsing, configuration, migrations, loading), heap chunks freed
//! after loading but kept by the allocator, and SQLite's page cache. [`release`] hands these
//! back after start-up and after each reload. The idle loop faults in again only the few pages
//! of code it runs (from the page cache, without reading the disk).

use crate::store::Store;

/// Give back what loading left behind: SQLite's page cache of the runner's connection (an SQLite
/// database), the allocator's free chunks, and the resident pages of the binary that start-up
/// touched ([`release_code`]).
pub fn release(store: &Store) {
    if store.engine() == crate::store::Engine::Sqlite {
        if let Err(e) = store.connection().execute_batch("PRAGMA shrink_memory") {
            tracing::debug!(error = %e, "PRAGMA shrink_memory failed");
        }
    }
    // SAFETY: malloc_trim only returns free memory to the kernel; no live allocation moves.
    unsafe {
        libc::malloc_trim(0);
    }
    release_code();
}

/// Drop this process's resident pages of its own binary's code and read-only data: they stay in
/// the page cache, and the next access maps them again (a minor fault, no disk read). After the
/// idle minute's housekeeping this keeps the sleeping runner's size independent of where the
/// linker happened to place that housekeeping's code: each fault maps a 64 KiB window around
/// the page it needs, so a few dozen scattered functions would otherwise keep a megabyte or two
/// resident between wake-ups.
///
/// The mappings are found in `/proc/self/smaps` once and then remembered: they never change
/// after start-up (see [`clean_binary_pages`]).
pub fn release_code() {
    static CLEAN: std::sync::OnceLock<Vec<(usize, usize)>> = std::sync::OnceLock::new();
    let ranges = CLEAN.get_or_init(|| match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => clean_binary_pages(&smaps, &own_binary()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read /proc/self/smaps");
            Vec::new()
        }
    });
    for &(start, len) in ranges {
        // SAFETY: the range is a private, read-only mapping of our own executable with no
        // copied-on-write page (see clean_binary_pages): dropping it only unmaps page cache
        // pages, and the next access maps the same bytes from the file again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}

/// The path `/proc/self/smaps` shows for our executable.
fn own_binary() -> String {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// (start, length) of each mapping of `binary` in `smaps` that can be dropped safely: private,
/// not writable, and without a single anonymous (copied-on-write) page. That keeps the
/// relocated read-only data (RELRO), whose pages differ from the file, and anything writable.
///
/// Only our own executable: the kernel and the loader mapped it before `main`, and nothing maps
/// over it afterwards (a library being loaded by another thread may briefly look read-only).
fn clean_binary_pages(smaps: &str, binary: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    // The mapping being read: (start, end, whether it qualifies so far).
    let mut current: Option<(usize, usize, bool)> = None;
    let mut finish = |mapping: Option<(usize, usize, bool)>| {
        if let Some((start, end, true)) = mapping {
            found.push((start, end - start));
        }
    };
    for line in smaps.lines() {
        // A mapping's line: `start-end perms offset device inode   path`, the path (which may
        // hold spaces) padded to a column; the lines after it are `Key:   value kB`.
        let mut fields = line.splitn(6, ' ');
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                finish(current.take());
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3).unwrap_or("").trim();
                let candidate = !binary.is_empty()
                    && path == binary
                    && perms.starts_with('r')
                    && perms.as_bytes().get(1) == Some(&b'-')
                    && perms.ends_with('p');
                current = Some((start, end, candidate));
                continue;
            }
        }
        let mut words = line.split_whitespace();
        if words.next() == Some("Anonymous:") && words.next() != Some("0") {
            if let Some(mapping) = current.as_mut() {
                mapping.2 = false;
            }
        }
    }
    finish(current);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55be01000000-55be01300000 r--p 00000000 fe:00 5416456                    /usr/bin/cronmgr
Rss:                1664 kB
Anonymous:             0 kB
55be01300000-55be01a00000 r-xp 00305000 fe:00 5416456                    /usr/bin/cronmgr
Rss:                5412 kB
Anonymous:             0 kB
55be01a00000-55be01b00000 r--p 00a7b000 fe:00 5416456                    /usr/bin/cronmgr
Rss:                1188 kB
Anonymous:          1188 kB
55be01b00000-55be01b06000 rw-p 00ba8000 fe:00 5416456                    /usr/bin/cronmgr
Anonymous:            24 kB
55be02000000-55be02900000 rw-p 00000000 00:00 0                          [heap]
Anonymous:          8692 kB
7f39e8a8a000-7f39e8a92000 rw-s 00000000 fe:00 10084434                   /var/lib/cronmgr/cronmgr.db-shm
Anonymous:             0 kB
7f39e9000000-7f39e9156000 r-xp 00028000 fe:00 1234                       /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f39e9200000-7f39e9201000 r--p 00000000 fe:00 4321                       /usr/bin/cronmgr (deleted)
Anonymous:             0 kB
";

    #[test]
    fn only_the_clean_read_only_mappings_of_our_binary() {
        assert_eq!(
            clean_binary_pages(SMAPS, "/usr/bin/cronmgr"),
            vec![(0x55be01000000, 0x300000), (0x55be01300000, 0x700000)]
        );
    }

    /// Resident kB of this (test) executable's mappings.
    fn own_resident_kb() -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let binary = own_binary();
        let mut ours = false;
        let mut kb = 0;
        for line in smaps.lines() {
            if line.split(' ').next().is_some_and(|f| f.contains('-')) && !line.starts_with("Rss") {
                ours = line.trim_end().ends_with(binary.as_str());
            } else if ours {
                if let Some(v) = line.strip_prefix("Rss:") {
                    kb += v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0);
                }
            }
        }
        kb
    }

    #[test]
    fn released_code_pages_leave_and_come_back_when_run() {
        let before = own_resident_kb();
        release_code();
        let after = own_resident_kb(); // runs code again: it faults back in
        release_code(); // the remembered ranges, again
        assert!(
            after < before,
            "resident {before} kB before, {after} kB after"
        );
        // Measuring ran code released a moment ago: it is resident again.
        assert!(own_resident_kb() > 0);
    }

    #[test]
    fn nothing_without_a_binary_path() {
        assert!(clean_binary_pages(SMAPS, "").is_empty());
    }
}
