//! The operations the API offers, each one call: authorise the caller, apply the rules,
//! store. Resolvers parse, call one of these, and convert the result. One module per
//! job: tenants and plans, mail settings, test mails and activation, notifications,
//! webhook endpoints, the setup assistant, sign-in connections; `paging` is what they
//! share.

pub mod assistant;
pub mod connections;
pub mod deliveries;
pub mod mail_settings;
pub mod paging;
pub mod tenants;
pub mod test_mail;
pub mod webhooks;

pub use assistant::AssistantService;
pub use connections::ConnectionService;
pub use deliveries::DeliveryService;
pub use mail_settings::SavedSettings;
pub use paging::{MAX_PAGE, Page};
pub use tenants::{DEFAULT_PRODUCT_NAME, TenantService, TenantView};
pub use test_mail::{
    TEST_MAIL_DEADLINE, TEST_MAIL_LIMIT, TEST_MAILS_PER_CALLER_PER_MINUTE, TEST_MAILS_PER_MINUTE, TestMailCount,
    TestMailCounter, TestMailOutcome,
};
pub use webhooks::WebhookService;
