//! Streaming a file that another thread or process is still writing (live execution output).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Open a live log for reading; never through a symbolic link, which a user able to write the
/// logs folder could plant to have this command print what it points at.
fn open_live(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// What a live log holds so far (empty if it is not there, or is not a plain file).
pub fn read_live(path: &Path) -> Vec<u8> {
    let mut text = Vec::new();
    if let Ok(mut f) = open_live(path) {
        let _ = f.read_to_end(&mut text);
    }
    text
}

/// Copy `path` to stdout as it grows, until `done()` says the writer finished; then copy the rest.
/// Waits up to `appear` for the file to exist. Returns false if it never appeared.
pub fn follow(
    path: &Path,
    appear: Duration,
    mut done: impl FnMut() -> bool,
) -> crate::exit::Result<bool> {
    let start = Instant::now();
    let mut file = loop {
        match open_live(path) {
            Ok(f) => break f,
            Err(_) if done() => return Ok(false),
            Err(_) if start.elapsed() > appear => return Ok(false),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = std::io::stdout();
    loop {
        let finished = done();
        // The writer may unlink the file when done: our open handle still reads it all.
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
        out.flush()?;
        if finished {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
