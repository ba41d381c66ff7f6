//! The runner's refusal to trust files others can write, as sshd's StrictModes: the config file
//! decides what may run, and the database what will.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("refusing to start: {what} {path} is {problem}; fix it with: {fix}")]
pub struct UnsafeFile {
    what: &'static str,
    path: String,
    problem: String,
    fix: String,
}

/// Refuse a file (if it exists) that is writable by its group or others, or owned by someone other
/// than root or the user the runner runs as.
pub fn check(what: &'static str, path: &Path) -> Result<(), UnsafeFile> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // missing: created by us with safe modes, or built-in defaults
    };
    check_meta(what, path, meta.mode(), meta.uid(), crate::config::euid())
}

fn check_meta(
    what: &'static str,
    path: &Path,
    mode: u32,
    owner: u32,
    me: u32,
) -> Result<(), UnsafeFile> {
    let shown = path.display().to_string();
    if owner != 0 && owner != me {
        return Err(UnsafeFile {
            what,
            path: shown.clone(),
            problem: format!("owned by uid {owner}, neither root nor the runner's user (uid {me})"),
            fix: format!("chown {me} {shown}"),
        });
    }
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and everyone",
            (true, false) => "its group",
            _ => "everyone",
        };
        return Err(UnsafeFile {
            what,
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
}
