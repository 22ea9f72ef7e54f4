//! The values settings take that are Mailgate's own (profile, log format, activation,
//! JWT algorithm) and the lists read from one comma-separated variable (ports, probe
//! pairs, DNS servers): how text becomes them, and how each shows as a default.

use serde::Deserialize;

use super::declare::{DefaultText, ListItem};

/// Development (the default: generated secrets, GraphiQL on) or production (every
/// secret must be configured, GraphiQL and introspection off unless asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What makes saved settings live (`MAILGATE_SETTINGS_ACTIVATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SettingsActivation {
    /// A successful test mail of the saved settings.
    #[default]
    Test,
    /// The one-time code that test mail carries, given to `activateMailSettings`.
    Code,
    /// Live on save, unproven.
    Save,
}

impl SettingsActivation {
    pub fn mode(self) -> domain::health::ActivationMode {
        match self {
            Self::Test => domain::health::ActivationMode::Test,
            Self::Code => domain::health::ActivationMode::Code,
            Self::Save => domain::health::ActivationMode::Save,
        }
    }
}

/// How bearer tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
pub enum JwtAlgorithm {
    #[default]
    HS256,
    RS256,
    EdDSA,
}

/// These show as the word serde reads, so the shown default is what a variable says.
macro_rules! shown_as_read {
    ($($ty:ty),*) => {$(
        impl DefaultText for $ty {
            fn default_text(&self) -> String {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(word)) => format!("`{word}`"),
                    other => format!("{other:?}"),
                }
            }
        }
    )*};
}
shown_as_read!(Profile, LogFormat, SettingsActivation, JwtAlgorithm);

/// A probe pair as `MAILGATE_PROBE_PAIRS` writes it: `587/starttls`.
impl ListItem for (u16, domain::settings::Encryption) {
    fn item_text(&self) -> String {
        format!("{}/{}", self.0, self.1.code().to_ascii_lowercase())
    }
}

/// Accepts `[25, 587]`, `"25,587"` or `587`.
pub(super) fn port_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<u16>),
        One(u16),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::List(v) => Ok(v),
        Raw::One(p) => Ok(vec![p]),
        Raw::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| serde::de::Error::custom(format!("{p:?} is not a port")))
            })
            .collect(),
    }
}

/// Accepts `"587/starttls, 465/ssl"` (encryption `none`, `ssl` or `starttls`).
pub(super) fn probe_pair_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(u16, domain::settings::Encryption)>, D::Error> {
    let text = String::deserialize(d)?;
    parse_probe_pairs(&text).map_err(serde::de::Error::custom)
}

fn parse_probe_pairs(text: &str) -> Result<Vec<(u16, domain::settings::Encryption)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (port, encryption) = item
                .split_once('/')
                .ok_or_else(|| format!("{item:?} is not port/encryption (e.g. 587/starttls)"))?;
            let port = port
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("{port:?} is not a port"))?;
            let encryption = domain::settings::Encryption::from_code(&encryption.trim().to_ascii_uppercase())
                .ok_or_else(|| format!("{encryption:?} is not none, ssl or starttls"))?;
            Ok((port, encryption))
        })
        .collect()
}

/// Accepts `"192.0.2.53, 127.0.0.1:5353, [::1]:53"` or a list of such; port 53 by default.
pub(super) fn dns_server_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<std::net::SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items: Vec<String> = match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Text(t) => t.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    s.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IP address or ip:port")))
        })
        .collect()
}
