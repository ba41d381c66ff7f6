//! The runner: due selection, claiming, worker threads, timeouts, retries, signals, sd_notify.

mod calendar;
mod chains;
pub mod clock;
mod dispatch;
mod engine;
pub mod execute;
pub mod fleet;
mod housekeeping;
mod lifecycle;
pub mod lock;
mod logfile;
mod missed;
mod modes;
pub mod notify;
pub mod process;
mod recorder;
mod spawn;

use std::path::PathBuf;
use std::time::Duration;

use crate::exit::Context as _;

pub use calendar::fire_at;
pub use clock::{Clock, OffsetFileClock, SystemClock};
pub use engine::{Engine, Event, Options, Summary};
pub use fleet::check_label;
pub use lock::{nudge, runner_pid, LockError, RunnerLock};

use crate::config::Config;
use crate::store::Store;

/// What `cronmgr run` was asked for.
pub struct ServeOptions {
    pub db: PathBuf,
    pub config_path: Option<PathBuf>,
    pub once: bool,
    pub max_concurrent: Option<usize>,
    pub force: bool,
    pub metrics_file: Option<PathBuf>,
    pub labels: Vec<String>,
    pub lease: Duration,
    /// Stop as SIGTERM would after this long (`run --for`).
    pub stop_after: Option<Duration>,
}

/// Run the runner on `db` until a stop signal (or, with `once`, until what was due is done).
///
/// `force` skips the one-runner-per-database lock: slots are still claimed only once. A
/// PostgreSQL database takes any number of runners, on any hosts.
pub fn serve(o: ServeOptions) -> crate::exit::Result<Summary> {
    let ServeOptions {
        db,
        config_path,
        once,
        max_concurrent,
        force,
        metrics_file,
        labels,
        lease,
        stop_after,
    } = o;
    let shared = crate::store::is_postgres(&db);
    // Every check before the first write: a refused start leaves the database and the files
    // beside it as they were (no lock file, no WAL frame).
    let config = Config::load(config_path.as_deref())?;
    modes::check_database(&db, &crate::store::local_base(&db), shared)?;
    modes::check_config(&config.path)?;
    let shown = crate::store::display_db(&db);
    if !shared {
        Store::check_integrity(&db).with_context(|| format!("checking database {shown}"))?;
    }
    // A shared (PostgreSQL) database has many runners, on this host and others: no lock file.
    let lock = match shared {
        true => None,
        false => match RunnerLock::acquire(&db) {
            Ok(lock) => Some(lock),
            Err(LockError::Held { .. }) if force => {
                tracing::warn!("another runner holds the lock; running anyway (--force)");
                None
            }
            // Another runner up is a runtime condition, not bad input: exit 1.
            Err(e) => return Err(e.into()),
        },
    };
    let store = Store::open(&db).with_context(|| format!("opening database {shown}"))?;
    // Before any thread or child: into the delegated cgroup's leaf, or rlimits (logged).
    process::init_runner();
    // The tests' clock hook, chosen once: without the variable, the plain system clock.
    let offset_clock = std::env::var_os("CRONMGR_CLOCK_OFFSET_FILE")
        .map(|path| std::sync::Arc::new(OffsetFileClock::new(path.into())));
    let clock: std::sync::Arc<dyn Clock> = match &offset_clock {
        Some(c) => c.clone(),
        None => std::sync::Arc::new(SystemClock),
    };
    let engine = Engine::new(
        store,
        clock.as_ref(),
        Box::new(spawn::Processes),
        Options {
            once,
            max_concurrent,
            db_path: db,
            config,
            config_path,
            metrics_file,
            labels,
            lease,
        },
    );
    let events = engine.sender();
    if let Some(after) = stop_after {
        let events = events.clone();
        std::thread::Builder::new()
            .name("stop-after".into())
            .spawn(move || {
                std::thread::sleep(after);
                tracing::info!(
                    after_s = after.as_secs(),
                    "stopping: the --for duration is over"
                );
                let _ = events.send(Event::Signal(libc::SIGTERM));
            })
            .context("starting the --for timer")?;
    }
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
                // Before the engine wakes to it: the tests move the clock, then nudge.
                if let (libc::SIGUSR1, Some(c)) = (sig, &offset_clock) {
                    c.reload();
                }
                if events.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .context("starting the signal thread")?;
    let result = engine.run();
    handle.close();
    drop(lock);
    Ok(result?)
}
