//! What the values in an audit entry's changes mean. The trail stores each value as text
//! (a code, a number, what was typed); the composite ones — a test mail's result, what a
//! probe found and its login, a quota's limit, the proof of a version — are written and
//! read back here only, so the catalogue can put each one in words without knowing how it
//! is stored. A value that reads as nothing known is shown as stored ([`AuditValue::Text`]).

use crate::delivery::retention::REMOVED_RECIPIENT;
use crate::failure::{Hint, SendStage};
use crate::plan::Plan;
use crate::server::{Encryption, ServerKind};

/// How a version of the settings was proven (`MAIL_SETTINGS_LIVE`'s `provenBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A test mail through the saved settings succeeded.
    TestMail,
    /// The activation code sent by such a test mail was entered.
    Code,
}

impl Proof {
    /// The stored text.
    pub fn stored(self) -> &'static str {
        match self {
            Proof::TestMail => "test",
            Proof::Code => "code",
        }
    }
}

/// A test mail's or a probe's login outcome (`TEST_MAIL_SENT`'s `result`,
/// `MAIL_SERVER_PROBED`'s `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not attempted (a probe without credentials).
    NotTried,
    Succeeded,
    /// Failed, at a stage and with the server's reply code when they are known.
    Failed {
        stage: Option<SendStage>,
        smtp_code: Option<u16>,
    },
}

impl Outcome {
    /// The stored text: `ok`, `not tried`, `failed at AUTH (535)`, `failed at CONNECT`,
    /// `failed (535)` (a probe's login names no stage).
    pub fn stored(self) -> String {
        match self {
            Outcome::NotTried => "not tried".to_owned(),
            Outcome::Succeeded => "ok".to_owned(),
            Outcome::Failed { stage, smtp_code } => match (stage, smtp_code) {
                (Some(s), Some(c)) => format!("failed at {} ({c})", s.code()),
                (Some(s), None) => format!("failed at {}", s.code()),
                (None, Some(c)) => format!("failed ({c})"),
                (None, None) => "failed".to_owned(),
            },
        }
    }

    fn read(stored: &str) -> Option<Self> {
        match stored {
            "ok" => return Some(Outcome::Succeeded),
            "not tried" => return Some(Outcome::NotTried),
            _ => {}
        }
        let rest = stored.strip_prefix("failed")?;
        let (rest, smtp_code) = match rest.strip_suffix(')').and_then(|r| r.rsplit_once(" (")) {
            Some((rest, code)) => (rest, Some(code.parse::<u16>().ok()?)),
            None => (rest, None),
        };
        let stage = match rest {
            "" => None,
            r => Some(SendStage::from_code(r.strip_prefix(" at ")?)?),
        };
        Some(Outcome::Failed { stage, smtp_code })
    }
}

/// What a probe found: the port and encryption that worked, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found(pub Option<(u16, Encryption)>);

impl Found {
    /// The stored text: `587 STARTTLS`, or `none`.
    pub fn stored(self) -> String {
        match self.0 {
            Some((port, encryption)) => format!("{port} {}", encryption.code()),
            None => "none".to_owned(),
        }
    }

    fn read(stored: &str) -> Option<Self> {
        if stored == "none" {
            return Some(Found(None));
        }
        let (port, encryption) = stored.split_once(' ')?;
        Some(Found(Some((port.parse().ok()?, Encryption::from_code(encryption)?))))
    }
}

/// An enqueue limit of a quota override: a number, or the platform's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u32>);

impl Limit {
    /// The stored text: the number, or `default`.
    pub fn stored(self) -> String {
        self.0.map_or_else(|| "default".to_owned(), |n| n.to_string())
    }
}

/// One stored value of an audit entry, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditValue<'a> {
    Plan(Plan),
    /// On or off (`smtpAuth`, `popBeforeSmtp.tls`).
    Switch(bool),
    Encryption(Encryption),
    ServerKind(ServerKind),
    Stage(SendStage),
    Hint(Hint),
    /// The send interval, in milliseconds.
    IntervalMs(u32),
    Proof(Proof),
    Outcome(Outcome),
    Found(Found),
    Limit(Limit),
    /// A test mail's recipient after retention removed it.
    RemovedRecipient,
    /// Anything else (a host, an address, a name, a number): shown as stored.
    Text(&'a str),
}

impl<'a> AuditValue<'a> {
    /// What `stored`, the value of `field` in an audit entry, means.
    pub fn read(field: &str, stored: &'a str) -> Self {
        let known = match field {
            "plan" => Plan::from_code(stored).map(AuditValue::Plan),
            "smtpAuth" | "popBeforeSmtp.tls" => stored.parse().ok().map(AuditValue::Switch),
            "encryption" => Encryption::from_code(stored).map(AuditValue::Encryption),
            "serverKind" => ServerKind::from_code(stored).map(AuditValue::ServerKind),
            "stage" => SendStage::from_code(stored).map(AuditValue::Stage),
            "hintCode" => Hint::from_code(stored).map(AuditValue::Hint),
            "sendIntervalMs" => stored.parse().ok().map(AuditValue::IntervalMs),
            "provenBy" => [Proof::TestMail, Proof::Code]
                .into_iter()
                .find(|p| p.stored() == stored)
                .map(AuditValue::Proof),
            "result" | "auth" => Outcome::read(stored).map(AuditValue::Outcome),
            "found" => Found::read(stored).map(AuditValue::Found),
            "perMinute" | "perDay" => match stored {
                "default" => Some(AuditValue::Limit(Limit(None))),
                n => n.parse().ok().map(|n| AuditValue::Limit(Limit(Some(n)))),
            },
            "to" if stored == REMOVED_RECIPIENT => Some(AuditValue::RemovedRecipient),
            _ => None,
        };
        known.unwrap_or(AuditValue::Text(stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_as_written() {
        let all = [
            Outcome::NotTried,
            Outcome::Succeeded,
            Outcome::Failed {
                stage: Some(SendStage::Auth),
                smtp_code: Some(535),
            },
            Outcome::Failed {
                stage: Some(SendStage::RcptTo),
                smtp_code: None,
            },
            Outcome::Failed {
                stage: None,
                smtp_code: Some(454),
            },
            Outcome::Failed {
                stage: None,
                smtp_code: None,
            },
        ];
        for o in all {
            assert_eq!(AuditValue::read("result", &o.stored()), AuditValue::Outcome(o), "{o:?}");
        }
        assert_eq!(
            Outcome::Failed {
                stage: Some(SendStage::Auth),
                smtp_code: Some(535)
            }
            .stored(),
            "failed at AUTH (535)"
        );
        // What earlier releases wrote reads the same.
        assert_eq!(
            AuditValue::read("auth", "failed (535)"),
            AuditValue::Outcome(Outcome::Failed {
                stage: None,
                smtp_code: Some(535)
            })
        );
        assert_eq!(
            AuditValue::read("result", "failed at NOWHERE"),
            AuditValue::Text("failed at NOWHERE")
        );
    }

    #[test]
    fn codes_switches_and_composites_are_understood() {
        assert_eq!(AuditValue::read("plan", "SHARE"), AuditValue::Plan(Plan::Share));
        assert_eq!(AuditValue::read("smtpAuth", "false"), AuditValue::Switch(false));
        assert_eq!(AuditValue::read("popBeforeSmtp.tls", "true"), AuditValue::Switch(true));
        assert_eq!(
            AuditValue::read("encryption", "STARTTLS"),
            AuditValue::Encryption(Encryption::StartTls)
        );
        assert_eq!(
            AuditValue::read("serverKind", "GMAIL"),
            AuditValue::ServerKind(ServerKind::Gmail)
        );
        assert_eq!(
            AuditValue::read("stage", "RCPT_TO"),
            AuditValue::Stage(SendStage::RcptTo)
        );
        assert_eq!(
            AuditValue::read("hintCode", "WRONG_CREDENTIALS"),
            AuditValue::Hint(Hint::WrongCredentials)
        );
        assert_eq!(AuditValue::read("sendIntervalMs", "6000"), AuditValue::IntervalMs(6000));
        for p in [Proof::TestMail, Proof::Code] {
            assert_eq!(AuditValue::read("provenBy", p.stored()), AuditValue::Proof(p));
        }
        for f in [Found(Some((465, Encryption::Ssl))), Found(None)] {
            assert_eq!(AuditValue::read("found", &f.stored()), AuditValue::Found(f));
        }
        for l in [Limit(Some(30)), Limit(None)] {
            assert_eq!(AuditValue::read("perDay", &l.stored()), AuditValue::Limit(l));
        }
        assert_eq!(AuditValue::read("to", REMOVED_RECIPIENT), AuditValue::RemovedRecipient);
        assert_eq!(AuditValue::read("to", "a@example.jp"), AuditValue::Text("a@example.jp"));
        assert_eq!(
            AuditValue::read("host", "SHARE"),
            AuditValue::Text("SHARE"),
            "by field, not by look"
        );
    }
}
