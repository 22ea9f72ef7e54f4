//! Test fixtures for Mailgate's tests and benchmarks, kept in one place (never shipped):
//!
//! - [`db`]: the two database backends, the PostgreSQL test URL, temporary SQLite files,
//!   fresh PostgreSQL schemas, and [`each_backend!`] (one test per backend);
//! - [`servers`]: real servers on loopback (SMTP, POP3, DNS, HTTPS, webhook and OTLP
//!   receivers, OAuth and mail APIs, hostile and silent listeners) and the test CA;
//! - [`process`]: the `mailgate` binary as a child process;
//! - [`client`]: GraphQL over HTTP against a running server, by URL and token;
//! - [`settings`]: the mail-settings input the API takes.
//!
//! It depends on no Mailgate crate, so any crate's tests (persistence's unit tests too)
//! can use it without a second copy of that crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fixtures fail the test loudly on the first surprise"
)]

pub mod client;
pub mod db;
pub mod process;
pub mod servers;
pub mod settings;
