//! A failed delivery's reason as a code plus a detail (issue 26): `deliveries.failure_code`
//! (`EXPIRED`, `TENANT_MISSING`, `INVALID_STORED_DATA`, `ABANDONED`, `REFUSED`) and
//! `failure_detail` (a refusal's stage, reply code and reply; null otherwise), which is
//! the old `failure_reason` renamed. Rows stored before are converted: the four fixed
//! English texts become their codes, any other text is a refusal and stays its detail.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    FailureCode,
    FailureReason,
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
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(ColumnDef::new(Deliveries::FailureCode).text().null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let code = case(
            |code, text| format!("WHEN failure_reason = '{text}' THEN '{code}' "),
            "'REFUSED'",
        );
        db.execute_unprepared(&format!(
            "UPDATE deliveries SET failure_code = {code} WHERE failure_reason IS NOT NULL"
        ))
        .await?;
        db.execute_unprepared("UPDATE deliveries SET failure_reason = NULL WHERE failure_code <> 'REFUSED'")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .rename_column(Deliveries::FailureReason, Deliveries::FailureDetail)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .rename_column(Deliveries::FailureDetail, Deliveries::FailureReason)
                    .to_owned(),
            )
            .await?;
        let text = case(
            |code, text| format!("WHEN failure_code = '{code}' THEN '{text}' "),
            "failure_reason",
        );
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE deliveries SET failure_reason = {text} WHERE failure_code IS NOT NULL"
            ))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::FailureCode)
                    .to_owned(),
            )
            .await
    }
}
