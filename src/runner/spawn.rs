//! Starting executions: the engine hands a [`Spawner`] each claimed execution's [`Spec`]; the
//! spawner reports back through the engine's channel ([`Event::Spawned`], [`Event::Finished`]).
//! [`Processes`] runs real child processes; the engine's tests hand it a fake.

use std::sync::mpsc::Sender;

use super::engine::Event;
use super::process::{self, Cancel, Spec};

pub trait Spawner {
    /// Start `spec` as `execution`. `inline`: nothing else waits, so spawn on this thread and
    /// return the pid (the caller records it); else spawn on the worker thread and report the
    /// pid there. Every end, a failure to start included, is reported as [`Event::Finished`].
    fn launch(
        &self,
        execution: i64,
        spec: Spec,
        cancel: Cancel,
        events: &Sender<Event>,
        inline: bool,
    ) -> Option<u32>;
}

/// Real child processes, each waited for on a worker thread of its own.
pub struct Processes;

impl Spawner for Processes {
    fn launch(
        &self,
        execution: i64,
        spec: Spec,
        cancel: Cancel,
        events: &Sender<Event>,
        inline: bool,
    ) -> Option<u32> {
        // A spawn holds its thread until the child has exec'd (a vfork). With nothing else
        // waiting, the loop spawns here: no hand-over to a new thread between the slot and the
        // child. With a backlog that time would delay every queued start and record, so the
        // worker thread spawns, beside the loop.
        let started = if inline {
            match process::start(&spec) {
                Ok(started) => Some(started),
                Err(e) => {
                    let _ = events.send(Event::Finished {
                        execution,
                        result: Err(format!("cannot start {}: {e}", spec.program.display())),
                    });
                    return None;
                }
            }
        } else {
            None
        };
        let pid = started.as_ref().map(|s| s.pid());
        let tx = events.clone();
        // If no worker can start, the closure is dropped with `started`, which kills the child.
        let spawned = process::on_worker(move || {
            let report = tx.clone();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let started = match started {
                    Some(started) => started,
                    None => {
                        let started = process::start(&spec)?;
                        let pid = started.pid();
                        let _ = report.send(Event::Spawned { execution, pid });
                        started
                    }
                };
                started.wait(&cancel)
            }));
            let result = match result {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(e)) => Err(format!("cannot start {}: {e}", spec.program.display())),
                Err(panic) => Err(format!("the worker panicked: {}", panic_message(&panic))),
            };
            let _ = tx.send(Event::Finished { execution, result });
        });
        if let Err(e) = spawned {
            let _ = events.send(Event::Finished {
                execution,
                result: Err(format!("cannot start a worker thread: {e}")),
            });
        }
        pid
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}
