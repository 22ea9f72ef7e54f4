//! Real servers on loopback for the tests, none of them written by this repository:
//! aiosmtpd (SMTP), a private Dovecot (POP3), dnslib (DNS), Python's HTTPS server,
//! Authlib (OAuth 2.0) and fakes of the Graph and Gmail sending APIs, a Standard Webhooks
//! receiver and an OTLP receiver, plus a test CA made with trustme and plain TCP
//! listeners (silent, counting, proxying, hostile). The scripts live in
//! `tests/mailservers/` (`install.sh` installs what they need).
//!
//! Every script server is a child process with its own temporary directory (config, log,
//! record); it is stopped when its handle is dropped, and also when the test process dies
//! (the scripts exit when their standard input, a pipe from us, reaches EOF). A server
//! that fails to start panics with its log; a test that panics keeps the directories for
//! a look.
//!
//! The functions block (they wait for child processes and poll files); in async tests,
//! prefer `SmtpServer::wait_for_async`.

mod ca;
mod dns;
mod hostile;
mod https;
mod listeners;
mod mail_api;
mod oauth;
mod otlp;
mod pop3;
mod script;
mod smtp;
mod webhook;

pub use ca::*;
pub use dns::*;
pub use hostile::*;
pub use https::*;
pub use listeners::*;
pub use mail_api::*;
pub use oauth::*;
pub use otlp::*;
pub use pop3::*;
pub use script::{now_unix, python, scripts_dir, temp_dir};
pub use smtp::*;
pub use webhook::*;
