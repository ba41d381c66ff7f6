//! Folders held open by descriptor, so a tree walk cannot be raced.
//!
//! A walk that collects paths and acts on them later by path follows whatever the path leads to
//! at that later moment: a folder swapped for a symlink between the two redirects the action out
//! of the tree. Here a folder is opened once ([`Dir::open_path`] from `/`, one component at a time,
//! never following a symlink) and everything below it is reached by name relative to an open
//! descriptor (`openat` with `O_NOFOLLOW`, `fstatat` with `AT_SYMLINK_NOFOLLOW`, `unlinkat`), so a
//! swapped component is refused (`ELOOP`/`ENOTDIR`) or acted on where it was, never followed.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a name in a folder is, as `fstatat(AT_SYMLINK_NOFOLLOW)` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// The part of a `struct stat` the executors use.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub kind: Kind,
    pub len: u64,
    pub modified: SystemTime,
    pub dev: u64,
    pub ino: u64,
}

impl Stat {
    fn from_raw(st: &libc::stat) -> Stat {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        let modified = if st.st_mtime >= 0 {
            SystemTime::UNIX_EPOCH
                + Duration::new(
                    st.st_mtime as u64,
                    st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
                )
        } else {
            SystemTime::UNIX_EPOCH
        };
        Stat {
            kind,
            len: st.st_size.max(0) as u64,
            modified,
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }

    /// The same file (device and inode) as `other`?
    pub fn same_file(&self, other: &Stat) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// An open folder (`O_RDONLY|O_DIRECTORY|O_CLOEXEC`).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} contains a NUL byte"),
        )
    })
}

/// A single name inside a folder: not empty, no `/`, not `.` or `..`.
fn entry_name(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a name inside a folder"),
        ));
    }
    cstr(name)
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `openat` retried on EINTR; the descriptor is owned by the result.
fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is a valid NUL-terminated string; openat has no other preconditions.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            // SAFETY: openat just returned this descriptor and nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
const SEARCH_FLAGS: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;

impl Dir {
    /// Open an absolute folder path from `/`, one component at a time, never following a
    /// symlink: a path with a symlink anywhere in it fails (`ELOOP` or `ENOTDIR`). Resolve a path
    /// the user gave (and check it against its allowlist) first; this opens what was checked.
    /// The folders on the way are opened `O_PATH`, so, as with a path, they need only be
    /// searchable (`x`), not readable.
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        Dir::open_path_as(path, DIR_FLAGS)
    }

    /// [`Dir::open_path`], the folder itself opened `O_PATH` too: for reaching names in it
    /// (`stat`, `open_*`), not for listing it, so it need only be searchable.
    pub fn open_path_to_search(path: &Path) -> io::Result<Dir> {
        Dir::open_path_as(path, SEARCH_FLAGS)
    }

    fn open_path_as(path: &Path, last_flags: libc::c_int) -> io::Result<Dir> {
        let mut components = path.components();
        if components.next() != Some(Component::RootDir) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not an absolute path", path.display()),
            ));
        }
        let mut names = Vec::new();
        for c in components {
            match c {
                Component::Normal(name) => names.push(entry_name(name)?),
                Component::CurDir => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} must not contain '..'", path.display()),
                    ))
                }
            }
        }
        let last = names.len();
        let flags = |i: usize| if i == last { last_flags } else { SEARCH_FLAGS };
        let root = CString::new("/").map_err(io::Error::other)?;
        let mut fd = openat(libc::AT_FDCWD, &root, flags(0), 0)?;
        for (i, name) in names.iter().enumerate() {
            fd = openat(fd.as_raw_fd(), name, flags(i + 1), 0)?;
        }
        Ok(Dir { fd })
    }

    /// The folder `name` inside this one; fails on a symlink or a non-folder (`ENOTDIR`).
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let name = entry_name(name)?;
        Ok(Dir {
            fd: openat(self.fd.as_raw_fd(), &name, DIR_FLAGS, 0)?,
        })
    }

    /// The file `name`, for reading; fails on a symlink (`ELOOP`). Non-blocking open, so a FIFO
    /// swapped in does not hang the walk; the caller checks what it got with `metadata()`.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let name = entry_name(name)?;
        let fd = openat(
            self.fd.as_raw_fd(),
            &name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
        )?;
        Ok(File::from(fd))
    }

    /// A handle on `name` itself, whatever it is, a symlink included (`O_PATH|O_NOFOLLOW`):
    /// good for `metadata()`, not for reading; opening it has no side effect on a device.
    pub fn open_node(&self, name: &OsStr) -> io::Result<File> {
        let name = entry_name(name)?;
        let fd = openat(
            self.fd.as_raw_fd(),
            &name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )?;
        Ok(File::from(fd))
    }

    /// Create the new file `name` (`O_CREAT|O_EXCL|O_NOFOLLOW`) with `mode`, for writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let name = entry_name(name)?;
        let fd = openat(
            self.fd.as_raw_fd(),
            &name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode as libc::mode_t,
        )?;
        Ok(File::from(fd))
    }

    /// `fstatat(name, AT_SYMLINK_NOFOLLOW)`: a symlink is reported as one.
    pub fn stat(&self, name: &OsStr) -> io::Result<Stat> {
        let name = entry_name(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid descriptor and string; `st` is written by fstatat on success.
        check(unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: fstatat succeeded, so it filled `st`.
        Ok(Stat::from_raw(unsafe { &st.assume_init() }))
    }

    /// This folder's own metadata (`fstat`).
    pub fn metadata(&self) -> io::Result<Metadata> {
        let dup = self.fd.try_clone()?;
        File::from(dup).metadata()
    }

    /// The names in this folder (without `.` and `..`), sorted by their bytes.
    pub fn entries(&self) -> io::Result<Vec<OsString>> {
        // fdopendir takes the descriptor it is given: hand it a duplicate, and rewind, since the
        // duplicate shares the position of ours.
        let dup = self.fd.try_clone()?;
        // SAFETY: `dup` is an open folder descriptor; on success the DIR owns it.
        let dirp = unsafe { libc::fdopendir(dup.as_raw_fd()) };
        if dirp.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(dup);
        let mut names = Vec::new();
        let result = (|| {
            // SAFETY: `dirp` is a valid DIR for the whole closure.
            unsafe { libc::rewinddir(dirp) };
            loop {
                // readdir signals an error only through errno: clear it first.
                // SAFETY: errno is thread-local.
                unsafe { *libc::__errno_location() = 0 };
                // SAFETY: `dirp` is valid; the entry lives until the next readdir on it.
                let ent = unsafe { libc::readdir(dirp) };
                if ent.is_null() {
                    let e = io::Error::last_os_error();
                    return match e.raw_os_error() {
                        Some(0) | None => Ok(()),
                        Some(_) => Err(e),
                    };
                }
                // SAFETY: d_name is a NUL-terminated string inside the entry.
                let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
                if name != b"." && name != b".." {
                    names.push(OsString::from_vec(name.to_vec()));
                }
            }
        })();
        // SAFETY: `dirp` came from fdopendir and is closed once (this closes the duplicate).
        unsafe { libc::closedir(dirp) };
        result?;
        names.sort();
        Ok(names)
    }

    /// `unlinkat(name)`: remove a file (or symlink) from this folder.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        let name = entry_name(name)?;
        // SAFETY: valid descriptor and string.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) }).map(|_| ())
    }

    /// `unlinkat(name, AT_REMOVEDIR)`: remove an empty folder from this folder.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        let name = entry_name(name)?;
        // SAFETY: valid descriptor and string.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })
            .map(|_| ())
    }

    /// `readlinkat(name)`: where the symlink `name` points (never followed).
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        let name = entry_name(name)?;
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: valid descriptor and string; `buf` has `buf.len()` writable bytes.
            let n = unsafe {
                libc::readlinkat(
                    self.fd.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(PathBuf::from(OsString::from_vec(buf)));
            }
            // Possibly truncated: try again with more room.
            let grown = buf.len() * 4;
            buf.resize(grown, 0);
        }
    }

    /// `renameat(from, to)` within this folder.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from, to) = (entry_name(from)?, entry_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid descriptor and strings.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn paths_open_only_without_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        std::os::unix::fs::symlink(base.join("a"), base.join("link")).unwrap();
        assert!(Dir::open_path(&base.join("a/b")).is_ok());
        let err = Dir::open_path(&base.join("link/b")).unwrap_err();
        assert!(
            [Some(libc::ELOOP), Some(libc::ENOTDIR)].contains(&err.raw_os_error()),
            "{err}"
        );
        assert!(Dir::open_path(Path::new("relative")).is_err());
        assert!(Dir::open_path(&base.join("a/../a")).is_err());
        assert!(Dir::open_path_to_search(&base.join("link/b")).is_err());
        let search = Dir::open_path_to_search(&base.join("a")).unwrap();
        assert_eq!(search.stat(OsStr::new("b")).unwrap().kind, Kind::Dir);
        let a = Dir::open_path(&base.join("a")).unwrap();
        assert!(a.open_dir(OsStr::new("..")).is_err());
        assert!(a.open_dir(OsStr::new("b/c")).is_err());
    }

    #[test]
    fn a_held_folder_stays_the_same_folder_when_its_path_is_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.join("z")).unwrap();
        std::fs::write(base.join("z/f"), "inside").unwrap();
        std::fs::write(outside.path().join("f"), "outside").unwrap();
        let z = Dir::open_path(&base.join("z")).unwrap();
        std::fs::rename(base.join("z"), base.join("z.old")).unwrap();
        std::os::unix::fs::symlink(outside.path(), base.join("z")).unwrap();
        let mut text = String::new();
        z.open_file(OsStr::new("f"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "inside");
        z.remove_file(OsStr::new("f")).unwrap();
        assert!(outside.path().join("f").exists());
        assert!(!base.join("z.old/f").exists());
        // The symlink itself is seen, never entered.
        let root = Dir::open_path(&base).unwrap();
        assert_eq!(root.stat(OsStr::new("z")).unwrap().kind, Kind::Symlink);
        assert!(root.open_dir(OsStr::new("z")).is_err());
        assert!(root.open_file(OsStr::new("z")).is_err());
        assert_eq!(root.read_link(OsStr::new("z")).unwrap(), outside.path());
        assert!(root.remove_dir(OsStr::new("z")).is_err());
    }

    #[test]
    fn entries_stat_create_rename_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dir::open_path(&dir.path().canonicalize().unwrap()).unwrap();
        let mut f = d.create_file(OsStr::new("b.tmp"), 0o600).unwrap();
        f.write_all(b"12345").unwrap();
        drop(f);
        assert!(d.create_file(OsStr::new("b.tmp"), 0o600).is_err());
        d.rename(OsStr::new("b.tmp"), OsStr::new("b")).unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        // Twice: listing does not consume the folder.
        for _ in 0..2 {
            assert_eq!(d.entries().unwrap(), ["a", "b"]);
        }
        let st = d.stat(OsStr::new("b")).unwrap();
        assert_eq!((st.kind, st.len), (Kind::File, 5));
        use std::os::unix::fs::PermissionsExt;
        let meta = d.open_node(OsStr::new("b")).unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(d.stat(OsStr::new("a")).unwrap().kind, Kind::Dir);
        assert!(d.metadata().unwrap().is_dir());
        assert!(d.remove_dir(OsStr::new("b")).is_err());
        d.remove_file(OsStr::new("b")).unwrap();
        d.remove_dir(OsStr::new("a")).unwrap();
        assert!(d.entries().unwrap().is_empty());
    }
}
