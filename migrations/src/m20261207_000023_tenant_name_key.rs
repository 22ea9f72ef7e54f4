//! `tenants.name_key` (issue 28): the form a tenant's name is searched by
//! (`domain::tenant::name_search_key`: NFKC, then lower case), kept beside the name so
//! `tenants(nameContains:)` matches case, full-width and half-width forms the same way on
//! SQLite and PostgreSQL. Before, `LOWER(name) LIKE` folded only A–Z on SQLite, and on
//! PostgreSQL folded the names' letters but not the search's, so 「ＳＨＯＰ」 did not even
//! find itself there.
//!
//! The key is computed in Rust, so this file only adds the column (nullable: a process of
//! the release before inserts without it); `persistence::migrate` fills the rows that
//! have none, in the same transaction, every time it runs. A search reads
//! `COALESCE(name_key, LOWER(name))`, so a row not yet filled is found as before. Safe to
//! run again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    NameKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("tenants", "name_key").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .add_column(ColumnDef::new(Tenants::NameKey).text().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("tenants", "name_key").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .drop_column(Tenants::NameKey)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
