//! The kinds of OAuth connection a tenant's settings can use: for each, the provider,
//! the scopes asked for, whether an admin signs in, and how mail goes out.
//!
//! Sources: `/work/shared/notes/oauth2-facts.md` (§1 Microsoft, §2 Google, §7 design) and
//! issue 25.

crate::coded_enum! {
    /// Who issues the tokens.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Provider {
        Microsoft = "MICROSOFT",
        Google = "GOOGLE",
        /// Any other server that takes bearer tokens over SMTP (token URL from the
        /// tenant's settings).
        Generic = "GENERIC",
    }
}

crate::coded_enum! {
    /// How a connection gets its tokens and where it sends. Stored as its code.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ConnectionKind {
        /// A user signs in; mail goes through Graph `sendMail` (works with SMTP AUTH off).
        MicrosoftDelegatedGraph = "MICROSOFT_DELEGATED_GRAPH",
        /// A user signs in; mail goes over SMTP `AUTH XOAUTH2` to Exchange Online.
        MicrosoftDelegatedSmtp = "MICROSOFT_DELEGATED_SMTP",
        /// Client credentials (`SMTP.SendAsApp`) after admin consent; SMTP XOAUTH2.
        MicrosoftAppSmtp = "MICROSOFT_APP_SMTP",
        /// A user signs in; Gmail API `users.messages.send`.
        GoogleGmailApi = "GOOGLE_GMAIL_API",
        /// Workspace domain-wide delegation: a JWT bearer grant for the sender address.
        GoogleDomainWide = "GOOGLE_DOMAIN_WIDE",
        /// Client credentials at a token URL the tenant gives (as Keycloak 26.2 offers),
        /// SMTP XOAUTH2 to the tenant's own server.
        Xoauth2ClientCredentials = "XOAUTH2_CLIENT_CREDENTIALS",
    }
}

/// Exchange Online's submission host for OAuth SMTP (issue 25; facts note §1).
pub const OFFICE365_SMTP_HOST: &str = "smtp.office365.com";
/// Its submission port, with STARTTLS.
pub const OFFICE365_SMTP_PORT: u16 = 587;

/// Where a connection's mail goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /users/{id}/sendMail` with the raw MIME message (facts §1, "Graph sendMail").
    GraphSendMail,
    /// SMTP `AUTH XOAUTH2` to [`OFFICE365_SMTP_HOST`]:[`OFFICE365_SMTP_PORT`].
    Office365Smtp,
    /// Gmail API `users.messages.send` with the raw message (facts §2).
    GmailApi,
    /// SMTP `AUTH XOAUTH2` to the host and port in the tenant's settings.
    TenantSmtp,
}

/// How a connection obtains its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Authorization code with PKCE, then refresh tokens (RFC 6749 §4.1, RFC 7636).
    AuthorizationCode,
    /// Client credentials (RFC 6749 §4.4); no refresh token.
    ClientCredentials,
    /// JWT bearer assertion for a service account (RFC 7523), Google domain-wide delegation.
    JwtBearer,
}

// Microsoft delegated scopes: office-developer-exchange-docs
// `how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth.md` (SMTP.Send,
// offline_access); Graph user-sendmail (Mail.Send); `openid`, `email` for the ID token
// (facts §7 operator setup).
const MS_SMTP_DELEGATED: &[&str] = &[
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
    "openid",
    "email",
];
const MS_GRAPH_DELEGATED: &[&str] = &[
    "https://graph.microsoft.com/Mail.Send",
    "offline_access",
    "openid",
    "email",
];
// App-only: the same Exchange doc, step 4 of the app-only flow.
const MS_APP: &[&str] = &["https://outlook.office365.com/.default"];
// Google: Gmail scopes page (developers.google.com/gmail/api/auth/scopes), `gmail.send` is
// "sensitive", not "restricted" (facts §2).
const GOOGLE_SEND: &[&str] = &["https://www.googleapis.com/auth/gmail.send"];
// A user who signs in also gives `openid email` (non-sensitive): the ID token names the
// mailbox, so the tenant sees which account it connected.
const GOOGLE_SEND_SIGNED_IN: &[&str] = &["https://www.googleapis.com/auth/gmail.send", "openid", "email"];

impl Provider {
    /// The provider whose sign-in replaces a password for a server preset (issue 25: the
    /// setup assistant proposes a connection for Microsoft 365, Outlook.com and Google
    /// addresses). `None` for every other server.
    pub fn for_server(kind: crate::server::ServerKind) -> Option<Self> {
        use crate::server::ServerKind as K;
        match kind {
            K::Microsoft365 | K::OutlookCom => Some(Self::Microsoft),
            K::Gmail | K::GoogleWorkspace => Some(Self::Google),
            _ => None,
        }
    }
}

impl ConnectionKind {
    /// Who issues this kind's tokens.
    pub fn provider(self) -> Provider {
        match self {
            Self::MicrosoftDelegatedGraph | Self::MicrosoftDelegatedSmtp | Self::MicrosoftAppSmtp => {
                Provider::Microsoft
            }
            Self::GoogleGmailApi | Self::GoogleDomainWide => Provider::Google,
            Self::Xoauth2ClientCredentials => Provider::Generic,
        }
    }

    /// The scopes to ask for. Empty for [`ConnectionKind::Xoauth2ClientCredentials`]:
    /// its scope is the tenant's setting.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Self::MicrosoftDelegatedGraph => MS_GRAPH_DELEGATED,
            Self::MicrosoftDelegatedSmtp => MS_SMTP_DELEGATED,
            Self::MicrosoftAppSmtp => MS_APP,
            Self::GoogleGmailApi => GOOGLE_SEND_SIGNED_IN,
            Self::GoogleDomainWide => GOOGLE_SEND,
            Self::Xoauth2ClientCredentials => &[],
        }
    }

    /// The scopes as the space-separated `scope` parameter (RFC 6749 §3.3).
    pub fn scope_parameter(self) -> String {
        self.scopes().join(" ")
    }

    /// Whether an admin signs in through the browser (the `state` and PKCE flow) to
    /// create or repair the connection.
    pub fn is_delegated(self) -> bool {
        matches!(self.grant(), Grant::AuthorizationCode)
    }

    /// How the tokens are obtained.
    pub fn grant(self) -> Grant {
        match self {
            Self::MicrosoftDelegatedGraph | Self::MicrosoftDelegatedSmtp | Self::GoogleGmailApi => {
                Grant::AuthorizationCode
            }
            Self::MicrosoftAppSmtp | Self::Xoauth2ClientCredentials => Grant::ClientCredentials,
            Self::GoogleDomainWide => Grant::JwtBearer,
        }
    }

    /// Where mail goes out.
    pub fn transport(self) -> Transport {
        match self {
            Self::MicrosoftDelegatedGraph => Transport::GraphSendMail,
            Self::MicrosoftDelegatedSmtp | Self::MicrosoftAppSmtp => Transport::Office365Smtp,
            Self::GoogleGmailApi | Self::GoogleDomainWide => Transport::GmailApi,
            Self::Xoauth2ClientCredentials => Transport::TenantSmtp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_the_assistant_proposes_a_sign_in_for_microsoft_and_google_presets() {
        use crate::server::ServerKind as K;
        assert_eq!(Provider::for_server(K::Microsoft365), Some(Provider::Microsoft));
        assert_eq!(Provider::for_server(K::OutlookCom), Some(Provider::Microsoft));
        assert_eq!(Provider::for_server(K::Gmail), Some(Provider::Google));
        assert_eq!(Provider::for_server(K::GoogleWorkspace), Some(Provider::Google));
        for other in [K::Custom, K::YahooJapan, K::Sakura, K::AmazonSes] {
            assert_eq!(Provider::for_server(other), None);
        }
    }

    #[test]
    fn codes_are_stable_and_round_trip() {
        let codes: Vec<_> = ConnectionKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(
            codes,
            [
                "MICROSOFT_DELEGATED_GRAPH",
                "MICROSOFT_DELEGATED_SMTP",
                "MICROSOFT_APP_SMTP",
                "GOOGLE_GMAIL_API",
                "GOOGLE_DOMAIN_WIDE",
                "XOAUTH2_CLIENT_CREDENTIALS"
            ]
        );
        for k in ConnectionKind::ALL {
            assert_eq!(ConnectionKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ConnectionKind::from_code("microsoft_delegated_smtp"), None);
    }

    #[test]
    fn each_kind_has_its_provider_scopes_sign_in_and_transport() {
        use ConnectionKind::*;
        let smtp = MicrosoftDelegatedSmtp;
        assert_eq!(smtp.provider(), Provider::Microsoft);
        assert_eq!(
            smtp.scope_parameter(),
            "https://outlook.office.com/SMTP.Send offline_access openid email"
        );
        assert!(smtp.is_delegated());
        assert_eq!(smtp.transport(), Transport::Office365Smtp);

        assert_eq!(
            MicrosoftDelegatedGraph.scopes(),
            [
                "https://graph.microsoft.com/Mail.Send",
                "offline_access",
                "openid",
                "email"
            ]
        );
        assert_eq!(MicrosoftDelegatedGraph.transport(), Transport::GraphSendMail);

        assert_eq!(MicrosoftAppSmtp.scopes(), ["https://outlook.office365.com/.default"]);
        assert!(!MicrosoftAppSmtp.is_delegated());
        assert_eq!(MicrosoftAppSmtp.grant(), Grant::ClientCredentials);

        for google in [GoogleGmailApi, GoogleDomainWide] {
            assert_eq!(google.provider(), Provider::Google);
            assert_eq!(google.scopes()[0], "https://www.googleapis.com/auth/gmail.send");
            assert_eq!(google.transport(), Transport::GmailApi);
        }
        assert_eq!(
            GoogleGmailApi.scope_parameter(),
            "https://www.googleapis.com/auth/gmail.send openid email"
        );
        assert_eq!(
            GoogleDomainWide.scopes(),
            ["https://www.googleapis.com/auth/gmail.send"]
        );
        assert!(GoogleGmailApi.is_delegated());
        assert_eq!(GoogleDomainWide.grant(), Grant::JwtBearer);
        assert!(!GoogleDomainWide.is_delegated());

        assert_eq!(Xoauth2ClientCredentials.provider(), Provider::Generic);
        assert!(Xoauth2ClientCredentials.scopes().is_empty());
        assert_eq!(Xoauth2ClientCredentials.transport(), Transport::TenantSmtp);
        // Nobody asks Google for the restricted SMTP scope (facts §2).
        assert!(
            ConnectionKind::ALL
                .iter()
                .all(|k| !k.scopes().contains(&"https://mail.google.com/"))
        );
    }
}
