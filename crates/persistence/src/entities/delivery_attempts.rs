//! The `delivery_attempts` table: one row per try at sending a delivery, in id (time)
//! order.

use sea_orm::entity::prelude::*;

/// A `delivery_attempts` row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    /// Hyphenated UUIDv7 string, made when the attempt is stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub delivery_id: String,
    pub at: DateTimeUtc,
    /// `SENT`, `RETRY`, `DEFERRED` or `FAILED`.
    pub outcome: String,
    pub stage: Option<String>,
    pub smtp_code: Option<i32>,
    pub enhanced_code: Option<String>,
    pub server_message: Option<String>,
    pub sender_address: Option<String>,
    /// `CUSTOM` or `PLATFORM_DEFAULT`.
    pub sender_source: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::deliveries::Entity",
        from = "Column::DeliveryId",
        to = "super::deliveries::Column::Id",
        on_delete = "Cascade"
    )]
    Delivery,
}

impl Related<super::deliveries::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Delivery.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
