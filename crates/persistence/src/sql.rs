//! SQL text built by hand where sea-query cannot say it (the queue's claims, finishes
//! and padded batch inserts): placeholders in the backend's style, values collected in
//! order.

use sea_orm::{DbBackend, EntityName, EntityTrait, IdenStatic, Iterable, ModelTrait, Statement, Value};

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

    /// The rows of a `VALUES` list, `(…), (…)`, and then rows of NULLs (each of its
    /// column's type, from the first row) up to the next power of two. A statement's
    /// text then depends on the number of rows only through that power: one text of a
    /// few serves every batch. Each text is parsed and planned once per connection
    /// (the driver keeps it prepared); a text per row count was parsed anew for every
    /// other finish of the `delivery` benchmark on PostgreSQL (465 parses for 839
    /// runs, counted in the server's log), each planned afresh too. What reads the
    /// list must skip the rows whose first column is NULL (a join on it does).
    pub(crate) fn padded_rows(&mut self, rows: &[Vec<Value>]) -> &mut Self {
        let Some(first) = rows.first() else {
            return self;
        };
        let nulls: Vec<Value> = first.iter().map(Value::as_null).collect();
        let padded = rows.len().next_power_of_two();
        for (i, row) in rows
            .iter()
            .chain(std::iter::repeat_n(&nulls, padded - rows.len()))
            .enumerate()
        {
            self.sql(if i == 0 { "(" } else { ", (" })
                .bind_list(row.iter().cloned())
                .sql(")");
        }
        self
    }

    /// `WITH v ("a", "b") AS (VALUES …) INSERT INTO "t" ("a", "b") SELECT "a", "b" FROM v
    /// WHERE "a" IS NOT NULL` and then `tail` (an `ON CONFLICT …`, a `RETURNING …`):
    /// every column of the models' table, the rows padded ([`Self::padded_rows`]; the
    /// first column of a stored row is never NULL: its key). Nothing when there are no
    /// rows.
    pub(crate) fn insert_padded<M: ModelTrait>(backend: DbBackend, models: &[M], tail: &str) -> Option<Statement> {
        let columns: Vec<_> = <M::Entity as EntityTrait>::Column::iter().collect();
        let names = columns
            .iter()
            .map(|c| format!("\"{}\"", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: Vec<Vec<Value>> = models
            .iter()
            .map(|m| columns.iter().map(|c| m.get(*c)).collect())
            .collect();
        let first = rows.first().and(columns.first())?;
        let table = <M::Entity as Default>::default();
        let mut q = Self::new(backend);
        q.sql(&format!("WITH v ({names}) AS (VALUES "))
            .padded_rows(&rows)
            .sql(&format!(
                ") INSERT INTO \"{}\" ({names}) SELECT {names} FROM v WHERE \"{}\" IS NOT NULL{tail}",
                table.table_name(),
                first.as_str()
            ));
        Some(q.build())
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_with_nulls_of_their_types_to_a_power_of_two() {
        let row = |id: &str, n: i64| vec![Value::from(id), Value::from(Some(n))];
        let text = |rows: usize| {
            let mut q = SqlBuilder::new(DbBackend::Sqlite);
            q.padded_rows(&(0..rows).map(|i| row("x", i as i64)).collect::<Vec<_>>());
            q.build()
        };
        assert_eq!(text(1).sql, "(?, ?)");
        assert_eq!(text(2).sql, "(?, ?), (?, ?)");
        assert_eq!(text(3).sql, text(4).sql, "three rows and four share a text");
        assert_eq!(text(5).sql, text(8).sql);
        assert_ne!(text(8).sql, text(9).sql);
        let values = text(3).values.map(|v| v.0).unwrap_or_default();
        assert_eq!(values.len(), 8);
        assert_eq!(values[4], Value::from("x"));
        assert_eq!(
            values[6],
            Value::String(None),
            "the padding is NULL of the column's type"
        );
        assert_eq!(values[7], Value::BigInt(None));
        assert_eq!(text(0).sql, "", "no rows, no list");
    }

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
