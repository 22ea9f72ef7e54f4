//! What this worker learnt of tenants' servers, put on record in batches. A server proving
//! itself (or failing for every mail) is noted at once and written by one task, everything
//! noted meanwhile in one write: after a start, a thousand new tenants prove themselves
//! within a second, and one write each (on SQLite, one commit each, in the writer's turn
//! with claims and outcomes) was most of what their mail waited on. Once written, what
//! this process keeps of each tenant is read anew (a standing forgotten and seen again
//! must not start from the record before this).

use std::sync::{Arc, Mutex};

use domain::health::ServerNote;
use tokio::sync::Notify;

use crate::{Shared, lock};

/// Notes waiting at most; beyond, a new note is dropped (a worker starting later learns
/// it again). Notes come with changes of a server's standing, not with deliveries.
const MAX_WAITING: usize = 10_000;

/// Notes waiting for the writer.
#[derive(Debug, Default)]
pub(crate) struct ServerNotes {
    waiting: Mutex<Vec<ServerNote>>,
    noted: Notify,
}

impl ServerNotes {
    /// Notes what was learnt, for the next write.
    pub(crate) fn note(&self, note: ServerNote) {
        let mut waiting = lock(&self.waiting);
        if waiting.len() >= MAX_WAITING {
            tracing::warn!(tenant = %note.tenant, "too many notes of servers waiting to be written; this one is dropped");
            return;
        }
        waiting.push(note);
        drop(waiting);
        self.noted.notify_one();
    }

    fn take(&self) -> Vec<ServerNote> {
        std::mem::take(&mut *lock(&self.waiting))
    }
}

/// Writes the notes as they come, until aborted.
pub(crate) async fn write_notes(shared: Arc<Shared>) {
    loop {
        shared.server_notes.noted.notified().await;
        write_waiting(&shared).await;
    }
}

/// Writes what is noted now, in one write (at shutdown, what is left).
pub(crate) async fn write_waiting(shared: &Shared) {
    let notes = shared.server_notes.take();
    if notes.is_empty() {
        return;
    }
    match shared.tenants.record_servers(&notes).await {
        Ok(()) => {
            for note in &notes {
                shared.views.record_changed(note.tenant).await;
            }
        }
        Err(e) => {
            tracing::warn!(notes = notes.len(), error = %e, "remembering what tenants' servers did failed; a worker starting later learns it again");
        }
    }
}
