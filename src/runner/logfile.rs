//! Creating a live log file (`<db>.logs/<execution>.log`) without trusting what is already there.
//!
//! The runner often runs as root and appends a job's output to the file: whoever could plant a
//! symbolic link at its name would have that output appended to any file. So the folder is opened
//! without following a link, the file is created there with `O_EXCL|O_NOFOLLOW` (a name already
//! taken, by a stale file or a planted link, is removed through the folder's descriptor first,
//! which never follows links either), and the modes are set with `fchmod`, whatever the umask.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A live log file's mode: the runner's user writes, its group reads.
pub const FILE_MODE: u32 = 0o640;
/// The live logs folder's mode.
pub const DIR_MODE: u32 = 0o750;

/// Create the live log at `path` for appending, and its folder (0750) if missing.
pub fn create(path: &Path) -> io::Result<File> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a live log path needs a folder and a file name",
        ));
    };
    let dir = open_dir(dir)?;
    let name = CString::new(name.as_bytes())?;
    let flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_EXCL
        | libc::O_NOFOLLOW
        | libc::O_CLOEXEC;
    let mut removed = false;
    loop {
        // SAFETY: `dir` is an open directory and `name` a NUL-terminated string, both alive for
        // the call; the returned descriptor is owned by the File below.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, FILE_MODE) };
        if fd >= 0 {
            // SAFETY: `fd` was just opened and nothing else owns it.
            let file = unsafe { File::from_raw_fd(fd) };
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
            return Ok(file);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) || removed {
            return Err(err);
        }
        remove_stale(&dir, &name, path)?;
        removed = true;
    }
}

/// Remove whatever non-folder holds the name: a file a crashed runner left, or a planted link.
fn remove_stale(dir: &File, name: &CString, path: &Path) -> io::Result<()> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor and string; `st` is written by fstatat before it is read.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so `st` is initialised.
    let kind = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
    if kind == libc::S_IFDIR {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a folder holds the live log's name",
        ));
    }
    if kind != libc::S_IFREG {
        tracing::warn!(path = %path.display(), "removing what someone put at a live log's name (not a regular file: a symbolic link?)");
    }
    // SAFETY: valid descriptor and string; unlinkat removes the entry itself, never a link's target.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open the logs folder without following a link, creating it (0750) the first time.
fn open_dir(dir: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let created = match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // The folder above is missing too (a database not yet created by a runner).
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(DIR_MODE)
                        .create(dir)?;
                    true
                }
                Err(e) => return Err(e),
            };
            let file = open()?;
            if created {
                file.set_permissions(std::fs::Permissions::from_mode(DIR_MODE))?;
            }
            Ok(file)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_the_folder_and_the_file_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db.logs").join("1.log");
        let mut f = create(&path).unwrap();
        f.write_all(b"out\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "out\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&path), FILE_MODE);
        assert_eq!(mode(path.parent().unwrap()), DIR_MODE);
    }

    #[test]
    fn a_planted_link_is_removed_not_followed_and_a_stale_file_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("c.db.logs");
        std::fs::create_dir(&logs).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        let path = logs.join("3.log");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        create(&path).unwrap().write_all(b"job output\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "job output\n");
        // A stale file from a crashed runner: replaced, not appended to.
        create(&path).unwrap().write_all(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }

    #[test]
    fn a_logs_folder_that_is_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let logs = dir.path().join("c.db.logs");
        std::os::unix::fs::symlink(&elsewhere, &logs).unwrap();
        assert!(create(&logs.join("1.log")).is_err());
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
    }
}
