//! Mailgate's API suite: every test starts the real server on a free port with its own
//! database (a temporary SQLite file, or a fresh PostgreSQL schema), runs the real
//! migrations, and talks to it over HTTP like the frontend does. Each test runs once per
//! backend (`sqlite::name`, `postgres::name`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on the first surprise"
)]

mod support;

mod architecture;
mod assistant;
mod auth;
mod cli;
mod cluster;
mod console;
mod crash;
mod deliveries;
mod discovery;
mod echoed_credentials;
mod hardening;
mod internal_names;
mod mail;
mod mailbox_sign_in;
mod messages;
mod metrics;
mod oauth_client;
mod oauth_servers;
mod quotas;
mod retention;
mod schema;
mod settings;
mod smtp_manners;
mod suspension;
mod tenants;
mod traces;
mod verification;
mod webhooks;
