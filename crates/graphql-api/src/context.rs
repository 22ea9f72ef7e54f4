//! What each request carries into the resolvers: the authenticated caller (if any), the
//! language to answer in, and what the request has already read that its other fields
//! (aliases, the requests of a batch) may ask for again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::ports::StatusCounts;
use domain::{Caller, Locale, TenantId};
use tokio::sync::OnceCell;

/// Per-request data, attached with `Request::data`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub caller: Option<Caller>,
    pub locale: Locale,
    /// Each tenant's per-status counts, read once per request (they scan the tenant's
    /// queue, so many aliased `deliveries { counts }` must not scan it many times).
    pub(crate) counts: Arc<CountsMemo>,
    /// The trace this request's operations run in (W3C `traceparent`), when traces are on:
    /// what it enqueues continues it.
    pub trace_parent: Option<domain::TraceParent>,
}

impl RequestContext {
    pub fn new(caller: Option<Caller>, locale: Locale) -> Self {
        Self {
            caller,
            locale,
            counts: Arc::default(),
            trace_parent: None,
        }
    }

    /// Within the trace `trace_parent`.
    pub fn with_trace_parent(mut self, trace_parent: Option<domain::TraceParent>) -> Self {
        self.trace_parent = trace_parent;
        self
    }

    /// The caller, or `UNAUTHENTICATED`.
    pub fn caller(&self) -> domain::Result<&Caller> {
        self.caller.as_ref().ok_or(domain::Error::Unauthenticated)
    }
}

/// Status counts by tenant, each computed by the first field that asks (the others wait
/// for it).
#[derive(Debug, Default)]
pub(crate) struct CountsMemo(Mutex<HashMap<TenantId, Arc<OnceCell<StatusCounts>>>>);

impl CountsMemo {
    /// The tenant's counts: one `read` runs per request, and only its success is kept.
    pub(crate) async fn get_or_read(
        &self,
        tenant: TenantId,
        read: impl Future<Output = domain::Result<StatusCounts>>,
    ) -> domain::Result<StatusCounts> {
        let cell = {
            let mut cells = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cells.entry(tenant).or_default().clone()
        };
        cell.get_or_try_init(|| read).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use domain::delivery::DeliveryStatus;

    use super::*;

    #[tokio::test]
    async fn aliases_share_one_read_of_a_tenants_counts_and_a_failure_is_not_kept() {
        let memo = CountsMemo::default();
        let reads = AtomicUsize::new(0);
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let read = |n: u64| {
            let reads = &reads;
            async move {
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(vec![(DeliveryStatus::Queued, n)])
            }
        };
        let (x, y, z) = tokio::join!(
            memo.get_or_read(a, read(1)),
            memo.get_or_read(a, read(2)),
            memo.get_or_read(b, read(3)),
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one read per tenant");
        assert_eq!(x.unwrap(), y.unwrap());
        assert_eq!(z.unwrap()[0].1, 3);

        let c = TenantId::generate();
        let failed = memo.get_or_read(c, async { Err(domain::Error::NotFound) }).await;
        assert!(failed.is_err());
        assert_eq!(memo.get_or_read(c, read(4)).await.unwrap()[0].1, 4, "tried again");
    }
}
