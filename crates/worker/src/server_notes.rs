//! What this worker learnt of tenants' servers, put on record in batches. A server proving
//! itself (or failing for every mail) is noted at once and written by one task, everything
//! noted meanwhile in one write: after a start, a thousand new tenants prove themselves
//! within a second, and one write each (on SQLite, one commit each, in the writer's turn
//! with claims and outcomes) was most of what their mail waited on. Once written, what
//! this process keeps of each tenant is read anew (a standing forgotten and seen again
//! must not start from the record before this). At shutdown the task writes what is left
//! and ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::TenantId;
use domain::health::{ServerLearnt, ServerNote};
use tokio::sync::{Notify, oneshot};

use crate::{Shared, lock};

/// Notes written in one transaction at most (each a row lock held to its commit).
const PER_WRITE: usize = 500;
/// Pause after a failed write before the notes are tried again.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The latest time of each fact waiting for the writer, by tenant, settings version and
/// fact: bounded by the settings versions in use, however often a server flaps.
type Waiting = BTreeMap<(TenantId, i64, ServerLearnt), DateTime<Utc>>;

/// Notes waiting for the writer.
#[derive(Debug, Default)]
pub(crate) struct ServerNotes {
    waiting: Mutex<Waiting>,
    noted: Notify,
}

impl ServerNotes {
    /// Notes what was learnt, for the next write (a later time of the same fact replaces
    /// an earlier one).
    pub(crate) fn note(&self, note: ServerNote) {
        merge(&mut lock(&self.waiting), [note]);
        self.noted.notify_one();
    }

    fn take(&self) -> Vec<ServerNote> {
        std::mem::take(&mut *lock(&self.waiting))
            .into_iter()
            .map(|((tenant, version, learnt), at)| ServerNote {
                tenant,
                version,
                learnt,
                at,
            })
            .collect()
    }
}

fn merge(waiting: &mut Waiting, notes: impl IntoIterator<Item = ServerNote>) {
    for n in notes {
        let at = waiting.entry((n.tenant, n.version, n.learnt)).or_insert(n.at);
        if *at < n.at {
            *at = n.at;
        }
    }
}

/// Writes the notes as they come until `stop`, then what is left, and ends.
pub(crate) async fn write_notes(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            () = shared.server_notes.noted.notified() => {
                if !write_waiting(&shared).await {
                    tokio::select! {
                        () = tokio::time::sleep(AFTER_FAILURE) => {}
                        _ = &mut stop => break,
                    }
                }
            }
            _ = &mut stop => break,
        }
    }
    write_waiting(&shared).await;
}

/// Writes what is noted now, in key order (so writers in several processes lock rows in
/// the same order), [`PER_WRITE`] to a transaction; what fails goes back to wait. Whether
/// everything was written.
async fn write_waiting(shared: &Shared) -> bool {
    let notes = shared.server_notes.take();
    for (i, chunk) in notes.chunks(PER_WRITE).enumerate() {
        match shared.tenants.record_servers(chunk).await {
            Ok(()) => {
                let mut tenants: Vec<TenantId> = chunk.iter().map(|n| n.tenant).collect();
                tenants.dedup();
                for tenant in tenants {
                    shared.views.record_changed(tenant).await;
                }
            }
            Err(e) => {
                tracing::warn!(notes = chunk.len(), error = %e, "remembering what tenants' servers did failed; tried again shortly");
                merge(
                    &mut lock(&shared.server_notes.waiting),
                    notes[i * PER_WRITE..].iter().copied(),
                );
                shared.server_notes.noted.notify_one();
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_noted_again_keeps_its_latest_time_and_notes_come_out_in_key_order() {
        let notes = ServerNotes::default();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let note = |tenant, learnt, at| ServerNote {
            tenant,
            version: 1,
            learnt,
            at,
        };
        notes.note(note(b, ServerLearnt::Reached, at(1)));
        notes.note(note(a, ServerLearnt::Unreachable, at(5)));
        notes.note(note(b, ServerLearnt::Reached, at(3)));
        notes.note(note(b, ServerLearnt::Reached, at(2)));
        notes.note(note(a, ServerLearnt::Reached, at(4)));
        let mut expected = vec![
            note(b, ServerLearnt::Reached, at(3)),
            note(a, ServerLearnt::Unreachable, at(5)),
            note(a, ServerLearnt::Reached, at(4)),
        ];
        expected.sort_by_key(|n| (n.tenant, n.version, n.learnt));
        assert_eq!(notes.take(), expected);
        assert!(notes.take().is_empty(), "taken once");
    }
}
