//! A host's cron, as its files say: which crontabs and run-parts scripts cron (and anacron) would
//! run, under whose name, and which it would not, with why. Also the one write: commenting out
//! migrated lines, keeping a backup. The only part of `crontab` that touches the file system.
//!
//! Every path is read under a root (`/` on a live host; a temporary folder in the tests), and
//! reported as the host knows it (`/etc/crontab`, not `ROOT/etc/crontab`).
//!
//! cronmgr trusts only what cron itself would: a system crontab (`/etc/crontab`,
//! `/etc/cron.d/*`) must be a regular file owned by root and writable by no one else; a user's
//! crontab in the spool must be a regular file (no symlink) named after an existing user, owned
//! by that user (Debian) or by root (RHEL), and writable by no one else; a run-parts script must
//! be an executable regular file owned by root and writable by no one else. The rest is listed as
//! not imported, with the reason.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The run-parts folders, as Debian's `/etc/crontab` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub const ALL: [Period; 4] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// `/etc/cron.daily`.
    pub fn folder(self) -> String {
        format!("/etc/cron.{}", self.as_str())
    }

    /// When Debian's `/etc/crontab` runs the folder: the schedule for its scripts when no
    /// crontab line on the host says otherwise (anacron runs them).
    pub fn default_schedule(self) -> &'static str {
        match self {
            Period::Hourly => "17 * * * *",
            Period::Daily => "25 6 * * *",
            Period::Weekly => "47 6 * * 7",
            Period::Monthly => "52 6 1 * *",
        }
    }
}

/// What a crontab file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `/etc/crontab`, `/etc/cron.d/*`: a user column on each line.
    System,
    /// A user's crontab in the spool: its lines run as that user.
    User(String),
}

/// A crontab file cron would read.
#[derive(Debug, Clone)]
pub struct Crontab {
    /// Where it was read (under the root).
    pub path: PathBuf,
    /// The path as the host knows it.
    pub shown: String,
    pub kind: Kind,
}

/// An executable in a run-parts folder.
#[derive(Debug, Clone)]
pub struct Script {
    pub path: PathBuf,
    pub shown: String,
    pub period: Period,
    /// Its file name: `logrotate`.
    pub name: String,
}

/// Something cron would not run, or cronmgr will not import: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub why: String,
}

/// Everything found on the host.
#[derive(Debug, Default)]
pub struct Host {
    pub crontabs: Vec<Crontab>,
    pub scripts: Vec<Script>,
    pub skipped: Vec<Skipped>,
    /// `/etc/anacrontab`, when there is one: it runs the run-parts folders on most hosts.
    pub anacrontab: Option<Crontab>,
}

/// The spool folders: Debian's (`crontabs/` inside) and RHEL's (files directly inside).
const SPOOLS: &[&str] = &["/var/spool/cron/crontabs", "/var/spool/cron"];

/// Does run-parts (Debian's, and so cron for `/etc/cron.d`) take this file name? Letters,
/// digits, `_` and `-` only: no dots, so `*.dpkg-old`, `*.rpmsave`, `*~` and `x.cronmgr-bak`
/// are left alone.
pub fn run_parts_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The run-parts folder a crontab command runs, if it runs one (`run-parts --report
/// /etc/cron.daily`, also inside `test -x /usr/sbin/anacron || ( cd / && run-parts … )`).
pub fn run_parts_target(command: &str) -> Option<Period> {
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || "();&|".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    if !words
        .iter()
        .any(|w| w.rsplit('/').next() == Some("run-parts"))
    {
        return None;
    }
    Period::ALL.into_iter().find(|p| {
        let folder = p.folder();
        words
            .iter()
            .any(|w| w.trim_end_matches('/') == folder.as_str())
    })
}

fn shown(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// Why a file owned and moded so is not to be trusted, if it is not: `owners` are the uids that
/// may own it.
fn untrusted(meta: &Metadata, owners: &[u32]) -> Option<String> {
    if !owners.contains(&meta.uid()) {
        let names: Vec<String> = owners
            .iter()
            .map(|uid| {
                crate::access::user_by_uid(*uid)
                    .map(|u| u.name)
                    .unwrap_or_else(|| format!("uid {uid}"))
            })
            .collect();
        return Some(format!(
            "owned by uid {}, not by {}: cron refuses it too",
            meta.uid(),
            names.join(" or ")
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "writable by group or others (mode {:o}): anyone who can write it could run code as its owner; \
             fix its mode (chmod go-w) and import again",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// The entries of a folder, sorted by name as run-parts and cron go through them (byte order);
/// an absent folder is empty, an unreadable one is listed as skipped (not silently empty).
fn entries(dir: &Path, root: &Path, skipped: &mut Vec<Skipped>) -> Vec<(String, PathBuf)> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                skipped.push(Skipped {
                    source: shown(root, dir),
                    line: None,
                    why: format!("cannot list it: {e}"),
                });
            }
            return Vec::new();
        }
    };
    let mut out: Vec<(String, PathBuf)> = read
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

/// Find every crontab and run-parts script under `root`.
pub fn discover(root: &Path) -> Host {
    let mut host = Host::default();
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let skip = |host: &mut Host, path: &Path, why: String| {
        host.skipped.push(Skipped {
            source: shown(root, path),
            line: None,
            why,
        })
    };

    // /etc/crontab, then /etc/cron.d/* (cron reads the folder's files whatever the order; ours
    // is by name).
    let mut system = vec![at("/etc/crontab")];
    for (name, path) in entries(&at("/etc/cron.d"), root, &mut host.skipped) {
        if run_parts_name(&name) {
            system.push(path);
        } else if !name.starts_with('.') {
            skip(
                &mut host,
                &path,
                "cron skips file names with anything but letters, digits, _ and - (as run-parts does)".into(),
            );
        }
    }
    for path in system {
        // Followed if a symlink, as cron does for /etc/cron.d; the file itself must be sound.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                skip(&mut host, &path, format!("cannot read it: {e}"));
                continue;
            }
        };
        if !meta.is_file() {
            skip(&mut host, &path, "not a regular file".into());
            continue;
        }
        if let Some(why) = untrusted(&meta, &[0]) {
            skip(&mut host, &path, why);
            continue;
        }
        host.crontabs.push(Crontab {
            shown: shown(root, &path),
            path,
            kind: Kind::System,
        });
    }

    // The spool: each file named after its user.
    for spool in SPOOLS {
        for (name, path) in entries(&at(spool), root, &mut host.skipped) {
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                continue; // RHEL's spool holds Debian's folder, at's, …: not crontabs
            }
            if !meta.is_file() {
                skip(
                    &mut host,
                    &path,
                    "not a regular file (a symlink?): cron refuses it too".into(),
                );
                continue;
            }
            let Some(user) = crate::access::user_by_name(&name) else {
                skip(
                    &mut host,
                    &path,
                    format!("no user named {name:?}: cron ignores it too"),
                );
                continue;
            };
            if let Some(why) = untrusted(&meta, &[user.uid, 0]) {
                skip(&mut host, &path, why);
                continue;
            }
            host.crontabs.push(Crontab {
                shown: shown(root, &path),
                path,
                kind: Kind::User(name),
            });
        }
    }

    // The run-parts folders: one job per script.
    for period in Period::ALL {
        for (name, path) in entries(&at(&period.folder()), root, &mut host.skipped) {
            if name.starts_with('.') {
                continue;
            }
            if !run_parts_name(&name) {
                skip(
                    &mut host,
                    &path,
                    "run-parts skips names with anything but letters, digits, _ and - (Debian's; \
                     RHEL's runs names with dots: add it with cronmgr add if this host ran it)"
                        .into(),
                );
                continue;
            }
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    skip(&mut host, &path, format!("cannot read it: {e}"));
                    continue;
                }
            };
            if !meta.is_file() {
                skip(&mut host, &path, "not a regular file".into());
                continue;
            }
            if meta.permissions().mode() & 0o111 == 0 {
                skip(
                    &mut host,
                    &path,
                    "not executable: run-parts skips it too".into(),
                );
                continue;
            }
            if let Some(why) = untrusted(&meta, &[0]) {
                skip(&mut host, &path, why);
                continue;
            }
            host.scripts.push(Script {
                shown: shown(root, &path),
                path,
                period,
                name,
            });
        }
    }

    let anacrontab = at("/etc/anacrontab");
    if anacrontab.is_file() {
        host.anacrontab = Some(Crontab {
            shown: shown(root, &anacrontab),
            path: anacrontab,
            kind: Kind::System,
        });
    }
    host
}

/// The lines of an anacrontab (`PERIOD DELAY ID COMMAND`) that run one of `periods`' folders.
pub fn anacron_lines(text: &str, periods: &BTreeSet<Period>) -> BTreeSet<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            !l.starts_with('#') && run_parts_target(l).is_some_and(|p| periods.contains(&p))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// What a migrated line becomes.
pub const DISABLED_PREFIX: &str = "#cronmgr-migrated# ";

/// The backup of `path` that [`comment_out`] keeps.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".cronmgr-bak");
    PathBuf::from(name)
}

#[derive(Debug, thiserror::Error)]
pub enum DisableError {
    #[error("{0} is a symlink: left alone (comment out its lines where it points)")]
    Symlink(String),
    #[error("{0} exists (from an earlier run?): left alone; move the backup away and run again")]
    BackupExists(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Comment out `lines` (1-based) of the file at `path` with [`DISABLED_PREFIX`], after copying it
/// to [`backup_path`] (same owner and mode). The new text replaces the file in one rename, with
/// the file's owner and mode, so cron reads either the old file or the new one. Returns the
/// backup's path.
pub fn comment_out(path: &Path, lines: &BTreeSet<usize>) -> Result<PathBuf, DisableError> {
    let io = |e: std::io::Error| DisableError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let meta = fs::symlink_metadata(path).map_err(io)?;
    if meta.file_type().is_symlink() {
        return Err(DisableError::Symlink(path.display().to_string()));
    }
    let backup = backup_path(path);
    let text = fs::read_to_string(path).map_err(io)?;
    let write_as = |to: &Path, body: &str| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)?;
        f.write_all(body.as_bytes())?;
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        f.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        f.sync_all()
    };
    write_as(&backup, &text).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            DisableError::BackupExists(backup.display().to_string())
        }
        _ => io(e),
    })?;
    let mut out = String::with_capacity(text.len() + lines.len() * DISABLED_PREFIX.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if lines.contains(&(i + 1)) {
            out.push_str(DISABLED_PREFIX);
        }
        out.push_str(line);
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".cronmgr-tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    if let Err(e) = write_as(&tmp, &out).and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_run_parts_folder_a_line_runs() {
        let debian = "test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )";
        assert_eq!(run_parts_target(debian), Some(Period::Daily));
        assert_eq!(
            run_parts_target("cd / && run-parts --report /etc/cron.hourly"),
            Some(Period::Hourly)
        );
        assert_eq!(
            run_parts_target("/usr/bin/run-parts /etc/cron.monthly/"),
            Some(Period::Monthly)
        );
        assert_eq!(run_parts_target("ls /etc/cron.daily"), None);
        assert_eq!(run_parts_target("run-parts /opt/jobs"), None);
    }

    #[test]
    fn an_unreadable_folder_is_reported_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut skipped = Vec::new();
        let file = dir.path().join("etc");
        fs::write(&file, "").unwrap();
        assert!(entries(&dir.path().join("absent"), dir.path(), &mut skipped).is_empty());
        assert!(skipped.is_empty());
        assert!(entries(&file, dir.path(), &mut skipped).is_empty());
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].source, "/etc");
        assert!(skipped[0].why.contains("cannot list it"), "{skipped:?}");
    }

    #[test]
    fn run_parts_names_have_no_dots() {
        for ok in ["logrotate", "0anacron", "apt-compat", "man_db"] {
            assert!(run_parts_name(ok), "{ok}");
        }
        for no in ["x.dpkg-old", "README.md", "app~", "a.cronmgr-bak", ""] {
            assert!(!run_parts_name(no), "{no}");
        }
    }

    #[test]
    fn anacrontab_lines_for_the_imported_folders() {
        let tab = "SHELL=/bin/sh\n1\t5\tcron.daily\trun-parts --report /etc/cron.daily\n\
                   7 10 cron.weekly run-parts --report /etc/cron.weekly\n# 1 5 x run-parts /etc/cron.daily\n";
        let daily: BTreeSet<Period> = [Period::Daily].into();
        assert_eq!(anacron_lines(tab, &daily), [2].into());
    }

    #[test]
    fn comment_out_keeps_a_backup_and_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        fs::write(
            &path,
            "MAILTO=a@b.c\n0 1 * * * root /bin/x\n5 * * * * root /bin/y",
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let backup = comment_out(&path, &[2, 3].into()).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("MAILTO=a@b.c\n{DISABLED_PREFIX}0 1 * * * root /bin/x\n{DISABLED_PREFIX}5 * * * * root /bin/y")
        );
        assert_eq!(
            fs::read_to_string(&backup).unwrap(),
            "MAILTO=a@b.c\n0 1 * * * root /bin/x\n5 * * * * root /bin/y"
        );
        for p in [&path, &backup] {
            assert_eq!(fs::metadata(p).unwrap().mode() & 0o777, 0o640);
        }
        // A second run keeps the first backup, and changes nothing.
        let before = fs::read_to_string(&path).unwrap();
        assert!(matches!(
            comment_out(&path, &[1].into()),
            Err(DisableError::BackupExists(_))
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), before);
        // A symlink is left alone.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            comment_out(&link, &[1].into()),
            Err(DisableError::Symlink(_))
        ));
    }
}
