//! Stopping a running child from another thread (runner shutdown, `cronmgr kill`).

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Event;

/// Cancel a running child from another thread (runner shutdown, `cronmgr kill`): TERM the group,
/// grace, KILL. Clones share one flag: cancelling any clone cancels them all, and it stays
/// cancelled (a `run` started with a cancelled handle stops its child right after the spawn).
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    cancelled: bool,
    next_id: u64,
    /// The `run` calls waiting on this handle, each woken through its own event channel.
    listeners: Vec<(u64, Sender<Event>)>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        for (_, listener) in &state.listeners {
            // A listener whose run has ended just does not hear it.
            let _ = listener.send(Event::Cancel);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Deliver `Event::Cancel` to `events` when cancelled (at once if it already is), until the
    /// returned guard is dropped.
    pub(super) fn subscribe(&self, events: Sender<Event>) -> Subscription<'_> {
        let mut state = self.lock();
        if state.cancelled {
            let _ = events.send(Event::Cancel);
        }
        let id = state.next_id;
        state.next_id += 1;
        state.listeners.push((id, events));
        Subscription { cancel: self, id }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a flag and a list, consistent after every statement: poison tells nothing.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct Subscription<'a> {
    cancel: &'a Cancel,
    id: u64,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.cancel
            .lock()
            .listeners
            .retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn clones_share_the_flag_and_listeners_hear_it() {
        let cancel = Cancel::new();
        let other = cancel.clone();
        let (tx, rx) = mpsc::channel();
        let sub = cancel.subscribe(tx);
        assert!(!other.is_cancelled());
        other.cancel();
        assert!(cancel.is_cancelled());
        assert!(matches!(rx.try_recv(), Ok(Event::Cancel)));
        drop(sub);
        assert!(cancel.lock().listeners.is_empty());
    }

    #[test]
    fn subscribing_to_a_cancelled_handle_hears_it_at_once() {
        let cancel = Cancel::new();
        cancel.cancel();
        let (tx, rx) = mpsc::channel();
        let _sub = cancel.subscribe(tx);
        assert!(matches!(rx.try_recv(), Ok(Event::Cancel)));
    }
}
