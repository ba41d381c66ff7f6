//! The runner's refusal to trust files others can write, as sshd's StrictModes: the config file
//! decides what may run, and the database what will.
//!
//! A file is trusted only if neither it nor any folder above it can be changed by anyone but root
//! and the runner's user. A folder above the file's own may be writable by others when it is
//! sticky (as `/tmp`, 1777 root): then only an entry's owner, the folder's owner or root may
//! rename or remove what is in it, so our entries cannot be swapped. The file's own folder gets
//! no such allowance: there, others could plant the names SQLite and the runner create later
//! (`-wal`, `-shm`, `.lock`, `.logs`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("refusing to start: {what} {path} is {problem}; fix it with: {fix}")]
pub struct UnsafeFile {
    what: String,
    path: String,
    problem: String,
    fix: String,
}

/// A runtime error (exit 1): the file is there but not safe to trust.
impl crate::exit::Coded for UnsafeFile {}

/// Refuse a file (if it exists) that is writable by its group or others, or owned by someone other
/// than root or the user the runner runs as.
pub fn check(what: &'static str, path: &Path) -> Result<(), UnsafeFile> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // missing: created by us with safe modes, or built-in defaults
    };
    check_meta(what, path, meta.mode(), meta.uid(), crate::host::euid())
}

/// [`check`] for a file the runner creates beside the database (its lock, claims journal, live
/// logs folder, SQLite's `-wal` and `-shm`): a symbolic link there is refused too, since whoever
/// planted it would have the runner write where the link points.
pub fn check_beside(what: &'static str, path: &Path) -> Result<(), UnsafeFile> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(()); // missing: the runner or SQLite creates it with safe modes
    };
    let shown = path.display().to_string();
    if meta.file_type().is_symlink() {
        return Err(UnsafeFile {
            what: what.to_string(),
            path: shown.clone(),
            problem: "a symbolic link (the runner never writes through one)".into(),
            fix: format!("rm {shown}"),
        });
    }
    check_meta(what, path, meta.mode(), meta.uid(), crate::host::euid())
}

/// Refuse the folders above `file`, up to `/`: its own folder as [`check`] does, the ones above
/// unless they are sticky (see the module's comment). Symbolic links are resolved first, as
/// OpenSSH's `secure_path` does: what counts is the folders the file really is in.
pub fn check_folders(what: &'static str, file: &Path) -> Result<(), UnsafeFile> {
    let Some(dir) = real_folder(file) else {
        return Ok(()); // no folder of it exists yet: created by us
    };
    let me = crate::host::euid();
    let own = format!("{what} folder");
    let above = format!("folder above the {what}");
    for (i, d) in dir.ancestors().enumerate() {
        let Ok(meta) = std::fs::metadata(d) else {
            continue;
        };
        let what = if i == 0 { own.as_str() } else { above.as_str() };
        let sticky_ok = i > 0 && meta.mode() & 0o1000 != 0;
        check_dir_meta(what, d, meta.mode(), meta.uid(), me, sticky_ok)?;
    }
    Ok(())
}

/// The config file and the folders above it: at start-up and before every reload (SIGHUP).
pub fn check_config(path: &Path) -> Result<(), UnsafeFile> {
    check("config file", path)?;
    check_folders("config file", path)
}

/// The database, the folders above it and every file the runner or SQLite keeps beside it. For a
/// PostgreSQL database (`shared`), only the local live logs folder at `base`.
pub fn check_database(db: &Path, base: &Path, shared: bool) -> Result<(), UnsafeFile> {
    let beside = |suffix: &str| {
        let mut name = base.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    if !shared {
        check("database", db)?;
        // Whoever can write the folder can replace the database or plant its -wal/-shm files.
        check_folders("database", db)?;
        check_beside("database lock file", &beside(".lock"))?;
        check_beside("claims journal", &beside(".claims"))?;
        check_beside("database write-ahead log", &beside("-wal"))?;
        check_beside("database shared-memory file", &beside("-shm"))?;
    }
    check_beside("live logs folder", &beside(".logs"))
}

/// The real (symlink-free) folder `file` is in; for a missing file, its nearest existing folder.
fn real_folder(file: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(file).ok()?;
    if let Ok(real) = absolute.canonicalize() {
        return real.parent().map(Path::to_path_buf);
    }
    absolute
        .ancestors()
        .skip(1)
        .find_map(|d| d.canonicalize().ok())
}

fn check_meta(
    what: &'static str,
    path: &Path,
    mode: u32,
    owner: u32,
    me: u32,
) -> Result<(), UnsafeFile> {
    check_dir_meta(what, path, mode, owner, me, false)
}

/// `sticky_ok`: a sticky folder may be writable by others (see the module's comment).
fn check_dir_meta(
    what: &str,
    path: &Path,
    mode: u32,
    owner: u32,
    me: u32,
    sticky_ok: bool,
) -> Result<(), UnsafeFile> {
    let shown = path.display().to_string();
    if owner != 0 && owner != me {
        return Err(UnsafeFile {
            what: what.to_string(),
            path: shown.clone(),
            problem: format!("owned by uid {owner}, neither root nor the runner's user (uid {me})"),
            fix: format!("chown {me} {shown}"),
        });
    }
    if mode & 0o022 != 0 && !sticky_ok {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and everyone",
            (true, false) => "its group",
            _ => "everyone",
        };
        return Err(UnsafeFile {
            what: what.to_string(),
            path: shown.clone(),
            problem: format!("writable by {who} (mode {:04o})", mode & 0o7777),
            fix: format!("chmod go-w {shown}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_world_writable_or_foreign_files_are_refused() {
        let p = Path::new("/etc/cronmgr/config.toml");
        assert!(check_meta("config file", p, 0o100644, 0, 1000).is_ok());
        assert!(check_meta("config file", p, 0o100600, 1000, 1000).is_ok());
        let e = check_meta("config file", p, 0o100664, 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("writable by its group") && e.contains("chmod go-w"),
            "{e}"
        );
        let e = check_meta("database", p, 0o100646, 0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("writable by everyone"), "{e}");
        let e = check_meta("config file", p, 0o100644, 1234, 1000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("owned by uid 1234") && e.contains("chown"),
            "{e}"
        );
    }

    #[test]
    fn a_real_world_writable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(check("config file", &f).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check("config file", &f).is_ok());
        assert!(check("config file", &dir.path().join("missing")).is_ok());
    }

    #[test]
    fn a_folder_above_may_be_open_only_when_sticky() {
        let p = Path::new("/tmp");
        assert!(check_dir_meta("folder above", p, 0o41777, 0, 0, true).is_ok());
        let e = check_dir_meta("folder above", p, 0o40777, 0, 0, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("writable by its group and everyone"), "{e}");
        // Sticky but someone else's: they may remove our entries.
        let e = check_dir_meta("folder above", p, 0o41777, 1234, 0, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("owned by uid 1234"), "{e}");
    }

    #[test]
    fn folders_are_checked_up_to_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        let own = open.join("own");
        std::fs::create_dir_all(&own).unwrap();
        let file = own.join("cronmgr.db");
        assert!(check_folders("database", &file).is_ok());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_folders("database", &file).unwrap_err().to_string();
        assert!(
            e.contains("folder above the database") && e.contains(&open.display().to_string()),
            "{e}"
        );
        // Sticky (as /tmp): accepted above the file's own folder…
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_folders("database", &file).is_ok());
        // …but not as its own folder.
        let e = check_folders("database", &open.join("cronmgr.db"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("database folder"), "{e}");
        // Through a link, the real folders count.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(check_folders("database", &link.join("cronmgr.db")).is_err());
        // A file whose folders do not exist yet: the nearest existing one is checked.
        assert!(check_folders("database", &open.join("a/b/c.db")).is_err());
    }

    #[test]
    fn a_symlink_beside_the_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let lock = dir.path().join("c.db.lock");
        assert!(check_beside("lock file", &lock).is_ok(), "missing is fine");
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let e = check_beside("lock file", &lock).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("rm "), "{e}");
    }
}
