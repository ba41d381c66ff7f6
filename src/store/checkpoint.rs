//! WAL checkpoints on a thread of their own, for the runner's connection.
//!
//! SQLite checkpoints inside the commit that takes the WAL past 1,000 frames: that commit then
//! copies the frames into the database file and waits for two or three `fsync`s. On the runner's
//! connection that commit is often the claim of a job due now, so the job started milliseconds
//! late about once a minute with one job a second (and the loop stood still during each of a
//! burst's checkpoints). Here the runner's connection never checkpoints by itself
//! (`wal_autocheckpoint = 0`); after each turn the loop reads the WAL's frame count from the
//! WAL-index header ([`CommitProbe::wal_frames`]) and, past the same 1,000 frames, nudges a
//! thread that runs a PASSIVE checkpoint on its own connection. PASSIVE never waits for a lock or
//! blocks a writer; the next write after a complete checkpoint starts the WAL again from its
//! beginning.
//!
//! An idle runner never nudges, so the thread sleeps; it opens its connection at the first nudge.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[cfg(doc)]
use super::CommitProbe;
use super::{Backend, Connection, Result, Store};

/// Frames in the WAL past which a checkpoint is due: SQLite's own default.
pub const DUE_FRAMES: u32 = 1000;
/// Past this many frames the loop checkpoints itself. In a burst the loop writes while the
/// thread checkpoints, so the WAL cannot start over and grows; this bounds it (16 MB of 4 KiB
/// pages) and covers a thread that is gone.
const OVERDUE_FRAMES: u32 = 4 * DUE_FRAMES;
/// The WAL starts over only at a write that follows a checkpoint of every frame in it. Frames
/// written while the thread checkpointed keep it from that, so the thread goes again, this
/// often at most, until the WAL is short.
const RENUDGE: Duration = Duration::from_millis(100);

/// The runner's checkpoints, moved off its connection (see the module's text).
pub struct Checkpointer {
    nudge: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Set with each nudge, cleared by the thread once it has checkpointed.
    busy: Arc<AtomicBool>,
    last_nudge: Option<Instant>,
}

impl Store {
    /// Move this connection's checkpoints to a thread (SQLite files only; None for PostgreSQL
    /// and in-memory databases, which have no WAL). The connection stops checkpointing by itself
    /// only once the thread is running.
    pub fn checkpoint_in_background(&self) -> Result<Option<Checkpointer>> {
        if self.backend() != Backend::Sqlite || self.path == std::path::Path::new(":memory:") {
            return Ok(None);
        }
        let path = self.path.clone();
        let (tx, rx) = mpsc::channel();
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .stack_size(256 * 1024)
            .spawn(move || checkpoints(path, rx, &done))?;
        let conn = self.sqlite_conn();
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // When the WAL starts over, its file is cut back to what 1,000 frames take, as SQLite's
        // own checkpoints would have kept it, instead of staying at a burst's size.
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        conn.pragma_update(None, "journal_size_limit", i64::from(DUE_FRAMES) * page)?;
        Ok(Some(Checkpointer {
            nudge: Some(tx),
            thread: Some(thread),
            busy,
            last_nudge: None,
        }))
    }
}

impl Checkpointer {
    /// After a turn of the loop, given the WAL's `frames` ([`CommitProbe::wal_frames`]): at
    /// [`DUE_FRAMES`] or more, have the thread checkpoint it; far past that, checkpoint here.
    pub fn after_turn(&mut self, store: &Store, frames: u32) {
        if frames < DUE_FRAMES {
            return;
        }
        if frames >= OVERDUE_FRAMES || self.nudge.is_none() {
            if let Connection::Sqlite(conn) = &store.conn {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, frames, "checkpoint failed");
                }
            }
            return;
        }
        let idle = !self.busy.load(Ordering::Acquire);
        if idle && self.last_nudge.is_none_or(|at| at.elapsed() >= RENUDGE) {
            self.last_nudge = Some(Instant::now());
            self.busy.store(true, Ordering::Release);
            if let Some(tx) = &self.nudge {
                if tx.send(()).is_err() {
                    self.nudge = None; // the thread is gone: checkpoint here from now on
                }
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take(); // the thread ends with its channel
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: one PASSIVE checkpoint per nudge (nudges that came meanwhile count as one).
fn checkpoints(path: PathBuf, rx: Receiver<()>, busy: &AtomicBool) {
    let mut conn: Option<Store> = None;
    while rx.recv().is_ok() {
        while rx.try_recv().is_ok() {}
        if conn.is_none() {
            match Store::reopen_sqlite(&path) {
                Ok(store) => conn = Some(store),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the database to checkpoint it");
                    busy.store(false, Ordering::Release);
                    continue;
                }
            }
        }
        if let Some(Store {
            conn: Connection::Sqlite(c),
            ..
        }) = &conn
        {
            match c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            }) {
                Ok((log, done)) => tracing::debug!(log, done, "checkpointed"),
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        }
        busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CommitProbe;

    /// A store in a temporary folder (kept while the first value lives), its checkpointer, and
    /// a probe to read the WAL's length with.
    fn checkpointed_store() -> (tempfile::TempDir, Store, Checkpointer, CommitProbe) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let cp = store.checkpoint_in_background().unwrap().unwrap();
        let probe = store.commit_probe();
        (dir, store, cp, probe)
    }

    /// Commits until the WAL holds at least `frames` frames; returns the count reached.
    fn fill(store: &Store, probe: &mut CommitProbe, frames: u32) -> u32 {
        let conn = store.sqlite_conn();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
            .unwrap();
        loop {
            conn.execute("INSERT INTO filler VALUES (zeroblob(3000))", [])
                .unwrap();
            let n = probe.wal_frames().unwrap();
            if n >= frames {
                return n;
            }
        }
    }

    #[test]
    fn the_thread_checkpoints_and_the_connection_no_longer_does() {
        let (_dir, store, mut cp, mut probe) = checkpointed_store();
        // Past SQLite's own threshold, the connection alone no longer checkpoints: the WAL only grows.
        let reached = fill(&store, &mut probe, DUE_FRAMES + 200);
        assert!(reached >= DUE_FRAMES + 200, "{reached}");
        // Below the threshold a turn nudges nothing.
        cp.after_turn(&store, DUE_FRAMES - 1);
        assert!(!cp.busy.load(Ordering::Acquire));
        // A turn nudges the thread; once it has checkpointed, the next write starts the WAL over.
        cp.after_turn(&store, reached);
        let restarted = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            cp.after_turn(&store, probe.wal_frames().unwrap());
            store
                .sqlite_conn()
                .execute("INSERT INTO filler VALUES (1)", [])
                .unwrap();
            probe.wal_frames().unwrap() < 100
        });
        assert!(restarted, "the WAL was never checkpointed");
        drop(cp); // the thread ends
    }

    #[test]
    fn without_the_thread_the_loop_checkpoints_itself() {
        let (_dir, store, mut cp, mut probe) = checkpointed_store();
        cp.nudge.take(); // as if the thread were gone
        let reached = fill(&store, &mut probe, DUE_FRAMES);
        cp.after_turn(&store, reached);
        store
            .sqlite_conn()
            .execute("INSERT INTO filler VALUES (1)", [])
            .unwrap();
        assert!(probe.wal_frames().unwrap() < 100);
    }

    #[test]
    fn none_without_a_wal() {
        let store = Store::open_in_memory().unwrap();
        assert!(store.checkpoint_in_background().unwrap().is_none());
    }
}
