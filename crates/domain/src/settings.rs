//! A tenant's own mail-server settings: the draft a form sends, the rules that turn it
//! into [`MailSettings`] (valid by construction), the warnings for combinations that
//! usually mean a mistake, and the field-by-field difference the audit trail records.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{FieldCode, FieldError};
use crate::ids::ConnectionId;
use crate::providers::{HostSpec, Provider};
use crate::values::{
    EmailAddress, Host, LocalHostname, Port, SendInterval, SenderName, Username, ValueError, check_password,
    has_control_chars,
};

pub use crate::server::{Encryption, ServerKind};

/// POP-before-SMTP: a POP3 login that some providers require before they relay.
#[derive(Debug, Clone)]
pub struct PopBeforeSmtp {
    host: Host,
    port: Port,
    username: Username,
    password: SecretString,
    tls: bool,
}

impl PopBeforeSmtp {
    pub fn host(&self) -> &Host {
        &self.host
    }
    pub fn port(&self) -> Port {
        self.port
    }
    pub fn username(&self) -> &Username {
        &self.username
    }
    pub fn password(&self) -> &SecretString {
        &self.password
    }
    pub fn tls(&self) -> bool {
        self.tls
    }
}

/// Valid mail-server settings. Built only by [`MailSettings::validate`], which the API
/// and the repository (reading rows back) both go through.
#[derive(Debug, Clone)]
pub struct MailSettings {
    server_kind: ServerKind,
    host: Host,
    port: Port,
    from_address: EmailAddress,
    from_name: Option<SenderName>,
    smtp_auth: bool,
    username: Option<Username>,
    password: Option<SecretString>,
    encryption: Encryption,
    pop_before_smtp: Option<PopBeforeSmtp>,
    local_hostname: Option<LocalHostname>,
    send_interval: SendInterval,
    /// A sign-in (OAuth connection) that authenticates instead of a password.
    connection: Option<ConnectionId>,
}

/// Settings as stored, with their version (for optimistic concurrency and transport
/// caching), the time of the save and their health (pending, live, suspended).
#[derive(Debug, Clone)]
pub struct StoredMailSettings {
    pub settings: MailSettings,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub health: crate::health::SettingsHealth,
}

/// The POP-before-SMTP part of a draft.
#[derive(Debug, Clone, Default)]
pub struct PopBeforeSmtpDraft {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub username: Option<String>,
    /// Absent or empty: keep the stored password (only if host, port, user and tls are unchanged).
    pub password: Option<SecretString>,
    pub tls: Option<bool>,
}

/// What a settings form sends, unchecked. A save replaces all settings with the draft,
/// except that an absent password keeps the stored one under the rule in
/// [`MailSettings::validate`].
#[derive(Debug, Clone, Default)]
pub struct MailSettingsDraft {
    pub server_kind: Option<ServerKind>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub smtp_auth: Option<bool>,
    pub username: Option<String>,
    /// Absent or empty: keep the stored password (only if host, port, user and encryption are unchanged).
    pub password: Option<SecretString>,
    pub encryption: Option<Encryption>,
    pub pop_before_smtp: Option<PopBeforeSmtpDraft>,
    pub local_hostname: Option<String>,
    pub send_interval_ms: Option<i64>,
    /// A connection of this tenant (a sign-in with Microsoft or Google) that
    /// authenticates instead of a password; absent or empty: none.
    pub connection_id: Option<String>,
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|v| v.trim().is_empty())
}

fn blank_secret(s: &Option<SecretString>) -> bool {
    s.as_ref().is_none_or(|v| v.expose_secret().is_empty())
}

impl MailSettingsDraft {
    /// The seed page's way to clear: every text field erased. Non-text fields (port,
    /// switches) do not count.
    pub fn is_clear_request(&self) -> bool {
        let pop_blank = self
            .pop_before_smtp
            .as_ref()
            .is_none_or(|p| blank(&p.host) && blank(&p.username) && blank_secret(&p.password));
        blank(&self.host)
            && blank(&self.from_address)
            && blank(&self.from_name)
            && blank(&self.username)
            && blank_secret(&self.password)
            && blank(&self.local_hostname)
            && blank(&self.connection_id)
            && pop_blank
    }
}

/// A combination that is allowed but usually a mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsWarning {
    /// 465 is the implicit-TLS port; STARTTLS there usually times out.
    Port465WithStartTls,
    /// 587 is the submission port with STARTTLS; implicit TLS there usually fails.
    Port587WithSsl,
    /// The password would cross the network unencrypted.
    PasswordWithoutEncryption,
    /// The SMTP host did not resolve to a reachable address when it was saved (DNS may be
    /// late; sending checks again).
    HostNotResolved,
    /// The POP-before-SMTP host did not resolve to a reachable address when it was saved.
    PopHostNotResolved,
    /// The sender domain's SPF, DKIM or DMARC leaves mail through this server at risk of
    /// the spam folder or of bulk-sender rejection (`checkSenderDomain` says what to add).
    SenderDomainAtRisk,
    /// The sender domain's DMARC policy rejects or quarantines mail through this server
    /// (neither SPF nor DKIM will pass aligned).
    SenderDomainWillFail,
    /// A test mail to the sender's own domain may never leave the server: use an
    /// address at another domain.
    RecipientInSenderDomain,
    /// The sender is not the mailbox that signed in: it sends only if that account may
    /// send as the sender (a shared mailbox, send-as rights); the test mail proves it.
    SenderNotSignedInMailbox,
}

impl SettingsWarning {
    pub fn code(self) -> &'static str {
        match self {
            Self::Port465WithStartTls => "PORT_465_WITH_STARTTLS",
            Self::Port587WithSsl => "PORT_587_WITH_SSL",
            Self::PasswordWithoutEncryption => "PASSWORD_WITHOUT_ENCRYPTION",
            Self::HostNotResolved => "HOST_NOT_RESOLVED",
            Self::PopHostNotResolved => "POP_HOST_NOT_RESOLVED",
            Self::SenderDomainAtRisk => "SENDER_DOMAIN_AT_RISK",
            Self::SenderDomainWillFail => "SENDER_DOMAIN_WILL_FAIL",
            Self::RecipientInSenderDomain => "RECIPIENT_IN_SENDER_DOMAIN",
            Self::SenderNotSignedInMailbox => "SENDER_NOT_SIGNED_IN_MAILBOX",
        }
    }

    pub fn field(self) -> &'static str {
        match self {
            Self::HostNotResolved => "host",
            Self::PopHostNotResolved => "popBeforeSmtp.host",
            Self::SenderDomainAtRisk | Self::SenderDomainWillFail | Self::SenderNotSignedInMailbox => "fromAddress",
            Self::RecipientInSenderDomain => "to",
            _ => "encryption",
        }
    }
}

/// The host of a form: a preset's fixed one, or the form's (which must fit the preset's
/// template, when it has one).
fn preset_host(errs: &mut Errors, preset: Option<&Provider>, draft: &MailSettingsDraft) -> Option<Host> {
    match preset.map(|p| p.host) {
        Some(HostSpec::Fixed(name)) => Host::parse(name).ok(),
        Some(spec @ HostSpec::Template { .. }) => errs.check("host", req_text(&draft.host, Host::parse)).filter(|h| {
            let fits = spec.matches(&h.as_str().to_ascii_lowercase());
            if !fits {
                errs.push("host", FieldCode::HostNotOfPreset);
            }
            fits
        }),
        None => errs.check("host", req_text(&draft.host, Host::parse)),
    }
}

/// Collects field errors while validating, so a form gets all of them at once.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn check<T>(&mut self, field: &'static str, r: Result<T, ValueError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError::new(field, e));
                None
            }
        }
    }

    fn push(&mut self, field: &'static str, code: FieldCode) {
        self.0.push(FieldError::new(field, code));
    }
}

fn opt_text<T>(raw: &Option<String>, parse: impl Fn(&str) -> Result<T, ValueError>) -> Result<Option<T>, ValueError> {
    match raw.as_deref() {
        None => Ok(None),
        Some(s) if s.trim().is_empty() && !has_control_chars(s) => Ok(None),
        Some(s) => parse(s).map(Some),
    }
}

fn req_text<T>(raw: &Option<String>, parse: impl Fn(&str) -> Result<T, ValueError>) -> Result<T, ValueError> {
    parse(raw.as_deref().unwrap_or(""))
}

fn new_password(raw: &Option<SecretString>) -> Result<Option<SecretString>, ValueError> {
    match raw {
        None => Ok(None),
        Some(p) if p.expose_secret().is_empty() => Ok(None),
        Some(p) => check_password(p.expose_secret()).map(|()| Some(p.clone())),
    }
}

/// The server part of a form, as the setup assistant reads it: enough to talk to the
/// server, without a sender (the probe, the domain check).
#[derive(Debug, Clone)]
pub struct ServerDraft {
    pub kind: ServerKind,
    pub host: Host,
    /// The pair the form names; the encryption is the port's usual one when left out.
    pub typed: Option<(Port, Encryption)>,
    /// For a login: the form's password, else the stored one when host and user name
    /// are the stored ones.
    pub credentials: Option<(Username, SecretString)>,
    pub local_hostname: Option<LocalHostname>,
}

impl ServerDraft {
    /// The server fields of `draft` (a preset's host when its kind has a fixed one), or
    /// every field that is wrong.
    pub fn parse(draft: &MailSettingsDraft, stored: Option<&MailSettings>) -> Result<Self, Vec<FieldError>> {
        let mut errs = Errors::default();
        let kind = draft.server_kind.unwrap_or_default();
        let preset = Provider::of_kind(kind);
        let host = preset_host(&mut errs, preset, draft);
        let port = match (preset, draft.port) {
            (Some(p), _) => Port::parse(i64::from(p.port)).ok(),
            (None, Some(raw)) => errs.check("port", Port::parse(raw)),
            (None, None) => None,
        };
        let encryption = match preset {
            Some(p) => Some(p.encryption),
            None => draft.encryption,
        };
        let typed = port.map(|p| (p, encryption.unwrap_or_else(|| Encryption::usual_for_port(p.get()))));
        let username = errs
            .check("username", opt_text(&draft.username, Username::parse))
            .flatten();
        let entered = errs.check("password", new_password(&draft.password)).flatten();
        let local_hostname = errs
            .check("localHostname", opt_text(&draft.local_hostname, LocalHostname::parse))
            .flatten();
        let auth = draft.smtp_auth.unwrap_or(true);
        let credentials = match (auth, username, entered) {
            (true, Some(user), Some(password)) => Some((user, password)),
            (true, Some(user), None) => stored
                .filter(|s| Some(&s.host) == host.as_ref() && s.username.as_ref() == Some(&user))
                .and_then(|s| s.password.clone())
                .map(|password| (user, password)),
            _ => None,
        };
        match host {
            Some(host) if errs.0.is_empty() => Ok(Self {
                kind,
                host,
                typed,
                credentials,
                local_hostname,
            }),
            _ => Err(errs.0),
        }
    }
}

/// The ports tenants may use, set by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy {
    pub smtp: Vec<u16>,
    pub pop: Vec<u16>,
}

impl Default for PortPolicy {
    fn default() -> Self {
        Self {
            smtp: vec![25, 465, 587, 2525],
            pop: vec![110, 995],
        }
    }
}

impl PortPolicy {
    /// Field errors for ports not open to tenants.
    pub fn check(&self, settings: &MailSettings) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        if !self.smtp.contains(&settings.port.get()) {
            errs.push(FieldError::new("port", FieldCode::PortNotAllowed));
        }
        if let Some(pop) = &settings.pop_before_smtp
            && !self.pop.contains(&pop.port.get())
        {
            errs.push(FieldError::new("popBeforeSmtp.port", FieldCode::PortNotAllowed));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

impl MailSettings {
    /// Turns a draft into settings, or lists every field that is wrong.
    ///
    /// `stored` is what is saved now. A draft without a password reuses the stored one
    /// only when host, port, username and encryption (for POP: host, port, username and
    /// tls) are unchanged, so a stored password never goes to a host it was not entered
    /// for.
    pub fn validate(draft: &MailSettingsDraft, stored: Option<&MailSettings>) -> Result<Self, Vec<FieldError>> {
        let mut errs = Errors::default();
        let server_kind = draft.server_kind.unwrap_or_default();
        let preset = Provider::of_kind(server_kind);

        let host = preset_host(&mut errs, preset, draft);
        let port = match (preset, draft.port) {
            (Some(p), _) => Port::parse(i64::from(p.port)).ok(),
            (None, Some(raw)) => errs.check("port", Port::parse(raw)),
            (None, None) => errs.check("port", Err(ValueError::Required)),
        };
        let encryption = match preset {
            Some(p) => p.encryption,
            None => draft
                .encryption
                .unwrap_or_else(|| Encryption::usual_for_port(port.map_or(587, Port::get))),
        };
        let from_address = errs.check("fromAddress", req_text(&draft.from_address, EmailAddress::parse));
        let from_name = errs
            .check("fromName", opt_text(&draft.from_name, SenderName::parse))
            .flatten();
        let username = errs
            .check("username", opt_text(&draft.username, Username::parse))
            .flatten();
        let connection = errs
            .check(
                "connectionId",
                opt_text(&draft.connection_id, |s| {
                    s.trim().parse::<ConnectionId>().map_err(|_| ValueError::InvalidFormat)
                }),
            )
            .flatten();
        let smtp_auth = match (connection, preset) {
            // A token authenticates: there is always an AUTH.
            (Some(_), _) => true,
            (None, Some(p)) => p.smtp_auth,
            (None, None) => draft.smtp_auth.unwrap_or(username.is_some()),
        };
        let entered_password = errs.check("password", new_password(&draft.password)).flatten();
        if connection.is_some() && entered_password.is_some() {
            // Never both: a password given with a sign-in would be stored for nothing.
            errs.push("password", FieldCode::NotWithConnection);
        }
        let local_hostname = errs
            .check("localHostname", opt_text(&draft.local_hostname, LocalHostname::parse))
            .flatten();
        let send_interval = errs
            .check(
                "sendIntervalMs",
                SendInterval::parse(draft.send_interval_ms.unwrap_or(0)),
            )
            .unwrap_or_default();

        let mut password = None;
        if smtp_auth && connection.is_none() {
            if username.is_none() && errs.0.iter().all(|e| e.field != "username") {
                errs.push("username", FieldCode::Required);
            }
            password = match entered_password {
                Some(p) => Some(p),
                None => match stored.and_then(|s| s.password.as_ref().map(|p| (s, p))) {
                    Some((s, p)) => {
                        let same_server = host.as_ref() == Some(&s.host)
                            && port == Some(s.port)
                            && username == s.username
                            && encryption == s.encryption;
                        if same_server {
                            Some(p.clone())
                        } else {
                            errs.push("password", FieldCode::PasswordReentryRequired);
                            None
                        }
                    }
                    None => {
                        if errs.0.iter().all(|e| e.field != "password") {
                            errs.push("password", FieldCode::Required);
                        }
                        None
                    }
                },
            };
        }

        let pop_before_smtp = draft
            .pop_before_smtp
            .as_ref()
            .and_then(|d| Self::validate_pop(d, stored.and_then(|s| s.pop_before_smtp.as_ref()), &mut errs));

        if !errs.0.is_empty() {
            return Err(errs.0);
        }
        match (host, port, from_address) {
            (Some(host), Some(port), Some(from_address)) => Ok(Self {
                server_kind,
                host,
                port,
                from_address,
                from_name,
                smtp_auth,
                username: if smtp_auth { username } else { None },
                password,
                encryption,
                pop_before_smtp,
                local_hostname,
                send_interval,
                connection,
            }),
            // Unreachable: each None above pushed an error.
            _ => Err(vec![FieldError::new("input", ValueError::InvalidFormat)]),
        }
    }

    fn validate_pop(
        d: &PopBeforeSmtpDraft,
        stored: Option<&PopBeforeSmtp>,
        errs: &mut Errors,
    ) -> Option<PopBeforeSmtp> {
        let host = errs.check("popBeforeSmtp.host", req_text(&d.host, Host::parse));
        let port = match d.port {
            Some(raw) => errs.check("popBeforeSmtp.port", Port::parse(raw)),
            None => Port::parse(if d.tls.unwrap_or(false) { 995 } else { 110 }).ok(),
        };
        let username = errs.check("popBeforeSmtp.username", req_text(&d.username, Username::parse));
        let tls = d.tls.unwrap_or(false);
        let entered = errs
            .check("popBeforeSmtp.password", new_password(&d.password))
            .flatten();
        let password = match entered {
            Some(p) => Some(p),
            None => match stored {
                Some(s)
                    if host.as_ref() == Some(&s.host)
                        && port == Some(s.port)
                        && username.as_ref() == Some(&s.username)
                        && tls == s.tls =>
                {
                    Some(s.password.clone())
                }
                Some(_) => {
                    errs.push("popBeforeSmtp.password", FieldCode::PasswordReentryRequired);
                    None
                }
                None => {
                    if errs.0.iter().all(|e| e.field != "popBeforeSmtp.password") {
                        errs.push("popBeforeSmtp.password", FieldCode::Required);
                    }
                    None
                }
            },
        };
        Some(PopBeforeSmtp {
            host: host?,
            port: port?,
            username: username?,
            password: password?,
            tls,
        })
    }

    pub fn server_kind(&self) -> ServerKind {
        self.server_kind
    }
    pub fn host(&self) -> &Host {
        &self.host
    }
    pub fn port(&self) -> Port {
        self.port
    }
    pub fn from_address(&self) -> &EmailAddress {
        &self.from_address
    }
    pub fn from_name(&self) -> Option<&SenderName> {
        self.from_name.as_ref()
    }
    pub fn smtp_auth(&self) -> bool {
        self.smtp_auth
    }
    pub fn username(&self) -> Option<&Username> {
        self.username.as_ref()
    }
    /// The SMTP password; only the transport should expose it.
    pub fn password(&self) -> Option<&SecretString> {
        self.password.as_ref()
    }
    pub fn encryption(&self) -> Encryption {
        self.encryption
    }
    pub fn pop_before_smtp(&self) -> Option<&PopBeforeSmtp> {
        self.pop_before_smtp.as_ref()
    }
    pub fn local_hostname(&self) -> Option<&LocalHostname> {
        self.local_hostname.as_ref()
    }
    pub fn send_interval(&self) -> SendInterval {
        self.send_interval
    }

    /// The sign-in that authenticates instead of a password, if any.
    pub fn connection(&self) -> Option<ConnectionId> {
        self.connection
    }

    /// Combinations that are allowed but usually a mistake.
    pub fn warnings(&self) -> Vec<SettingsWarning> {
        let mut out = Vec::new();
        match (self.port.get(), self.encryption) {
            (465, Encryption::StartTls) => out.push(SettingsWarning::Port465WithStartTls),
            (587, Encryption::Ssl) => out.push(SettingsWarning::Port587WithSsl),
            _ => {}
        }
        if self.password.is_some() && self.encryption == Encryption::None {
            out.push(SettingsWarning::PasswordWithoutEncryption);
        }
        out
    }

    /// The settings as a draft (passwords included), e.g. to re-validate stored rows.
    pub fn to_draft(&self) -> MailSettingsDraft {
        MailSettingsDraft {
            server_kind: Some(self.server_kind),
            host: Some(self.host.to_string()),
            port: Some(i64::from(self.port.get())),
            from_address: Some(self.from_address.to_string()),
            from_name: self.from_name.as_ref().map(|n| n.as_str().to_owned()),
            smtp_auth: Some(self.smtp_auth),
            username: self.username.as_ref().map(|u| u.as_str().to_owned()),
            password: self.password.clone(),
            encryption: Some(self.encryption),
            pop_before_smtp: self.pop_before_smtp.as_ref().map(|p| PopBeforeSmtpDraft {
                host: Some(p.host.to_string()),
                port: Some(i64::from(p.port.get())),
                username: Some(p.username.as_str().to_owned()),
                password: Some(p.password.clone()),
                tls: Some(p.tls),
            }),
            local_hostname: self.local_hostname.as_ref().map(|h| h.as_str().to_owned()),
            send_interval_ms: Some(i64::from(self.send_interval.as_millis())),
            connection_id: self.connection.map(|c| c.to_string()),
        }
    }

    /// Non-secret fields as (field, display value) pairs, for the audit trail's diff.
    fn audit_fields(&self) -> Vec<(&'static str, Option<String>)> {
        let pop = self.pop_before_smtp.as_ref();
        vec![
            ("serverKind", Some(self.server_kind.code().to_owned())),
            ("host", Some(self.host.to_string())),
            ("port", Some(self.port.get().to_string())),
            ("fromAddress", Some(self.from_address.to_string())),
            ("fromName", self.from_name.as_ref().map(|n| n.as_str().to_owned())),
            ("smtpAuth", Some(self.smtp_auth.to_string())),
            ("username", self.username.as_ref().map(|u| u.as_str().to_owned())),
            ("encryption", Some(self.encryption.code().to_owned())),
            ("popBeforeSmtp.host", pop.map(|p| p.host.to_string())),
            ("popBeforeSmtp.port", pop.map(|p| p.port.get().to_string())),
            ("popBeforeSmtp.username", pop.map(|p| p.username.as_str().to_owned())),
            ("popBeforeSmtp.tls", pop.map(|p| p.tls.to_string())),
            (
                "localHostname",
                self.local_hostname.as_ref().map(|h| h.as_str().to_owned()),
            ),
            ("sendIntervalMs", Some(self.send_interval.as_millis().to_string())),
            ("connectionId", self.connection.map(|c| c.to_string())),
        ]
    }
}

/// One changed field in the audit trail. Secrets carry no values, only that they changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldChange {
    Value {
        field: String,
        before: Option<String>,
        after: Option<String>,
    },
    Secret {
        field: String,
    },
}

impl FieldChange {
    pub fn field(&self) -> &str {
        match self {
            FieldChange::Value { field, .. } | FieldChange::Secret { field } => field,
        }
    }
}

/// What changed between two states of a tenant's settings (`None` = nothing saved).
pub fn settings_diff(before: Option<&MailSettings>, after: Option<&MailSettings>) -> Vec<FieldChange> {
    let b = before.map(MailSettings::audit_fields).unwrap_or_default();
    let a = after.map(MailSettings::audit_fields).unwrap_or_default();
    let names = a.iter().chain(b.iter()).map(|(f, _)| *f);
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let get =
            |v: &Vec<(&'static str, Option<String>)>| v.iter().find(|(f, _)| *f == name).and_then(|(_, x)| x.clone());
        let (old, new) = (get(&b), get(&a));
        if old != new {
            out.push(FieldChange::Value {
                field: name.to_owned(),
                before: old,
                after: new,
            });
        }
    }
    let secret = |s: Option<&MailSettings>| {
        s.and_then(|s| s.password.as_ref())
            .map(|p| p.expose_secret().to_owned())
    };
    if secret(before) != secret(after) {
        out.push(FieldChange::Secret {
            field: "password".to_owned(),
        });
    }
    let pop_secret = |s: Option<&MailSettings>| {
        s.and_then(|s| s.pop_before_smtp.as_ref())
            .map(|p| p.password.expose_secret().to_owned())
    };
    if pop_secret(before) != pop_secret(after) {
        out.push(FieldChange::Secret {
            field: "popBeforeSmtp.password".to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> MailSettingsDraft {
        MailSettingsDraft {
            host: Some("smtp.example.com".into()),
            port: Some(587),
            from_address: Some("info@example.com".into()),
            smtp_auth: Some(true),
            username: Some("info".into()),
            password: Some(SecretString::from("pw-1")),
            encryption: Some(Encryption::StartTls),
            ..Default::default()
        }
    }

    fn codes(r: Result<MailSettings, Vec<FieldError>>) -> Vec<(String, String)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.field.to_string(), e.code.code().to_string()))
            .collect()
    }

    #[test]
    fn gmail_preset_fills_server_fields() {
        let d = MailSettingsDraft {
            server_kind: Some(ServerKind::Gmail),
            host: Some("ignored.example.com".into()),
            from_address: Some("me@gmail.com".into()),
            username: Some("me@gmail.com".into()),
            password: Some(SecretString::from("app-password")),
            ..Default::default()
        };
        let s = MailSettings::validate(&d, None).unwrap();
        assert_eq!(s.host().as_str(), "smtp.gmail.com");
        assert_eq!(s.port().get(), 587);
        assert_eq!(s.encryption(), Encryption::StartTls);
        assert!(s.smtp_auth());
    }

    #[test]
    fn auth_needs_username_and_password() {
        let mut d = draft();
        d.username = None;
        d.password = None;
        assert_eq!(
            codes(MailSettings::validate(&d, None)),
            vec![
                ("username".into(), "REQUIRED".into()),
                ("password".into(), "REQUIRED".into())
            ]
        );
    }

    #[test]
    fn stored_password_only_reused_for_the_same_server() {
        let stored = MailSettings::validate(&draft(), None).unwrap();
        let mut same = draft();
        same.password = None;
        same.from_name = Some("通知".into());
        assert!(
            MailSettings::validate(&same, Some(&stored))
                .unwrap()
                .password()
                .is_some()
        );
        for change in [
            |d: &mut MailSettingsDraft| d.host = Some("evil.example.net".into()),
            |d: &mut MailSettingsDraft| d.port = Some(2525),
            |d: &mut MailSettingsDraft| d.username = Some("other".into()),
            |d: &mut MailSettingsDraft| d.encryption = Some(Encryption::None),
        ] {
            let mut d = same.clone();
            change(&mut d);
            assert_eq!(
                codes(MailSettings::validate(&d, Some(&stored))),
                vec![("password".into(), FieldCode::PasswordReentryRequired.code().into())]
            );
        }
    }

    #[test]
    fn warnings_for_usual_mistakes() {
        let mut d = draft();
        d.port = Some(465);
        assert_eq!(
            MailSettings::validate(&d, None).unwrap().warnings(),
            vec![SettingsWarning::Port465WithStartTls]
        );
        d.port = Some(587);
        d.encryption = Some(Encryption::Ssl);
        assert_eq!(
            MailSettings::validate(&d, None).unwrap().warnings(),
            vec![SettingsWarning::Port587WithSsl]
        );
        d.encryption = Some(Encryption::None);
        assert_eq!(
            MailSettings::validate(&d, None).unwrap().warnings(),
            vec![SettingsWarning::PasswordWithoutEncryption]
        );
    }

    #[test]
    fn clear_request_is_all_text_blank() {
        assert!(MailSettingsDraft::default().is_clear_request());
        let d = MailSettingsDraft {
            host: Some(" ".into()),
            port: Some(25),
            ..Default::default()
        };
        assert!(d.is_clear_request());
        assert!(!draft().is_clear_request());
    }

    #[test]
    fn diff_hides_secrets() {
        let a = MailSettings::validate(&draft(), None).unwrap();
        let mut d = draft();
        d.password = Some(SecretString::from("pw-2"));
        d.port = Some(2525);
        let b = MailSettings::validate(&d, None).unwrap();
        let diff = settings_diff(Some(&a), Some(&b));
        assert_eq!(
            diff,
            vec![
                FieldChange::Value {
                    field: "port".into(),
                    before: Some("587".into()),
                    after: Some("2525".into())
                },
                FieldChange::Secret {
                    field: "password".into()
                },
            ]
        );
        assert!(!format!("{diff:?}").contains("pw-"));
    }
}
