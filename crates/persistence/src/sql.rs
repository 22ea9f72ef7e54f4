//! SQL text built by hand where sea-query cannot say it (the queue's claims and
//! finishes): placeholders in the backend's style, values collected in order.

use sea_orm::{DbBackend, Statement, Value};

/// Builds SQL text with placeholders in the backend's style (`$n` or `?`) and collects
/// the values in the same order.
pub(crate) struct SqlBuilder {
    backend: DbBackend,
    sql: String,
    values: Vec<Value>,
}

impl SqlBuilder {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            sql: String::with_capacity(1024),
            values: Vec::new(),
        }
    }

    pub(crate) fn sql(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.values.len().to_string());
            }
            _ => self.sql.push('?'),
        }
        self
    }

    /// ` LIMIT n`, the number bound. On SQLite as `+?`: SQLite marks a bare `LIMIT ?` in
    /// the statement's `expmask` (so that a re-prepare can compile the bound number in as
    /// a constant), and any bind of a parameter so marked makes the next step prepare the
    /// statement again. sqlx binds every parameter on every run, so the claim, the
    /// queue's costliest statement, was compiled anew on every run, inside the one write
    /// turn (12% of the SQLite connection thread's time in the `delivery` benchmark).
    /// `+?` is the same number, read when the statement runs. (sea-query's own
    /// `.limit()`, and sea-orm's `.one()`, still bind a bare `LIMIT ?`: none is on the
    /// claim or delivery path.)
    pub(crate) fn limit(&mut self, n: i64) -> &mut Self {
        self.sql.push_str(" LIMIT ");
        if self.backend == DbBackend::Sqlite {
            self.sql.push('+');
        }
        self.bind(n)
    }

    /// Binds each value, separated by commas (`$1, $2, $3`): an `IN (…)` list or a row
    /// of `VALUES`.
    pub(crate) fn bind_list<V: Into<Value>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(value);
        }
        self
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_bound_and_on_sqlite_read_when_the_statement_runs() {
        let mut q = SqlBuilder::new(DbBackend::Sqlite);
        q.sql("SELECT id FROM t WHERE a = ").bind(1i64).limit(32);
        let stmt = q.build();
        assert_eq!(stmt.sql, "SELECT id FROM t WHERE a = ? LIMIT +?");
        let values = stmt.values.map(|v| v.0).unwrap_or_default();
        assert_eq!(values.len(), 2);
        assert_eq!(values[1], sea_orm::Value::BigInt(Some(32)));
        let mut q = SqlBuilder::new(DbBackend::Postgres);
        q.sql("SELECT id FROM t WHERE a = ").bind(1i64).limit(32);
        assert_eq!(q.build().sql, "SELECT id FROM t WHERE a = $1 LIMIT $2");
    }
}
