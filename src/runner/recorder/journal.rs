//! The claim journal, `<db>.claims`: where the runner claims due slots while the database
//! refuses writes (locked, disk full), under `flock`, so a slot still runs once and on time; its
//! lines become rows when the database is back, or `interrupted` rows at the next start if the
//! runner died.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::store::{NewExecution, Status, StoreError, Trigger};

/// `<db>.claims`: one line per claim made while the database was unavailable.
pub(super) struct Journal {
    pub(super) path: PathBuf,
    /// A database shared by runners on several hosts: a local journal could not keep a slot
    /// from running twice, so there is none; a slot the database cannot take is not run.
    pub(super) shared: bool,
}

fn key(new: &NewExecution) -> String {
    format!(
        "{} {} {}",
        new.job_id,
        crate::store::fmt_time(new.scheduled_for),
        new.attempt
    )
}

impl Journal {
    pub(super) fn new(db: &Path) -> Journal {
        let mut name = db.as_os_str().to_os_string();
        name.push(".claims");
        Journal {
            path: PathBuf::from(name),
            shared: crate::store::is_postgres(db),
        }
    }

    /// Run `f` on the file's lines under an exclusive lock; `f` returns new contents to write, if any.
    pub(super) fn locked<T>(
        &self,
        f: impl FnOnce(&str) -> (T, Option<String>),
    ) -> std::io::Result<T> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            // Never through a planted link: the journal is rewritten in place.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        lock(&file)?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let (out, rewrite) = f(&text);
        if let Some(contents) = rewrite {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(contents.as_bytes())?;
            file.sync_data()?;
        }
        Ok(out) // the lock goes with the file
    }

    pub(super) fn is_empty(&self) -> bool {
        if self.shared {
            return true;
        }
        std::fs::metadata(&self.path).map_or(true, |m| m.len() == 0)
    }

    /// Is this slot in the journal (claimed by any runner)? Cheap when the journal is empty.
    pub(super) fn has(&self, new: &NewExecution) -> std::io::Result<bool> {
        if self.shared {
            return Ok(false);
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if m.len() > 0 => {}
            _ => return Ok(false),
        }
        let k = key(new);
        self.locked(|text| (text.lines().any(|l| l.starts_with(&format!("{k} "))), None))
    }

    /// Add the claim unless the slot is there already; true when added.
    pub(super) fn claim(&self, new: &NewExecution) -> std::io::Result<bool> {
        if self.shared {
            return Err(std::io::Error::other(
                "no local claim journal for a database shared by several runners",
            ));
        }
        let k = key(new);
        let line = format!(
            "{k} {} {} {}\n",
            std::process::id(),
            new.started_at
                .map(crate::store::fmt_time)
                .unwrap_or_default(),
            new.triggered_by.as_str()
        );
        self.locked(|text| {
            if text.lines().any(|l| l.starts_with(&format!("{k} "))) {
                (false, None)
            } else {
                (true, Some(format!("{text}{line}")))
            }
        })
    }

    /// Drop these claims (they are in the database now).
    pub(super) fn forget(&self, news: &[NewExecution]) -> std::io::Result<()> {
        let keys: Vec<String> = news.iter().map(|n| format!("{} ", key(n))).collect();
        self.locked(|text| {
            let kept: String = text
                .lines()
                .filter(|l| !keys.iter().any(|k| l.starts_with(k)))
                .map(|l| format!("{l}\n"))
                .collect();
            ((), Some(kept))
        })
    }

    /// Claims of runners that are no longer alive.
    pub(super) fn orphans(&self) -> Result<Vec<(NewExecution, u32)>, StoreError> {
        if self.shared || !self.path.exists() {
            return Ok(Vec::new());
        }
        let parsed = self.locked(|text| (text.to_string(), None))?;
        let mut out = Vec::new();
        for line in parsed.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(job_id), Some(slot), Some(attempt), Some(pid)) = (
                f.first().and_then(|v| v.parse::<i64>().ok()),
                f.get(1).and_then(|v| DateTime::parse_from_rfc3339(v).ok()),
                f.get(2).and_then(|v| v.parse::<u32>().ok()),
                f.get(3).and_then(|v| v.parse::<u32>().ok()),
            ) else {
                continue;
            };
            // SAFETY: signal 0 only checks that the process exists.
            let alive =
                pid != std::process::id() && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
            if alive {
                continue;
            }
            out.push((
                NewExecution {
                    job_id,
                    status: Status::Running,
                    scheduled_for: slot.with_timezone(&Utc),
                    started_at: f
                        .get(4)
                        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    triggered_by: f
                        .get(5)
                        .and_then(|t| t.parse::<Trigger>().ok())
                        .unwrap_or(Trigger::Schedule),
                    attempt,
                    error_message: None,
                    runner_pid: Some(pid),
                    runner_id: None,
                    fleet: None,
                    caused_by: None,
                },
                pid,
            ));
        }
        Ok(out)
    }
}

fn lock(file: &File) -> std::io::Result<()> {
    loop {
        // SAFETY: the fd is valid for the life of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
