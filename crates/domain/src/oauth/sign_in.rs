//! Where an admin signs in: a provider's authorization endpoint as the operator
//! configured it, and the URLs Mailgate sends the browser to (the sign-in with PKCE and
//! the signed `state`, and Microsoft's admin consent).
//!
//! Parameters: RFC 6749 §4.1.1, RFC 7636 §4.3; Microsoft's `prompt=select_account`
//! (learn.microsoft.com, "OAuth 2.0 authorization code flow"); Google's
//! `access_type=offline` and `prompt=consent`, without which Google sends a refresh token
//! only on the first consent (developers.google.com/identity/protocols/oauth2/web-server).

use url::Url;

use super::kind::{ConnectionKind, Provider};

/// Why an endpoint's configuration is refused (at start-up, naming the setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignInEndpointError {
    #[error("not an http or https URL with a host, without user name, password or fragment")]
    Url,
    #[error("the client id is empty")]
    ClientId,
}

/// One provider's sign-in, from the operator's configuration: valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInEndpoint {
    provider: Provider,
    authorize_url: Url,
    client_id: String,
    redirect_uri: Url,
    admin_consent_url: Option<Url>,
}

fn operator_url(raw: &str) -> Result<Url, SignInEndpointError> {
    let url = Url::parse(raw.trim()).map_err(|_| SignInEndpointError::Url)?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none();
    if ok { Ok(url) } else { Err(SignInEndpointError::Url) }
}

impl SignInEndpoint {
    /// `redirect_uri` is Mailgate's own callback (`<public URL>/oauth/<provider>/callback`),
    /// registered with the provider.
    pub fn new(
        provider: Provider,
        authorize_url: &str,
        client_id: &str,
        redirect_uri: &str,
        admin_consent_url: Option<&str>,
    ) -> Result<Self, SignInEndpointError> {
        if client_id.trim().is_empty() {
            return Err(SignInEndpointError::ClientId);
        }
        Ok(Self {
            provider,
            authorize_url: operator_url(authorize_url)?,
            client_id: client_id.trim().to_owned(),
            redirect_uri: operator_url(redirect_uri)?,
            admin_consent_url: admin_consent_url.map(operator_url).transpose()?,
        })
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn redirect_uri(&self) -> &str {
        self.redirect_uri.as_str()
    }

    /// The URL the admin's browser goes to: the authorization request for `kind` with
    /// the sealed `state`, the PKCE challenge (S256) and, when known, the mailbox as
    /// `login_hint`.
    pub fn authorization_url(
        &self,
        kind: ConnectionKind,
        state: &str,
        code_challenge: &str,
        login_hint: Option<&str>,
    ) -> String {
        let mut url = self.authorize_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", self.redirect_uri.as_str())
                .append_pair("scope", &kind.scope_parameter())
                .append_pair("state", state)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", super::CHALLENGE_METHOD);
            match self.provider {
                Provider::Microsoft => {
                    q.append_pair("response_mode", "query")
                        .append_pair("prompt", "select_account");
                }
                Provider::Google => {
                    q.append_pair("access_type", "offline").append_pair("prompt", "consent");
                }
                Provider::Generic => {}
            }
            if let Some(hint) = login_hint {
                q.append_pair("login_hint", hint);
            }
        }
        url.into()
    }

    /// Microsoft's admin-consent URL for `kind` (`/{tenant}/v2.0/adminconsent`, facts §1):
    /// what an admin who may consent for the organisation opens when user consent is
    /// blocked. `None` for other providers or when not configured.
    pub fn admin_consent_url(&self, kind: ConnectionKind) -> Option<String> {
        let base = self.admin_consent_url.as_ref()?;
        let mut url = base.clone();
        // The permissions themselves; `offline_access`, `openid` and `email` are not
        // resource permissions an admin consents to here.
        let scope: Vec<&str> = kind
            .scopes()
            .iter()
            .copied()
            .filter(|s| s.starts_with("https://"))
            .collect();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", &scope.join(" "))
            .append_pair("redirect_uri", self.redirect_uri.as_str());
        Some(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn microsoft() -> SignInEndpoint {
        SignInEndpoint::new(
            Provider::Microsoft,
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            "11111111-2222-3333-4444-555555555555",
            "https://mailgate.example.net/oauth/microsoft/callback",
            Some("https://login.microsoftonline.com/organizations/v2.0/adminconsent"),
        )
        .unwrap()
    }

    fn query(url: &str) -> Vec<(String, String)> {
        Url::parse(url).unwrap().query_pairs().into_owned().collect()
    }

    #[test]
    fn oauth_authorization_url_carries_pkce_state_and_the_kinds_scopes() {
        let url = microsoft().authorization_url(
            ConnectionKind::MicrosoftDelegatedGraph,
            "v1.k.sealed",
            "challenge-value",
            Some("info@contoso.example"),
        );
        assert!(url.starts_with("https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"));
        let q = query(&url);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("11111111-2222-3333-4444-555555555555"));
        assert_eq!(
            get("redirect_uri"),
            Some("https://mailgate.example.net/oauth/microsoft/callback")
        );
        assert_eq!(
            get("scope"),
            Some("https://graph.microsoft.com/Mail.Send offline_access openid email")
        );
        assert_eq!(get("state"), Some("v1.k.sealed"));
        assert_eq!(get("code_challenge"), Some("challenge-value"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("prompt"), Some("select_account"));
        assert_eq!(get("login_hint"), Some("info@contoso.example"));
        assert_eq!(get("access_type"), None);
    }

    #[test]
    fn oauth_google_asks_for_a_refresh_token_every_time() {
        let google = SignInEndpoint::new(
            Provider::Google,
            "https://accounts.google.com/o/oauth2/v2/auth",
            "client.apps.googleusercontent.com",
            "https://mailgate.example.net/oauth/google/callback",
            None,
        )
        .unwrap();
        let q = query(&google.authorization_url(ConnectionKind::GoogleGmailApi, "s", "c", None));
        assert!(q.contains(&("access_type".into(), "offline".into())));
        assert!(q.contains(&("prompt".into(), "consent".into())));
        assert!(!q.iter().any(|(k, _)| k == "login_hint"));
        assert_eq!(google.admin_consent_url(ConnectionKind::GoogleGmailApi), None);
    }

    #[test]
    fn oauth_admin_consent_names_only_resource_permissions() {
        let url = microsoft()
            .admin_consent_url(ConnectionKind::MicrosoftDelegatedSmtp)
            .unwrap();
        assert!(url.starts_with("https://login.microsoftonline.com/organizations/v2.0/adminconsent?"));
        assert!(query(&url).contains(&("scope".into(), "https://outlook.office.com/SMTP.Send".into())));
    }

    #[test]
    fn oauth_endpoints_refuse_what_an_operator_should_not_configure() {
        let new = |url: &str, id: &str| {
            SignInEndpoint::new(Provider::Microsoft, url, id, "https://m.example/cb", None).map(|_| ())
        };
        assert_eq!(
            new("https://login.example/authorize", ""),
            Err(SignInEndpointError::ClientId)
        );
        for bad in [
            "ftp://login.example/authorize",
            "https://user:pw@login.example/authorize",
            "https://login.example/authorize#x",
            "not a url",
        ] {
            assert_eq!(new(bad, "id"), Err(SignInEndpointError::Url), "{bad}");
        }
    }
}
