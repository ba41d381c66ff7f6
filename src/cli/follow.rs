//! Streaming a file that another thread or process is still writing (live execution output).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Copy `path` to stdout as it grows, until `done()` says the writer finished; then copy the rest.
/// Waits up to `appear` for the file to exist. Returns false if it never appeared.
pub fn follow(
    path: &Path,
    appear: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<bool> {
    let start = Instant::now();
    let mut file = loop {
        match File::open(path) {
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
