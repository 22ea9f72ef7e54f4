//! Webhooks on their way out: [`sign`] (the Standard Webhooks signature), [`send`] (one
//! signed POST under the address guard, capped and under a deadline), [`dispatch`] (the
//! loop that claims due messages and sends them, a few per endpoint at a time) and
//! [`check`] (the guard's word on an endpoint's URL when it is saved).

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "a test should stop at the first unexpected error"
    )
)]

pub mod check;
pub mod dispatch;
pub mod send;
pub mod sign;

pub use check::GuardCheck;
pub use dispatch::{DispatchConfig, DispatchStats, Dispatcher};
