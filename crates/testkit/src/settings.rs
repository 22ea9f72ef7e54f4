//! The mail-settings input the API takes (`MailSettingsInput`), built in one place: a
//! tenant's own server on loopback by default, or a provider preset, changed step by step.
//!
//! ```
//! use testkit::settings::SettingsInput;
//! let input = SettingsInput::plain(2525).starttls().with_auth("shop", "pw").json();
//! assert_eq!(input["encryption"], "STARTTLS");
//! assert_eq!(input["smtpAuth"], true);
//! let gmail = SettingsInput::preset("GMAIL", "me@gmail.com").login("me@gmail.com", "app-password").json();
//! assert_eq!(gmail["serverKind"], "GMAIL");
//! assert!(gmail.get("host").is_none() && gmail.get("smtpAuth").is_none());
//! ```

use serde_json::{Map, Value, json};

/// A `MailSettingsInput`; only the fields set are sent.
#[derive(Debug, Clone)]
pub struct SettingsInput {
    server_kind: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    encryption: Option<String>,
    from_address: String,
    from_name: Option<String>,
    smtp_auth: Option<bool>,
    credentials: Option<(String, String)>,
    local_hostname: Option<String>,
    send_interval_ms: Option<u64>,
}

impl SettingsInput {
    /// The shop's server at `localhost:port` without TLS, sending as
    /// `ショップ <shop@example.jp>`; no AUTH field.
    pub fn plain(port: u16) -> Self {
        Self {
            server_kind: None,
            host: Some("localhost".into()),
            port: Some(port),
            encryption: Some("NONE".into()),
            from_address: "shop@example.jp".into(),
            from_name: Some("ショップ".into()),
            smtp_auth: None,
            credentials: None,
            local_hostname: None,
            send_interval_ms: None,
        }
    }

    /// A provider preset (`serverKind`, e.g. `GMAIL`) sending as `from`: no host, port,
    /// encryption, `fromName` or AUTH field, so the preset supplies what it knows.
    pub fn preset(kind: &str, from: &str) -> Self {
        Self {
            server_kind: Some(kind.into()),
            host: None,
            port: None,
            encryption: None,
            from_address: from.into(),
            from_name: None,
            smtp_auth: None,
            credentials: None,
            local_hostname: None,
            send_interval_ms: None,
        }
    }

    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.into());
        self
    }

    /// `NONE`, `STARTTLS` or `TLS`.
    pub fn encryption(mut self, encryption: &str) -> Self {
        self.encryption = Some(encryption.into());
        self
    }

    pub fn starttls(self) -> Self {
        self.encryption("STARTTLS")
    }

    pub fn from(mut self, address: &str) -> Self {
        self.from_address = address.into();
        self
    }

    pub fn from_name(mut self, name: &str) -> Self {
        self.from_name = Some(name.into());
        self
    }

    /// No `fromName` field at all.
    pub fn without_from_name(mut self) -> Self {
        self.from_name = None;
        self
    }

    /// `smtpAuth: true` with this username and password.
    pub fn with_auth(mut self, user: &str, password: &str) -> Self {
        self.smtp_auth = Some(true);
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// This username and password, with no `smtpAuth` field (the preset's or the
    /// server's default decides).
    pub fn login(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// `smtpAuth: false`, said explicitly.
    pub fn without_auth(mut self) -> Self {
        self.smtp_auth = Some(false);
        self.credentials = None;
        self
    }

    pub fn local_hostname(mut self, name: &str) -> Self {
        self.local_hostname = Some(name.into());
        self
    }

    pub fn send_interval_ms(mut self, ms: u64) -> Self {
        self.send_interval_ms = Some(ms);
        self
    }

    /// The GraphQL variable's value.
    pub fn json(&self) -> Value {
        let mut input = Map::new();
        if let Some(kind) = &self.server_kind {
            input.insert("serverKind".into(), json!(kind));
        }
        if let Some(host) = &self.host {
            input.insert("host".into(), json!(host));
        }
        if let Some(port) = self.port {
            input.insert("port".into(), json!(port));
        }
        if let Some(encryption) = &self.encryption {
            input.insert("encryption".into(), json!(encryption));
        }
        input.insert("fromAddress".into(), json!(self.from_address));
        if let Some(name) = &self.from_name {
            input.insert("fromName".into(), json!(name));
        }
        if let Some(auth) = self.smtp_auth {
            input.insert("smtpAuth".into(), json!(auth));
        }
        if let Some((user, password)) = &self.credentials {
            input.insert("username".into(), json!(user));
            input.insert("password".into(), json!(password));
        }
        if let Some(name) = &self.local_hostname {
            input.insert("localHostname".into(), json!(name));
        }
        if let Some(ms) = self.send_interval_ms {
            input.insert("sendIntervalMs".into(), json!(ms));
        }
        Value::Object(input)
    }
}

impl From<SettingsInput> for Value {
    fn from(input: SettingsInput) -> Self {
        input.json()
    }
}
