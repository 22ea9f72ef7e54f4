//! The domain's delivery ports on [`SqlStore`], so tenants and their deliveries share one
//! pool: the outbox ([`DeliveryOutbox`]), the worker's queue ([`DeliveryQueue`]) and the
//! tenant-scoped queries ([`DeliveryQueries`]).
//!
//! A delivery is `QUEUED` or `RETRYING` until it is due, then a worker *claims* it: one
//! statement moves it to `SENDING` under that worker's lease and returns it. The worker
//! *finishes* it (attempt row and new state in one transaction, only while it still holds
//! the lease) or gives it back unattempted; what the new state is comes from the domain's
//! [`DeliveryUpdate`], which this module applies without deciding anything. A lease that runs out makes the delivery
//! claimable again, so a crashed worker loses nothing.
//!
//! The claim reads the two partial indexes of the migration (due rows; leased rows), each
//! in order with a limit, so its cost does not grow with the sent and failed rows that
//! fill the table. On PostgreSQL each side locks its rows `FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers split the queue without waiting on each other; SQLite has one
//! writer, and the single statement is atomic there.
//!
//! The claim, lease renewal and finish guard are the leased queue's (`leased_queue`,
//! described by `queue::DELIVERY_QUEUE`); what is the deliveries' own — their columns,
//! postponement, retention's clearing — stays here.

use domain::error::FieldCode;

const INVALID: FieldCode = FieldCode::InvalidFormat;

/// How often an enqueue retries when the delivery it conflicted with is gone by the time
/// it is read (deleted with its tenant in between).
const ENQUEUE_ROUNDS: usize = 3;

mod archived;
mod outbox;
mod queries;
mod queue;
mod rows;
#[cfg(test)]
mod tests;

// What the tests reach besides the ports.
#[cfg(test)]
use crate::convert::delivery_row;
#[cfg(test)]
use queries::{TenantRows, tenant_rows_statement};
#[cfg(test)]
use queue::{ClaimLimits, claim_statement, old_content};
