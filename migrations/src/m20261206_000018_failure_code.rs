//! A failed delivery's reason as a code plus a detail (issue 26): `deliveries.failure_code`
//! (`EXPIRED`, `TENANT_MISSING`, `INVALID_STORED_DATA`, `ABANDONED`, `REFUSED`) and
//! `failure_detail` (a refusal's stage, reply code and reply; null otherwise). Rows
//! stored before are converted: the four fixed English texts become their codes, any
//! other text is a refusal and becomes its detail.
//!
//! `failure_reason` stays, untouched, for one release: processes of the release before
//! keep reading and writing it while a rolling upgrade runs (migrate first, then roll
//! out), and this release reads it where a row has no code yet (a delivery such a
//! process finished meanwhile) and clears it whenever it writes a reason. A later
//! release drops it. Each step is safe to run again (SQLite runs a migration without a
//! transaction).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    FailureCode,
    FailureDetail,
}

/// The texts stored before, by code.
const TEXTS: [(&str, &str); 4] = [
    ("EXPIRED", "expired"),
    ("TENANT_MISSING", "tenant not found"),
    ("INVALID_STORED_DATA", "invalid stored data"),
    (
        "ABANDONED",
        "abandoned: every try ended with its process before an outcome",
    ),
];

fn case(when: impl Fn(&str, &str) -> String, otherwise: &str) -> String {
    let arms: String = TEXTS.iter().map(|(code, text)| when(code, text)).collect();
    format!("CASE {arms} ELSE {otherwise} END")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Deliveries::FailureCode, Deliveries::FailureDetail] {
            if !manager.has_column("deliveries", &column.to_string()).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Deliveries::Table)
                            .add_column(ColumnDef::new(column).text().null())
                            .to_owned(),
                    )
                    .await?;
            }
        }
        let code = case(
            |code, text| format!("WHEN failure_reason = '{text}' THEN '{code}' "),
            "'REFUSED'",
        );
        let detail = case(
            |_, text| format!("WHEN failure_reason = '{text}' THEN NULL "),
            "failure_reason",
        );
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE deliveries SET failure_code = {code}, failure_detail = {detail} \
                 WHERE failure_reason IS NOT NULL AND failure_code IS NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = case(
            |code, text| format!("WHEN failure_code = '{code}' THEN '{text}' "),
            "failure_detail",
        );
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE deliveries SET failure_reason = {text} WHERE failure_code IS NOT NULL"
            ))
            .await?;
        for column in [Deliveries::FailureDetail, Deliveries::FailureCode] {
            if manager.has_column("deliveries", &column.to_string()).await? {
                manager
                    .alter_table(Table::alter().table(Deliveries::Table).drop_column(column).to_owned())
                    .await?;
            }
        }
        Ok(())
    }
}
