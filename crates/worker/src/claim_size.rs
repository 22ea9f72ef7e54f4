//! How many rows of one tenant a claim may take.
//!
//! A claim hands one tenant at most a batch, so one tenant's queue cannot fill a claim
//! while others wait. Where every claim takes the store's one write turn (SQLite), a
//! lone busy tenant then pays a turn per batch that the recorder's writes wait behind.
//! When a claim came back short with a tenant at its limit, little else was due beside
//! that tenant (outside the tenants left out because they hold enough; a tenant whose
//! rows lay beyond the claim's window of candidates is in the next claim): the next
//! claims may take a batch more of one tenant, up to [`GROWTH`] batches, and always ask
//! for a batch beyond that for anyone else. Once a claim is full (others have mail due
//! again) the limit is a batch again; a claim that is short for another reason (the
//! busy tenant left out while it holds enough, or its queue running low) changes
//! nothing. Where claims and writes run side by side (PostgreSQL) the limit stays a
//! batch: a larger claim only locks more candidate rows there.

/// A tenant's limit grows up to this many batches.
pub(crate) const GROWTH: usize = 3;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimSize {
    batch: usize,
    grows: bool,
    per_tenant: usize,
}

impl ClaimSize {
    /// Limits of `batch` rows per tenant, growing only if `grows` (claims take the
    /// store's one write turn).
    pub(crate) fn new(batch: usize, grows: bool) -> Self {
        let batch = batch.max(1);
        Self {
            batch,
            grows,
            per_tenant: batch,
        }
    }

    /// The limit of rows per tenant the claims are at (what a tenant may hold beside its
    /// lanes before it is left out of claims, too).
    pub(crate) fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    /// The next claim's limits with `room` for this many rows: how many it asks for, and
    /// how many of one tenant at most. Two batches and one (so a claim serves at least two
    /// tenants when two have mail due); a grown limit and a batch more for anyone else,
    /// which the grown limit always leaves free.
    pub(crate) fn limits(&self, room: usize) -> Limits {
        let rows = room.min(self.per_tenant + self.batch);
        let per_tenant = self
            .per_tenant
            .min(rows.saturating_sub(self.batch))
            .max(self.batch.min(rows));
        Limits { rows, per_tenant }
    }

    /// A claim made with `limits` got `got` rows, at most `most` of one tenant.
    pub(crate) fn claimed(&mut self, limits: Limits, got: usize, most: usize) {
        if !self.grows || got >= limits.rows {
            self.per_tenant = self.batch;
        } else if most >= limits.per_tenant {
            self.per_tenant = (self.per_tenant + self.batch).min(GROWTH * self.batch);
        }
    }
}

/// One claim's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Rows in all.
    pub(crate) rows: usize,
    /// Rows of one tenant.
    pub(crate) per_tenant: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_busy_tenant_gets_larger_claims_and_loses_them_once_others_come() {
        let limits = |rows, per_tenant| Limits { rows, per_tenant };
        let mut size = ClaimSize::new(32, true);
        assert_eq!(size.limits(1_000), limits(64, 32));
        // Short, and the one tenant got its limit: nothing else was due.
        size.claimed(limits(64, 32), 32, 32);
        assert_eq!(size.limits(1_000), limits(96, 64));
        size.claimed(limits(96, 64), 64, 64);
        assert_eq!(size.limits(1_000), limits(128, 96));
        size.claimed(limits(128, 96), 96, 96);
        assert_eq!(size.per_tenant(), 96, "at most three batches");
        // The room there is bounds the claim, and a batch of it stays free for others.
        assert_eq!(size.limits(88), limits(88, 56));
        assert_eq!(size.limits(40), limits(40, 32));
        assert_eq!(size.limits(20), limits(20, 20));
        // Short for another reason (the tenant left out while it holds enough, or its
        // queue running low): as it was.
        size.claimed(limits(88, 56), 0, 0);
        size.claimed(limits(88, 56), 10, 4);
        assert_eq!(size.per_tenant(), 96);
        // A full claim: others may be waiting behind it.
        size.claimed(limits(88, 56), 88, 56);
        assert_eq!(size.per_tenant(), 32);
        size.claimed(limits(64, 32), 20, 20);
        assert_eq!(size.per_tenant(), 32, "no tenant at its limit: as it was");
    }

    #[test]
    fn where_claims_do_not_take_turns_with_writes_a_tenant_gets_a_batch() {
        let mut size = ClaimSize::new(32, false);
        size.claimed(size.limits(1_000), 32, 32);
        assert_eq!(
            size.limits(1_000),
            Limits {
                rows: 64,
                per_tenant: 32
            }
        );
    }
}
