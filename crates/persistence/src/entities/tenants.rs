//! The `tenants` table: one row per site, with its plan and the counter that numbers
//! mail-settings versions.

use sea_orm::entity::prelude::*;

/// A `tenants` row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    /// Canonical hyphenated UUIDv7 string, so text order is creation order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// The name's search key (`domain::tenant::name_search_key`); none on a row a release
    /// before migration 23 inserted, until `persistence::migrate` fills it.
    pub name_key: Option<String>,
    /// A plan code (`ECONOMY`, `BASIC`, `PRO`, `SHARE`, `BIZ`).
    pub plan: String,
    /// Bumped by every save and clear of the settings, so a version is never reused.
    pub settings_version: i64,
    /// The address an operator set for notices about the tenant's settings (a
    /// suspension); none: such notices are not mailed.
    pub contact_email: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// At most two settings rows per tenant (see `mail_settings`).
    #[sea_orm(has_many = "super::mail_settings::Entity")]
    MailSettings,
}

impl Related<super::mail_settings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MailSettings.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
