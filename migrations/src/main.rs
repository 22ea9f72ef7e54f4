//! `mailgate-migration`: the standard sea-orm migration CLI (`up`, `down`, `status`,
//! `fresh`, …) over Mailgate's migrations. Reads `DATABASE_URL` and `DATABASE_SCHEMA`.

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
