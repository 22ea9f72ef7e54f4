//! How many times in a row a delivery was claimed without an outcome. A claim adds one;
//! every outcome, postponement or release a worker records sets it back to 0. So it only
//! grows when claims end with their process (killed, or crashed by this very delivery)
//! and the lease runs out: the worker fails a delivery whose count passes the domain's
//! limit instead of trying it forever (a poison row that brings down every process that
//! sends it).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Claims,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(ColumnDef::new(Deliveries::Claims).integer().not_null().default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::Claims)
                    .to_owned(),
            )
            .await
    }
}
