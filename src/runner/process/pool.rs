//! Worker threads kept between executions, so starting one is a wake-up, not a thread creation.
//!
//! A task goes to an idle worker if there is one, else to a new thread; a worker idle for
//! [`IDLE_EXIT`] ends, so a quiet runner keeps none (and no timer wakes it).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// How long a worker waits for a next task before it ends: long enough to carry a burst's or a
/// busy minute's workers from one execution to the next, short enough that a runner gone quiet
/// is back to its own threads within seconds (creating a thread again costs tens of µs).
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// A worker only waits for a child and reads its output: a small stack is plenty.
const STACK: usize = 256 * 1024;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// The runner's workers: one pool for the process, whoever starts executions.
static WORKERS: std::sync::LazyLock<Pool> = std::sync::LazyLock::new(Pool::new);

/// Run `task` on one of the process's worker threads (see [`Pool::execute`]).
pub fn on_worker(task: impl FnOnce() + Send + 'static) -> io::Result<()> {
    WORKERS.execute(task)
}

/// A pool of worker threads that grows with the work and shrinks when idle. Cheap to clone.
#[derive(Clone, Default)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    tasks: VecDeque<Task>,
    /// Workers waiting for a task (including those woken but not yet running).
    idle: usize,
    threads: usize,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Run `task` on a worker thread. Errors: no idle worker and no new thread could be started
    /// (`task` is dropped, not run).
    pub fn execute(&self, task: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.tasks.push_back(Box::new(task));
        if state.tasks.len() <= state.idle {
            self.shared.wake.notify_one();
            return Ok(());
        }
        let shared = self.shared.clone();
        let spawned = thread::Builder::new()
            .name("exec".into())
            .stack_size(STACK)
            .spawn(move || shared.work());
        match spawned {
            Ok(_) => {
                state.threads += 1;
                Ok(())
            }
            Err(err) => {
                state.tasks.pop_back();
                Err(err)
            }
        }
    }

    /// Worker threads alive now (idle or busy).
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.shared.lock().threads
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Tasks run outside the lock and the state is consistent after every statement.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                drop(state);
                // A panicking task must not take the worker (and its count) with it; tasks that
                // must report a panic catch it themselves.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .wake
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.tasks.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn runs_every_task_and_reuses_idle_workers() -> io::Result<()> {
        let pool = Pool::new();
        let (tx, rx) = mpsc::channel();
        for round in 0..3 {
            for i in 0..8 {
                let tx = tx.clone();
                pool.execute(move || {
                    thread::sleep(Duration::from_millis(20));
                    let _ = tx.send((round, i));
                })?;
            }
            let mut got: Vec<_> = (0..8)
                .map(|_| rx.recv_timeout(Duration::from_secs(10)))
                .collect::<Result<_, _>>()
                .map_err(io::Error::other)?;
            got.sort_unstable();
            assert_eq!(got, (0..8).map(|i| (round, i)).collect::<Vec<_>>());
            // Give the workers a moment to go back to waiting.
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            pool.threads(),
            8,
            "later rounds reuse the first round's workers"
        );
        Ok(())
    }

    #[test]
    fn a_panicking_task_leaves_the_worker_usable() -> io::Result<()> {
        let pool = Pool::new();
        pool.execute(|| panic!("task failed"))?;
        let (tx, rx) = mpsc::channel();
        let until = Instant::now() + Duration::from_secs(10);
        while pool.threads() != 1 || pool.shared.lock().idle != 1 {
            assert!(Instant::now() < until);
            thread::sleep(Duration::from_millis(10));
        }
        pool.execute(move || {
            let _ = tx.send(());
        })?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(io::Error::other)?;
        assert_eq!(pool.threads(), 1);
        Ok(())
    }
}
