//! Counts of a tenant's history kept apart (issue 28). Counting a tenant's deliveries by
//! status used to read every row it ever had (1.3 s for 5 M rows on PostgreSQL), and
//! `/metrics` did that for the whole table on every scrape.
//!
//! A row whose content retention removed never changes status again (a retry needs the
//! content). So, per tenant, `delivery_count_marks.counted_through` is an id such that
//! every row of the tenant up to it (ids are UUIDv7 text: id order is time order) has had
//! its content removed, and `delivery_archived_counts` holds how many of those rows there
//! are by status. Counting reads those few rows, plus the tenant's rows after the mark
//! along the existing `(tenant_id, status, id)` index: the queue and the retention window,
//! not the history. Retention moves the mark forward in the transaction that clears
//! content; the history horizon takes what it deletes at or before the mark from the
//! counts in the transaction that deletes it. No index is added to `deliveries`, so
//! sending writes nothing more.
//!
//! Filled here from the rows already cleared: per tenant, up to its first row that still
//! holds content. Safe to run again.

use sea_orm_migration::prelude::*;

use sea_orm_migration::sea_orm::ConnectionTrait;

use crate::id_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeliveryArchivedCounts {
    Table,
    TenantId,
    Status,
    N,
}

#[derive(DeriveIden)]
enum DeliveryCountMarks {
    Table,
    TenantId,
    CountedThrough,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        if manager.has_table("delivery_count_marks").await? {
            return Ok(());
        }
        manager
            .create_table(
                Table::create()
                    .table(DeliveryArchivedCounts::Table)
                    .if_not_exists()
                    .col(id_text(DeliveryArchivedCounts::TenantId, backend))
                    .col(ColumnDef::new(DeliveryArchivedCounts::Status).text().not_null())
                    .col(ColumnDef::new(DeliveryArchivedCounts::N).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_delivery_archived_counts")
                            .col(DeliveryArchivedCounts::TenantId)
                            .col(DeliveryArchivedCounts::Status),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeliveryCountMarks::Table)
                    .col(id_text(DeliveryCountMarks::TenantId, backend).primary_key())
                    .col(id_text(DeliveryCountMarks::CountedThrough, backend))
                    .to_owned(),
            )
            .await?;
        fill(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["delivery_count_marks", "delivery_archived_counts"] {
            if manager.has_table(table).await? {
                manager
                    .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                    .await?;
            }
        }
        Ok(())
    }
}

/// Fills the marks and kept counts from the rows already cleared: per tenant, its rows
/// up to its first row that still holds content or is not done (`SENT`, `FAILED`). For tables with no marks yet (this
/// migration; the growth benchmark, which writes a year of cleared rows by SQL).
pub async fn fill(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    // 'g' sorts after every id (ids are lower-case hex and hyphens).
    db.execute_unprepared(
        "WITH first_live AS (SELECT tenant_id, MIN(id) AS id FROM deliveries \
         WHERE content_removed_at IS NULL OR status NOT IN ('SENT', 'FAILED') GROUP BY tenant_id) \
         INSERT INTO delivery_count_marks (tenant_id, counted_through) \
         SELECT d.tenant_id, MAX(d.id) FROM deliveries d \
         LEFT JOIN first_live f ON f.tenant_id = d.tenant_id \
         WHERE d.content_removed_at IS NOT NULL AND d.status IN ('SENT', 'FAILED') \
         AND d.id < COALESCE(f.id, 'g') \
         GROUP BY d.tenant_id",
    )
    .await?;
    db.execute_unprepared(
        "INSERT INTO delivery_archived_counts (tenant_id, status, n) \
         SELECT d.tenant_id, d.status, COUNT(*) FROM deliveries d \
         JOIN delivery_count_marks m ON m.tenant_id = d.tenant_id \
         WHERE d.id <= m.counted_through GROUP BY d.tenant_id, d.status",
    )
    .await?;
    Ok(())
}
