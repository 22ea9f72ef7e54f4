//! What every service shares: pages of a list, and the rounds of a conditional write.

use crate::error::WriteError;
use crate::error::{Error, Result};

/// How often a write is retried when someone else wrote first and the caller did not
/// ask for a version check.
const WRITE_ATTEMPTS: usize = 5;

/// Largest page of tenants or audit entries.
pub const MAX_PAGE: u64 = 100;

/// A page of results and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

/// Fetches a page of at most `first` (capped at [`MAX_PAGE`]) by asking `fetch` for one
/// more row than that, which says whether another page follows.
pub(crate) async fn page<T, E>(first: u64, fetch: impl AsyncFnOnce(u64) -> Result<Vec<T>, E>) -> Result<Page<T>>
where
    Error: From<E>,
{
    let first = first.min(MAX_PAGE);
    let mut items = fetch(first + 1).await?;
    let has_next_page = items.len() as u64 > first;
    items.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    Ok(Page { items, has_next_page })
}

/// Settles the rounds of a conditional write that a concurrent writer may refuse: at
/// most [`WRITE_ATTEMPTS`] rounds, each reading what is stored now. A version conflict
/// ends it at once when the caller asked for a version (`strict`); a plan changed by
/// someone else is simply tried again. If others keep winning, the last version seen is
/// reported as a conflict.
pub(super) struct ConflictRetry {
    strict: bool,
    rounds: usize,
    last_current: i64,
}

impl ConflictRetry {
    pub(super) fn new(strict: bool) -> Self {
        Self {
            strict,
            rounds: 0,
            last_current: 0,
        }
    }

    /// The write's result: `Some` when done, `None` to try another round, or the error
    /// that ends it.
    pub(super) fn settle<T>(&mut self, written: Result<T, WriteError>) -> Result<Option<T>> {
        self.rounds += 1;
        match written {
            Ok(done) => Ok(Some(done)),
            Err(WriteError::VersionConflict { current }) if self.strict => Err(Error::VersionConflict { current }),
            Err(WriteError::VersionConflict { current }) => {
                self.last_current = current;
                self.again()
            }
            Err(WriteError::PlanChanged) => self.again(),
            Err(WriteError::NotFound) => Err(Error::NotFound),
            Err(WriteError::Store(e)) => Err(e.into()),
        }
    }

    fn again<T>(&self) -> Result<Option<T>> {
        if self.rounds >= WRITE_ATTEMPTS {
            Err(Error::VersionConflict {
                current: self.last_current,
            })
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;

    #[test]
    fn a_conflict_is_retried_unless_the_caller_named_a_version() {
        // Without a version: conflicts and plan races are tried again, the last version
        // seen is reported once the rounds are used up.
        let mut writes = ConflictRetry::new(false);
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::VersionConflict { current: 3 })),
            Ok(None)
        ));
        assert!(matches!(writes.settle::<()>(Err(WriteError::PlanChanged)), Ok(None)));
        assert!(matches!(writes.settle(Ok(7)), Ok(Some(7))));
        let mut writes = ConflictRetry::new(false);
        for round in 1..WRITE_ATTEMPTS {
            let again = writes.settle::<()>(Err(WriteError::VersionConflict { current: 9 }));
            assert!(matches!(again, Ok(None)), "round {round}");
        }
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::VersionConflict { current: 10 })),
            Err(Error::VersionConflict { current: 10 })
        ));

        // With a version: the first conflict is the caller's answer.
        let mut writes = ConflictRetry::new(true);
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::VersionConflict { current: 4 })),
            Err(Error::VersionConflict { current: 4 })
        ));
        // Other refusals end it at once, whatever the mode.
        let mut writes = ConflictRetry::new(false);
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::NotFound)),
            Err(Error::NotFound)
        ));
        let store = WriteError::Store(StoreError::Corrupt("x".into()));
        assert!(matches!(writes.settle::<()>(Err(store)), Err(Error::Internal(_))));
    }
}
