//! Sending mail. `mailer` implements it; the rest of the system has this one entry point.

use crate::mail::{OutgoingMail, SendFailure, SendReceipt};
use crate::plan::SenderOverridePermit;
use crate::settings::MailSettings;
use crate::tenant::{TenantId, TenantRecord};

/// How a tenant's sends are spaced right now (see [`MailTransport::pacing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The tenant's send interval.
    pub interval: std::time::Duration,
    /// How long until the tenant's next send may start (zero: now).
    pub next_turn_in: std::time::Duration,
}

/// What a look at a host a tenant saves found (see [`MailTransport::check_host`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// It resolves to addresses tenants may reach.
    Reachable,
    /// It does not resolve now — or it resolves to an internal address, which is told
    /// apart only in the log, so a tenant cannot learn which internal names exist. Saved
    /// with a warning: DNS can be late.
    Unresolved,
    /// An internal address typed as such, or `localhost`: refused.
    Forbidden,
}

/// The one way mail leaves Mailgate.
#[async_trait::async_trait]
pub trait MailTransport: Send + Sync + 'static {
    /// Sends through the tenant's own server when its plan permits and settings are saved,
    /// and through the platform default otherwise. Paced by the tenant's send interval.
    async fn send(&self, tenant: &TenantRecord, mail: &OutgoingMail) -> Result<SendReceipt, SendFailure>;

    /// How the tenant's next send would be paced: `None` when it is not (the platform
    /// default, or no send interval). Lets a caller schedule a delivery for the tenant's
    /// turn instead of holding a connection while [`MailTransport::send`] waits for it.
    async fn pacing(&self, _tenant: &TenantRecord) -> Option<Pacing> {
        None
    }

    /// A test mail through `settings` (possibly an unsaved draft): a fresh connection,
    /// not paced, finished or abandoned within `deadline`.
    async fn send_test(
        &self,
        permit: SenderOverridePermit,
        tenant: TenantId,
        settings: &MailSettings,
        mail: &OutgoingMail,
        deadline: std::time::Duration,
    ) -> Result<SendReceipt, SendFailure>;

    /// Ends every pooled session with QUIT, within `deadline` (a shutdown, once nothing
    /// sends any more); a server that does not answer holds no one past it.
    async fn close_sessions(&self, _deadline: std::time::Duration) {}

    /// Whether mail could go to `host` (on `port`) by what DNS says now, under the same
    /// address guard as sending. Used on save; sending checks again (names change).
    async fn check_host(&self, _host: &crate::values::Host, _port: u16) -> HostCheck {
        HostCheck::Reachable
    }

    /// The setup assistant's probe: each of `target.pairs` up to EHLO concurrently, under
    /// the address guard and port policy, sending no credentials; then, with
    /// credentials, one AUTH on the best working pair. Finished within `deadline`.
    async fn probe(
        &self,
        _permit: SenderOverridePermit,
        target: &crate::probe::ProbeTarget,
        _deadline: std::time::Duration,
    ) -> crate::probe::ProbeReport {
        let pairs = target
            .pairs
            .iter()
            .map(|&(port, encryption)| crate::probe::ProbedPair {
                port,
                encryption,
                typed: target.typed == Some((port, encryption)),
                outcome: Err(SendFailure::new(
                    crate::mail::SendStage::Connect,
                    crate::mail::FailureKind::ConnectionRefused,
                )),
            })
            .collect();
        crate::probe::ProbeReport::ranked(pairs, None, std::time::Duration::ZERO)
    }
}
