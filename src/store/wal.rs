//! The WAL-index header of an SQLite database: the first 48 bytes of `<db>-shm`, which every
//! commit rewrites (its change counter, frame count and checksums:
//! <https://www.sqlite.org/walformat.html>). Read with one `pread`, none of SQLite's code, it
//! tells the runner's loop whether anyone committed and how long the WAL has grown, so an idle
//! minute stays cheap and keeps few pages.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{Backend, Store};

/// `<db>-shm`, opened at the first read (SQLite makes it with the first transaction) and again
/// if it was removed and made anew (by hand: SQLite keeps it while we are connected), since an
/// unlinked file would never change again.
struct WalIndex {
    path: PathBuf,
    file: Option<File>,
}

impl WalIndex {
    fn of(db: &Path) -> WalIndex {
        let mut path = db.as_os_str().to_owned();
        path.push("-shm");
        WalIndex {
            path: PathBuf::from(path),
            file: None,
        }
    }

    /// The header as it is now; None if the file is not there or too short.
    fn header(&mut self) -> Option<[u8; 48]> {
        if self
            .file
            .as_ref()
            .is_none_or(|f| f.metadata().map_or(true, |m| m.nlink() == 0))
        {
            self.file = File::open(&self.path).ok();
        }
        let mut header = [0u8; 48];
        self.file.as_ref()?.read_exact_at(&mut header, 0).ok()?;
        Some(header)
    }
}

/// `mxFrame`, the frames in the WAL, if `header` is one we know (iVersion 3007000, isInit set).
fn frames(header: &[u8; 48]) -> Option<u32> {
    let field = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().unwrap());
    (field(0) == 3_007_000 && header[12] == 1).then(|| field(16))
}

/// Has any connection committed to the database since the last look? It answers only "no" or
/// "maybe": after a "maybe", [`Store::change_marker`] tells whether the commit was another
/// connection's. For PostgreSQL it always says "maybe". The same header gives the WAL's length,
/// which the runner's [`Checkpointer`](super::Checkpointer) acts on.
pub struct CommitProbe {
    /// None for PostgreSQL.
    index: Option<WalIndex>,
    last: Option<[u8; 48]>,
}

impl CommitProbe {
    pub(super) fn new(store: &Store) -> CommitProbe {
        CommitProbe {
            index: (store.backend() == Backend::Sqlite).then(|| WalIndex::of(&store.path)),
            last: None,
        }
    }

    /// False only when the header is byte for byte what it was at the last call (and the file
    /// is still the database's).
    pub fn moved(&mut self) -> bool {
        let header = self.index.as_mut().and_then(WalIndex::header);
        let moved = header.is_none() || self.last != header;
        self.last = header;
        moved
    }

    /// Frames in the WAL now; None without a header we can read. Leaves [`Self::moved`]'s
    /// comparison alone.
    pub fn wal_frames(&mut self) -> Option<u32> {
        frames(&self.index.as_mut()?.header()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_by;
    use chrono::Utc;

    #[test]
    fn the_commit_probe_moves_with_every_commit_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cronmgr.db");
        let store = Store::open(&path).unwrap();
        let mut probe = store.commit_probe();
        assert!(probe.moved(), "the first look has nothing to compare with");
        assert!(!probe.moved());
        let mut settings = store.settings("default").unwrap();
        settings.max_concurrent_jobs = 4;
        store
            .put_settings(&settings, &[], Utc::now(), test_by())
            .unwrap();
        assert!(probe.moved(), "our own commit");
        assert!(!probe.moved());
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE scratch (x); INSERT INTO scratch VALUES (1)")
            .unwrap();
        // Reading the frame count in between changes nothing for the next look.
        assert!(probe.wal_frames().unwrap() > 0);
        assert!(probe.moved(), "another connection's commit");
        // Reads move nothing.
        store.systems().unwrap();
        assert!(!probe.moved());
        // Without a header file to read (PostgreSQL, memory) it always says maybe.
        let mut memory = Store::open_in_memory().unwrap().commit_probe();
        assert!(memory.moved() && memory.moved());
        assert_eq!(memory.wal_frames(), None);
    }

    #[test]
    fn a_new_shm_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let shm = dir.path().join("w.db-shm");
        let mut index = WalIndex::of(&db);
        assert_eq!(index.header(), None, "no file yet");
        std::fs::write(&shm, [1u8; 48]).unwrap();
        assert_eq!(index.header(), Some([1u8; 48]));
        // Removed and made anew: the old descriptor would keep reading the unlinked file.
        std::fs::remove_file(&shm).unwrap();
        std::fs::write(&shm, [2u8; 48]).unwrap();
        assert_eq!(index.header(), Some([2u8; 48]));
        std::fs::write(&shm, [3u8; 10]).unwrap();
        assert_eq!(index.header(), None, "too short");
    }

    #[test]
    fn frames_only_from_a_header_we_know() {
        let mut header = [0u8; 48];
        header[0..4].copy_from_slice(&3_007_000u32.to_ne_bytes());
        header[12] = 1;
        header[16..20].copy_from_slice(&1234u32.to_ne_bytes());
        assert_eq!(frames(&header), Some(1234));
        header[12] = 0;
        assert_eq!(frames(&header), None, "not initialised");
        header[12] = 1;
        header[0] ^= 1;
        assert_eq!(frames(&header), None, "another version");
    }
}
