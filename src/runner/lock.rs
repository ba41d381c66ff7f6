//! The runner's lock file (`<db>.lock`): one runner per database, and how the CLI finds it.
//!
//! The runner holds an exclusive `flock` on the file for its whole life and writes its pid into it.
//! Because the lock dies with the process, a stale file never blocks a new runner, and a pid read
//! from a locked file is known to be alive: the CLI can nudge it with SIGUSR1 after a change.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Exit 1 (a runtime condition): `pid` is empty when the holder had not written it yet.
    #[error("another runner ({}) is already running on {}; stop it first, or pass --force to run anyway (slots are still claimed only once)", holder(pid), db.display())]
    Held { pid: String, db: PathBuf },
    #[error("lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A runtime error (exit 1): another runner holding the lock is not bad input.
impl crate::exit::Coded for LockError {}

fn holder(pid: &str) -> String {
    match pid {
        "" => "pid not written yet".into(),
        pid => format!("pid {pid}"),
    }
}

/// Held while the runner runs; released when dropped (or when the process dies).
pub struct RunnerLock {
    _file: File,
    path: PathBuf,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = crate::store::local_base(db).into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Open (creating 0640) the lock file; never through a symbolic link, which would have the
/// runner truncate whatever it points at.
fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn flock(file: &File, op: libc::c_int) -> bool {
    // SAFETY: the fd is valid for the life of `file`; flock has no memory effects.
    unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) == 0 }
}

impl RunnerLock {
    /// Take the lock for `db`, or say who holds it.
    pub fn acquire(db: &Path) -> Result<RunnerLock, LockError> {
        let path = lock_path(db);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = open(&path).map_err(io)?;
        if !flock(&file, libc::LOCK_EX) {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Held {
                pid: pid.trim().to_string(),
                db: db.to_path_buf(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(RunnerLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid of the runner holding the lock on `db`, if one is up.
pub fn runner_pid(db: &Path) -> Option<u32> {
    // Not through a link: the pid read here is signalled.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock_path(db))
        .ok()?;
    if flock(&file, libc::LOCK_SH) {
        // Nobody holds it: no runner.
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    let mut pid = String::new();
    file.read_to_string(&mut pid).ok()?;
    pid.trim().parse().ok()
}

/// Tell a running runner that jobs or settings changed, so it re-reads them now. Best effort:
/// the runner also checks for changes on its own once a minute.
pub fn nudge(db: &Path) {
    if let Some(pid) = runner_pid(db) {
        // SAFETY: kill with a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) };
        if rc != 0 {
            tracing::debug!(pid, "could not nudge the runner");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_pid_is_visible() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        assert_eq!(runner_pid(&db), None);
        let lock = RunnerLock::acquire(&db).unwrap();
        // flock locks belong to the open file description: a second open in this process conflicts too.
        match RunnerLock::acquire(&db) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {:?}", other.err()),
        }
        assert_eq!(runner_pid(&db), Some(std::process::id()));
        drop(lock);
        assert_eq!(runner_pid(&db), None);
        RunnerLock::acquire(&db).unwrap();
    }

    #[test]
    fn a_held_lock_names_its_holder_even_before_the_pid_is_written() {
        let held = |pid: &str| LockError::Held {
            pid: pid.into(),
            db: "/var/lib/cronmgr/cronmgr.db".into(),
        };
        let msg = held("4242").to_string();
        assert!(
            msg.starts_with(
                "another runner (pid 4242) is already running on /var/lib/cronmgr/cronmgr.db;"
            ),
            "{msg}"
        );
        let msg = held("").to_string();
        assert!(
            msg.starts_with("another runner (pid not written yet) is"),
            "{msg}"
        );
    }

    #[test]
    fn a_lock_file_that_is_a_symlink_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, lock_path(&db)).unwrap();
        assert!(matches!(
            RunnerLock::acquire(&db),
            Err(LockError::Io { .. })
        ));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
