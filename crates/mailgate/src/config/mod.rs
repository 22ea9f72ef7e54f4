//! Configuration: defaults, then an optional TOML file (`MAILGATE_CONFIG` or
//! `--config`), then `MAILGATE_*` environment variables. Validated once at start-up with
//! a message that names the setting.
//!
//! By job: `settings` declares every setting once (name, type, default, its own check,
//! description) through `declare`'s macro; `values` holds the kinds of value and how
//! text becomes them; `checks` the checks that span settings; `dev_secrets` the secrets
//! development generates; `providers` the sign-in part, checked. This module reads
//! the layers and runs the checks.

mod checks;
mod declare;
mod dev_secrets;
mod providers;
mod settings;
#[cfg(test)]
mod tests;
mod values;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};

pub use declare::Setting;
pub use providers::SignInConfig;
pub use settings::Config;
pub use values::{JwtAlgorithm, LogFormat, Profile, SettingsActivation};

/// The secrets of a comma-separated list, trimmed, empty entries skipped.
pub fn split_secrets(list: &SecretString) -> impl Iterator<Item = &str> {
    list.expose_secret().split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Whether `key` (a `MAILGATE_` variable's name without the prefix, any case) is one that
/// Kubernetes injects for a Service whose name starts with `mailgate` (service links:
/// `MAILGATE_PORT`, `MAILGATE_SERVICE_HOST`, `MAILGATE_SERVICE_PORT[_NAME]`,
/// `MAILGATE_PORT_80_TCP[_PROTO|_PORT|_ADDR]`, and the same after `MAILGATE_<REST>_` for a
/// Service named `mailgate-<rest>`), and never a setting: no setting ends in `_port` or
/// holds `service_host`/`service_port`, so real typos are still refused.
fn is_service_link(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    let parts: Vec<&str> = key.split('_').collect();
    let n = parts.len();
    let ends = |suffix: &[&str]| n >= suffix.len() && parts[n - suffix.len()..] == *suffix;
    let number = |p: &str| !p.is_empty() && p.parse::<u16>().is_ok();
    let proto = |p: &str| matches!(p, "TCP" | "UDP" | "SCTP");
    ends(&["SERVICE", "HOST"])
        || parts.windows(2).any(|w| w == ["SERVICE", "PORT"])
        || ends(&["PORT"])
        || (n >= 3 && parts[n - 3] == "PORT" && number(parts[n - 2]) && proto(parts[n - 1]))
        || (n >= 4
            && parts[n - 4] == "PORT"
            && number(parts[n - 3])
            && proto(parts[n - 2])
            && matches!(parts[n - 1], "PROTO" | "PORT" | "ADDR"))
}

impl Config {
    /// Reads defaults, the optional file and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("MAILGATE_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            if !path.exists() {
                bail!("MAILGATE_CONFIG: the file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("MAILGATE_")
                .ignore(&["config", "log"])
                .filter(|key| !is_service_link(key.as_str())),
        );
        let mut config: Config = figment.extract().map_err(|e| {
            let problems: Vec<String> = e
                .into_iter()
                .map(|err| {
                    let key = err.path.iter().map(|p| p.to_uppercase()).collect::<Vec<_>>().join("_");
                    if key.is_empty() {
                        err.kind.to_string()
                    } else {
                        format!("MAILGATE_{key}: {}", err.kind)
                    }
                })
                .collect();
            anyhow::anyhow!("configuration error: {}", problems.join("; "))
        })?;
        config.ignored_service_links = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| name.strip_prefix("MAILGATE_").is_some_and(is_service_link))
            .collect();
        config.ignored_service_links.sort();
        Ok(config)
    }

    pub fn console_enabled(&self) -> bool {
        self.console.unwrap_or(self.profile == Profile::Development)
    }

    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(self.profile == Profile::Development)
    }

    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(self.profile == Profile::Development)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("mailgate.db").display()))
    }

    /// Checks every setting (the cross-setting checks, then each setting's declared one)
    /// and, in development, fills in generated secrets. Returns the first problem, naming
    /// the setting.
    pub fn validate_and_prepare(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("MAILGATE_DATA_DIR: cannot create {}", self.data_dir.display()))?;
        if self.profile == Profile::Development {
            self.fill_in_dev_secrets()?;
        }
        self.check_across()?;
        self.check_each()
    }

    /// The EHLO name for tenants that set none: configured, or the platform sender's domain.
    pub fn ehlo(&self) -> anyhow::Result<domain::values::LocalHostname> {
        let raw = match &self.ehlo_name {
            Some(name) => name.clone(),
            None => {
                let from = domain::PlatformSender::parse(&self.default_from)
                    .map_err(|e| anyhow::anyhow!("MAILGATE_DEFAULT_FROM: {e}"))?;
                from.address
                    .to_ascii()
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_owned())
                    .unwrap_or_default()
            }
        };
        domain::values::LocalHostname::parse(&raw).map_err(|e| {
            anyhow::anyhow!("MAILGATE_EHLO_NAME: {raw:?} {e}: use a fully qualified host name such as mail.example.com")
        })
    }
}
