//! Giving back, once the runner is loaded, the memory that only start-up needed, and keeping the
//! little that the idle loop runs.
//!
//! An idle runner's resident size is mostly not its jobs: it is the pages of its own binary that
//! start-up touched (argument parsing, configuration, migrations, loading), heap chunks freed
//! after loading but kept by the allocator, and SQLite's page cache. [`release`] hands these
//! back after start-up and after each reload.
//!
//! The idle loop's own code is the opposite case: it runs once a minute, for well under a
//! millisecond. Left to the kernel, pages used that rarely are the first a proactive reclaimer
//! (DAMON's `pageout` scheme pages out memory unused for a minute) drops from the page cache,
//! and every wake-up then sleeps on disk reads to get its code back: more CPU than the minute's
//! work and one blocking wait per read. [`keep_idle_code`] locks the pages a quiet minute ran,
//! so they stay; [`release_code`] drops the rest after busy minutes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::store::Store;

/// Most bytes kept locked for the idle loop. A quiet minute's code in our binary and the C
/// library, with the kernel's fault-around (each fault maps the 64 KiB around the page it
/// needs), measured 2.2–2.5 MB; more means something else ran and is not worth pinning.
const KEEP_BUDGET: usize = 3 << 20;

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

/// Drop this process's resident pages of its own binary's (and the C runtime's) code and read-only
/// data, except those [`keep_idle_code`] locked: they stay in the page cache, and the next access
/// maps them again (a minor fault, no disk read, unless the kernel reclaimed them meanwhile). This
/// keeps the sleeping runner's size independent of where the linker placed the code that ran:
/// each fault maps a 64 KiB window around the page it needs, so a few dozen scattered functions
/// would otherwise keep a megabyte or two resident.
pub fn release_code() {
    with_code(|code| code.settle(false));
}

/// Like [`release_code`], after a minute in which the runner ran nothing but its idle loop: the
/// pages that minute mapped are locked instead of dropped (up to [`KEEP_BUDGET`]), so a
/// reclaimer never takes them and the next minutes run without a disk read. Pages already locked
/// stay; a minute that runs a new branch adds its pages. Without the privilege or the
/// `RLIMIT_MEMLOCK` room to lock, this is [`release_code`].
pub fn keep_idle_code() {
    with_code(|code| code.settle(true));
}

/// The binary's pages, found once: its mappings never change after start-up (see
/// [`clean_binary_pages`]).
static CODE: Mutex<Option<CodePages>> = Mutex::new(None);

fn with_code(f: impl FnOnce(&mut CodePages)) {
    let mut guard = CODE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(guard.get_or_insert_with(CodePages::of_this_process));
}

/// The clean read-only mappings of our binary and the C runtime, and which of their pages are
/// locked.
struct CodePages {
    ranges: Vec<CodeRange>,
    /// `/proc/self/pagemap`: which pages are mapped now. Without it nothing is locked and every
    /// release drops whole mappings.
    pagemap: Option<File>,
    page: usize,
    locked_bytes: usize,
    /// Cleared by the first refusal to lock (no privilege, `RLIMIT_MEMLOCK` reached).
    can_lock: bool,
    /// Scratch for one mapping's pagemap entries.
    entries: Vec<u8>,
    /// Page faults of this process when the last settle ended: none since means no page was
    /// mapped since, so there is nothing to drop or lock (and no need to read the pagemap).
    faults_settled: Option<i64>,
}

struct CodeRange {
    start: usize,
    locked: Vec<bool>,
}

impl CodePages {
    fn of_this_process() -> Self {
        let ranges = match std::fs::read_to_string("/proc/self/smaps") {
            Ok(smaps) => clean_binary_pages(&smaps, &own_binary()),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read /proc/self/smaps");
                Vec::new()
            }
        };
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let pagemap = File::open("/proc/self/pagemap")
            .map_err(|e| tracing::debug!(error = %e, "cannot read /proc/self/pagemap"))
            .ok();
        Self::new(ranges, pagemap, page)
    }

    fn new(ranges: Vec<(usize, usize)>, pagemap: Option<File>, page: usize) -> Self {
        CodePages {
            ranges: ranges
                .into_iter()
                .map(|(start, len)| CodeRange {
                    start,
                    locked: vec![false; len / page],
                })
                .collect(),
            pagemap,
            page,
            locked_bytes: 0,
            can_lock: true,
            entries: Vec::new(),
            faults_settled: None,
        }
    }

    /// Drop (or, with `keep`, lock) each run of mapped, unlocked pages.
    fn settle(&mut self, keep: bool) {
        let faults = page_faults();
        if faults.is_some() && faults == self.faults_settled {
            return; // an idle minute whose every page is locked: the usual case
        }
        let before = self.locked_bytes;
        for i in 0..self.ranges.len() {
            let Some(present) = self.present(i) else {
                let range = &self.ranges[i];
                if !range.locked.contains(&true) {
                    drop_pages(range.start, range.locked.len() * self.page);
                }
                continue;
            };
            for (first, count) in unlocked_runs(&present, &self.ranges[i].locked) {
                let (start, len) = (self.ranges[i].start + first * self.page, count * self.page);
                if keep && self.lock(start, len) {
                    self.ranges[i].locked[first..first + count].fill(true);
                } else {
                    drop_pages(start, len);
                }
            }
        }
        if self.locked_bytes > before {
            tracing::debug!(
                added_kb = (self.locked_bytes - before) / 1024,
                kept_kb = self.locked_bytes / 1024,
                "locked the idle loop's code"
            );
        }
        self.faults_settled = page_faults();
    }

    fn lock(&mut self, start: usize, len: usize) -> bool {
        if !self.can_lock || self.locked_bytes + len > KEEP_BUDGET {
            return false;
        }
        // SAFETY: mlock only pins pages of a mapping we own; it moves and changes nothing.
        if unsafe { libc::mlock(start as *const libc::c_void, len) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::debug!(error = %e, "cannot lock the idle loop's code; it may be read back from disk after a quiet minute");
            self.can_lock = false;
            return false;
        }
        self.locked_bytes += len;
        true
    }

    /// Which pages of mapping `i` are mapped into this process now.
    fn present(&mut self, i: usize) -> Option<Vec<bool>> {
        let file = self.pagemap.as_ref()?;
        let range = &self.ranges[i];
        self.entries.resize(range.locked.len() * 8, 0);
        let offset = (range.start / self.page * 8) as u64;
        if let Err(e) = file.read_exact_at(&mut self.entries, offset) {
            tracing::debug!(error = %e, "cannot read /proc/self/pagemap");
            self.pagemap = None;
            return None;
        }
        Some(
            self.entries
                .chunks_exact(8)
                .map(|entry| entry[7] & 0x80 != 0) // bit 63: present
                .collect(),
        )
    }
}

/// Page faults (minor and major) of this process so far, all threads.
fn page_faults() -> Option<i64> {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    Some(usage.ru_minflt + usage.ru_majflt)
}

/// Unmap a clean range of our binary or the C runtime (no locked page in it).
fn drop_pages(start: usize, len: usize) {
    // SAFETY: the range is within a private, read-only file mapping with no copied-on-write page,
    // mapped before `main` and never unmapped (see clean_binary_pages): dropping it only unmaps
    // page cache pages, and the next access maps the same bytes from the file again.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
}

/// (first page, count) of each run of pages present and not locked.
fn unlocked_runs(present: &[bool], locked: &[bool]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut run: Option<usize> = None;
    for (i, (&p, &l)) in present.iter().zip(locked).enumerate() {
        match (p && !l, run) {
            (true, None) => run = Some(i),
            (false, Some(first)) => {
                runs.push((first, i - first));
                run = None;
            }
            _ => {}
        }
    }
    if let Some(first) = run {
        runs.push((first, present.len().min(locked.len()) - first));
    }
    runs
}

/// Whether `path` is one of the libraries Rust's standard library links against (the C library,
/// its maths library, the unwinder, the loader). Their pages are mostly shared with every other
/// process; the runner's own mappings of them count in its resident size all the same.
fn runtime_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    path.starts_with('/')
        && ["libc.so.", "libm.so.", "libgcc_s.so.", "ld-linux"]
            .iter()
            .any(|lib| name.starts_with(lib))
}

/// The path `/proc/self/smaps` shows for our executable.
fn own_binary() -> String {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// (start, length) of each mapping in `smaps` that can be dropped safely: of our executable
/// `binary` or a [`runtime_library`], private, not writable, and without a single anonymous
/// (copied-on-write) page. That keeps the relocated read-only data (RELRO), whose pages differ
/// from the file, and anything writable.
///
/// The ranges are remembered, so only files that stay mapped where they are: the kernel and the
/// loader mapped these before `main`, and nothing unloads them or maps over them afterwards (a
/// library `dlopen`ed later could be unloaded, and its address reused by other memory).
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
                let candidate = ((!binary.is_empty() && path == binary) || runtime_library(path))
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
7f39e9156000-7f39e915a000 rw-p 0017e000 fe:00 1234                       /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:            16 kB
7f39e9170000-7f39e9180000 r-xp 00002000 fe:00 2345                       /usr/lib/x86_64-linux-gnu/libnss_systemd.so.2
Anonymous:             0 kB
7f39e9190000-7f39e91b0000 r-xp 00001000 fe:00 3456                       /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
Anonymous:             0 kB
7f39e9200000-7f39e9201000 r--p 00000000 fe:00 4321                       /usr/bin/cronmgr (deleted)
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_our_binary_and_the_runtime_libraries() {
        // Not the RELRO (copied on write), the writable data, the database's shared memory, a
        // library loaded later (it could be unloaded), nor an older binary.
        assert_eq!(
            clean_binary_pages(SMAPS, "/usr/bin/cronmgr"),
            vec![
                (0x55be01000000, 0x300000),
                (0x55be01300000, 0x700000),
                (0x7f39e9000000, 0x156000),
                (0x7f39e9190000, 0x20000),
            ]
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

    /// The tests that map, drop and lock this process's code pages, one at a time.
    static PAGES: Mutex<()> = Mutex::new(());

    #[test]
    fn released_code_pages_leave_and_come_back_when_run() {
        let _one = PAGES.lock().unwrap_or_else(|p| p.into_inner());
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
    fn without_a_binary_path_only_the_runtime_libraries() {
        assert_eq!(
            clean_binary_pages(SMAPS, ""),
            vec![(0x7f39e9000000, 0x156000), (0x7f39e9190000, 0x20000)]
        );
        assert!(runtime_library("/lib/ld-linux-aarch64.so.1"));
        assert!(!runtime_library("libc.so.6"));
        assert!(!runtime_library("/usr/lib/x86_64-linux-gnu/libcrypt.so.1"));
    }

    #[test]
    fn runs_of_present_unlocked_pages() {
        let (t, f) = (true, false);
        assert_eq!(
            unlocked_runs(&[t, t, f, t, t, t, f], &[f, f, f, f, t, f, f]),
            vec![(0, 2), (3, 1), (5, 1)]
        );
        assert_eq!(unlocked_runs(&[f, t, t], &[f, f, f]), vec![(1, 2)]);
        assert_eq!(unlocked_runs(&[t, t], &[t, t]), vec![]);
        assert_eq!(unlocked_runs(&[], &[]), vec![]);
    }

    #[test]
    fn touching_a_new_page_counts_as_a_fault() {
        let before = page_faults().expect("getrusage");
        // SAFETY: a fresh private anonymous page, written once and unmapped.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            std::ptr::write_volatile(page.cast::<u8>(), 1);
            libc::munmap(page, 4096);
        }
        assert!(page_faults().expect("getrusage") > before);
    }

    /// VmLck of this process, kB.
    fn locked_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn kept_code_stays_resident_through_releases() {
        let _one = PAGES.lock().unwrap_or_else(|p| p.into_inner());
        let mut code = CodePages::of_this_process();
        assert!(!code.ranges.is_empty() && code.pagemap.is_some());
        let before = locked_kb();
        code.settle(true);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given; geteuid has no preconditions.
        let may_lock = unsafe {
            libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0
                && (libc::geteuid() == 0 || limit.rlim_cur >= (KEEP_BUDGET as u64) * 2)
        };
        if !may_lock {
            // No room to lock: everything was dropped instead, nothing pinned.
            assert_eq!(code.locked_bytes, 0);
            return;
        }
        // Whatever this test process ran, locked up to the budget and no more.
        assert!(code.locked_bytes > 0 && code.locked_bytes <= KEEP_BUDGET);
        assert_eq!(locked_kb() - before, (code.locked_bytes / 1024) as u64);
        // A release drops the rest but not what was kept: each kept page is still mapped.
        code.settle(false);
        let still: usize = (0..code.ranges.len())
            .map(|i| {
                let present = code.present(i).expect("pagemap");
                let range = &code.ranges[i];
                present
                    .iter()
                    .zip(&range.locked)
                    .filter(|&(&p, &l)| p && l)
                    .count()
            })
            .sum();
        assert_eq!(still * code.page, code.locked_bytes);
        for range in &code.ranges {
            // SAFETY: unlocks this test's own locks; the pages stay mapped.
            unsafe {
                libc::munlock(
                    range.start as *const libc::c_void,
                    range.locked.len() * code.page,
                );
            }
        }
        assert_eq!(locked_kb(), before);
    }
}
