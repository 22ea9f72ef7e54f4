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
