//! The runner: due selection, claiming, worker threads, timeouts, retries, signals, sd_notify.

pub mod clock;
mod engine;
pub mod execute;
pub mod lock;
mod memory;
mod modes;
pub mod notify;
pub mod process;
mod recorder;

use std::path::PathBuf;

use anyhow::Context as _;

pub use clock::{Clock, OffsetFileClock, SystemClock};
pub use engine::{Engine, Event, Options, Summary};
pub use lock::{nudge, runner_pid, LockError, RunnerLock};

use crate::config::Config;
use crate::store::Store;

/// Run the runner on `db` until a stop signal (or, with `once`, until what was due is done).
///
/// `force` skips the one-runner-per-database lock: slots are still claimed only once.
pub fn serve(
    db: PathBuf,
    config_path: Option<PathBuf>,
    once: bool,
    max_concurrent: Option<usize>,
    force: bool,
    metrics_file: Option<PathBuf>,
) -> anyhow::Result<Summary> {
    let lock = match RunnerLock::acquire(&db) {
        Ok(lock) => Some(lock),
        Err(LockError::Held { .. }) if force => {
            tracing::warn!("another runner holds the lock; running anyway (--force)");
            None
        }
        Err(e) => return Err(crate::exit::Invalid(e.to_string()).into()),
    };
    let config = Config::load(config_path.as_deref())?;
    modes::check("config file", &config.path)?;
    modes::check("database", &db)?;
    // Whoever can write the folder can replace the database or plant its -wal/-shm files.
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        modes::check("database folder", dir)?;
    }
    let store = Store::open(&db).with_context(|| format!("opening database {}", db.display()))?;
    let clock: Box<dyn Clock> = match std::env::var_os("CRONMGR_CLOCK_OFFSET_FILE") {
        Some(path) => Box::new(OffsetFileClock(path.into())),
        None => Box::new(SystemClock),
    };
    let engine = Engine::new(
        store,
        config,
        clock.as_ref(),
        Options {
            once,
            max_concurrent,
            db_path: db,
            config_path,
            metrics_file,
        },
    );
    let events = engine.sender();
    let mut signals = signal_hook::iterator::Signals::new([
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGUSR1,
    ])
    .context("installing signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if events.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .context("starting the signal thread")?;
    let result = engine.run();
    handle.close();
    drop(lock);
    result
}
