//! The sign-in part of the configuration (`MAILGATE_PUBLIC_URL`, `MAILGATE_OAUTH_*`),
//! checked and turned into what the token clients and the mail APIs use.

use anyhow::{Context as _, bail};
use secrecy::SecretString;

use super::Config;

/// The sign-in part of the configuration, checked: each provider that has a client id,
/// where the mail APIs are, and the return URLs allowed.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// Microsoft app-only token URL template, when Microsoft is set up with a secret.
    pub microsoft_app_token_url: Option<String>,
    /// Google Workspace domain-wide delegation.
    pub service_account: Option<std::sync::Arc<oauth::ServiceAccount>>,
    pub microsoft: Option<oauth::ProviderConfig>,
    pub google: Option<oauth::ProviderConfig>,
    pub apis: mailer::api::MailApis,
    pub return_urls: domain::oauth::ReturnUrlAllowList,
    /// The console's address, where a sign-in returns by default.
    pub console_url: String,
}

impl Config {
    /// `<public_url>` without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim().trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The sign-in configuration, or the first problem, naming its setting.
    pub fn sign_in(&self) -> anyhow::Result<SignInConfig> {
        use domain::oauth::{Provider, SignInEndpoint};
        let base = self.public_base();
        let url = |name: &str, raw: &str| -> anyhow::Result<url::Url> {
            let u = url::Url::parse(raw.trim()).map_err(|e| anyhow::anyhow!("MAILGATE_{name}: {raw:?} {e}"))?;
            if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
                bail!("MAILGATE_{name}: {raw:?} is not an http(s) URL");
            }
            Ok(u)
        };
        url("PUBLIC_URL", &base)?;
        let provider = |provider: Provider,
                        name: &str,
                        id: &Option<String>,
                        secret: &Option<SecretString>,
                        authorize: &str,
                        token: &str,
                        admin_consent: Option<&str>,
                        revoke: Option<&str>|
         -> anyhow::Result<Option<oauth::ProviderConfig>> {
            let Some(id) = id.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
                return Ok(None);
            };
            let callback = format!("{base}/oauth/{}/callback", name.to_ascii_lowercase());
            let sign_in = SignInEndpoint::new(provider, authorize, id, &callback, admin_consent)
                .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_{name}_AUTHORIZE_URL: {e}"))?;
            let auth = match secret {
                Some(s) => oauth::ClientAuth::Secret(s.clone()),
                None => oauth::ClientAuth::None,
            };
            let token = oauth::TokenEndpoint::new(token, id, auth)
                .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_{name}_TOKEN_URL: {e}"))?;
            let revoke_url = revoke
                .map(|r| url(&format!("OAUTH_{name}_REVOKE_URL"), r))
                .transpose()?;
            Ok(Some(oauth::ProviderConfig {
                sign_in,
                token,
                revoke_url,
            }))
        };
        let microsoft = provider(
            Provider::Microsoft,
            "MICROSOFT",
            &self.oauth_microsoft_client_id,
            &self.oauth_microsoft_client_secret,
            &self.oauth_microsoft_authorize_url,
            &self.oauth_microsoft_token_url,
            Some(&self.oauth_microsoft_admin_consent_url),
            None,
        )?;
        let google = provider(
            Provider::Google,
            "GOOGLE",
            &self.oauth_google_client_id,
            &self.oauth_google_client_secret,
            &self.oauth_google_authorize_url,
            &self.oauth_google_token_url,
            None,
            Some(&self.oauth_google_revoke_url),
        )?;
        let microsoft_app_token_url = match &microsoft {
            Some(m) if m.token.has_secret() => {
                if !self
                    .oauth_microsoft_app_token_url
                    .contains(oauth::DIRECTORY_PLACEHOLDER)
                {
                    bail!(
                        "MAILGATE_OAUTH_MICROSOFT_APP_TOKEN_URL: must contain {} for the organisation, e.g. https://login.microsoftonline.com/{{tenant}}/oauth2/v2.0/token",
                        oauth::DIRECTORY_PLACEHOLDER
                    );
                }
                let sample = self
                    .oauth_microsoft_app_token_url
                    .replace(oauth::DIRECTORY_PLACEHOLDER, "contoso.onmicrosoft.com");
                m.token
                    .at(&sample)
                    .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_MICROSOFT_APP_TOKEN_URL: {e}"))?;
                Some(self.oauth_microsoft_app_token_url.clone())
            }
            _ => None,
        };
        let service_account = match &self.oauth_google_service_account_file {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "MAILGATE_OAUTH_GOOGLE_SERVICE_ACCOUNT_FILE: cannot read {}",
                        path.display()
                    )
                })?;
                Some(std::sync::Arc::new(oauth::ServiceAccount::from_json(&bytes).map_err(
                    |e| anyhow::anyhow!("MAILGATE_OAUTH_GOOGLE_SERVICE_ACCOUNT_FILE: {}: {e}", path.display()),
                )?))
            }
            None => None,
        };
        let apis = mailer::api::MailApis {
            graph: url("OAUTH_MICROSOFT_GRAPH_URL", &self.oauth_microsoft_graph_url)?,
            gmail: url("OAUTH_GOOGLE_GMAIL_URL", &self.oauth_google_gmail_url)?,
        };
        let console_url = format!("{base}/console/");
        let on = microsoft.is_some() || google.is_some() || service_account.is_some();
        // The console is where a sign-in returns by default: it must be a return URL a
        // browser may be sent to (https, or http on loopback) once sign-in is on.
        let console_ok = domain::oauth::ReturnUrlAllowList::parse([console_url.as_str()]).is_ok();
        if on && !console_ok {
            bail!(
                "MAILGATE_PUBLIC_URL: {base:?} must be the https address browsers reach Mailgate at (http only on loopback) when sign-in with Microsoft or Google is set up"
            );
        }
        let mut entries = Vec::new();
        if console_ok {
            entries.push(console_url.clone());
        }
        if let Some(list) = &self.oauth_return_urls {
            entries.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        let return_urls = domain::oauth::ReturnUrlAllowList::parse(entries.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_RETURN_URLS: {e}"))?;
        Ok(SignInConfig {
            microsoft_app_token_url,
            service_account,
            microsoft,
            google,
            apis,
            return_urls,
            console_url,
        })
    }
}
