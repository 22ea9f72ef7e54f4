//! What Mailgate knows about mail providers: the presets of the settings form (host or
//! host template, port, encryption, authentication, what the user name is, the published
//! sending limit) and what discovery and the sender-domain check match against (the
//! address domains a provider hosts, its MX names, its SPF include, its DKIM selectors).
//! The facts are in `data.rs`, each entry with its source.

mod data;

use crate::server::{Encryption, ServerKind};

pub use data::PROVIDERS;

crate::coded_enum! {
    /// What the part of a host template in braces stands for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TemplateInput {
        /// The account or initial-domain name the provider assigned (`{account}.sakura.ne.jp`).
        Account = "ACCOUNT",
        /// A cloud region (`email-smtp.{region}.amazonaws.com`).
        Region = "REGION",
        /// The number of the server the contract is on (`sv{server}.xserver.jp`).
        Server = "SERVER",
    }
}

/// The SMTP host of a provider: one name, or a template with one `{…}` part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSpec {
    Fixed(&'static str),
    Template {
        /// With exactly one `{name}` placeholder, e.g. `{account}.sakura.ne.jp`.
        template: &'static str,
        input: TemplateInput,
    },
}

crate::coded_enum! {
    /// What goes into the user-name field.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum UsernameKind {
        /// The whole sender address (`info@example.jp`).
        Address = "ADDRESS",
        /// The part before the `@`.
        LocalPart = "LOCAL_PART",
        /// A separate ID the provider issued (not derived from the address).
        AccountId = "ACCOUNT_ID",
        /// The literal word `apikey` (SendGrid); the password is the API key.
        ApiKey = "APIKEY",
        /// SMTP credentials generated in the provider's console (Amazon SES).
        SmtpCredentials = "SMTP_CREDENTIALS",
    }
}

crate::coded_enum! {
    /// The period a published sending limit counts over.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum LimitPeriod {
        Minute = "MINUTE",
        Hour = "HOUR",
        Day = "DAY",
    }
}

impl LimitPeriod {
    pub fn millis(self) -> u64 {
        match self {
            LimitPeriod::Minute => 60_000,
            LimitPeriod::Hour => 3_600_000,
            LimitPeriod::Day => 86_400_000,
        }
    }
}

/// A provider's published limit: at most `count` messages per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimit {
    pub count: u32,
    pub period: LimitPeriod,
}

impl SendLimit {
    /// The smallest send interval that keeps under the limit (rounded up).
    pub fn send_interval_ms(self) -> u64 {
        self.period.millis().div_ceil(u64::from(self.count.max(1)))
    }
}

crate::coded_enum! {
    /// Something a site owner must know or do before a provider accepts mail from
    /// Mailgate. The sentences are in the API's catalogues.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ProviderHint {
        /// The account password is refused; an app password (2-step verification on) is needed.
        AppPassword = "APP_PASSWORD",
        /// SMTP AUTH is off by default and must be enabled for the mailbox (Microsoft 365).
        SmtpAuthPerMailbox = "SMTP_AUTH_PER_MAILBOX",
        /// Microsoft is retiring password SMTP AUTH: new tenants (2027 on) and tenants
        /// whose admin has not re-enabled it answer `550 5.7.30` or `535 5.7.139`.
        BasicAuthRetiring = "BASIC_AUTH_RETIRING",
        /// Password login is gone (Outlook.com since September 2024): the server takes
        /// OAuth2 logins only, which Mailgate does not use.
        PasswordLoginRemoved = "PASSWORD_LOGIN_REMOVED",
        /// The user name is the word `apikey` and the password an API key.
        ApiKeyAsPassword = "API_KEY_AS_PASSWORD",
        /// SMTP credentials are generated per region in the console; new accounts are in
        /// the sandbox and may only send to verified addresses.
        SesCredentialsAndSandbox = "SES_CREDENTIALS_AND_SANDBOX",
        /// The sender domain or address must be verified with the provider first.
        VerifiedSenderRequired = "VERIFIED_SENDER_REQUIRED",
        /// Port 25 from outside the provider's network is blocked (OP25B); use 587 or 465.
        OutboundPort25Blocked = "OUTBOUND_PORT25_BLOCKED",
        /// The From address must be the mailbox's own address (or an alias of it).
        FromMustBeMailbox = "FROM_MUST_BE_MAILBOX",
    }
}

/// One provider: its preset and what discovery and the domain check match against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider {
    pub kind: ServerKind,
    /// The name people know it by (not translated).
    pub name: &'static str,
    /// Address domains this provider hosts (`gmail.com`); empty for services that send
    /// for any domain.
    pub address_domains: &'static [&'static str],
    /// Suffixes of MX host names that mean the domain's mail is at this provider
    /// (`.mail.protection.outlook.com`, or a whole name such as `aspmx.l.google.com`).
    pub mx_suffixes: &'static [&'static str],
    pub host: HostSpec,
    pub port: u16,
    pub encryption: Encryption,
    pub smtp_auth: bool,
    pub username: UsernameKind,
    pub limit: Option<SendLimit>,
    pub hints: &'static [ProviderHint],
    /// The SPF mechanism a sender domain adds to allow this provider (`include:_spf.google.com`).
    pub spf_include: Option<&'static str>,
    /// DKIM selectors this provider's setup publishes under `<selector>._domainkey.<domain>`.
    pub dkim_selectors: &'static [&'static str],
    /// Where the facts come from (ISPDB file, provider help page URL).
    pub source: &'static str,
}

impl Provider {
    /// The preset of a server kind (none for `CUSTOM`).
    pub fn of_kind(kind: ServerKind) -> Option<&'static Provider> {
        PROVIDERS.iter().find(|p| p.kind == kind)
    }

    /// The provider that hosts mail for this address domain (`gmail.com` → Gmail).
    pub fn for_address_domain(domain: &str) -> Option<&'static Provider> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        PROVIDERS
            .iter()
            .find(|p| p.address_domains.iter().any(|d| *d == domain))
    }

    /// The provider whose MX host names these are, if one is known.
    pub fn for_mx_host(mx: &str) -> Option<&'static Provider> {
        let mx = mx.trim_end_matches('.').to_ascii_lowercase();
        PROVIDERS.iter().find(|p| {
            p.mx_suffixes.iter().any(|s| {
                let s = s.trim_start_matches('.');
                mx == s || mx.strip_suffix(s).is_some_and(|rest| rest.ends_with('.'))
            })
        })
    }

    /// The provider whose SMTP host this is (fixed name, or a name of its template).
    pub fn for_smtp_host(host: &str) -> Option<&'static Provider> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        PROVIDERS.iter().find(|p| p.host.matches(&host))
    }

    /// The send interval that keeps under the published limit, if there is one.
    pub fn send_interval_ms(&self) -> Option<u64> {
        self.limit.map(SendLimit::send_interval_ms)
    }
}

impl HostSpec {
    /// Whether `host` (lower case) is this host, or fills this template with one label
    /// of letters, digits and hyphens.
    pub fn matches(&self, host: &str) -> bool {
        match *self {
            HostSpec::Fixed(name) => name.eq_ignore_ascii_case(host),
            HostSpec::Template { template, .. } => {
                let Some((prefix, rest)) = template.split_once('{') else {
                    return false;
                };
                let Some((_, suffix)) = rest.split_once('}') else {
                    return false;
                };
                host.len() > prefix.len() + suffix.len()
                    && host.starts_with(prefix)
                    && host.ends_with(suffix)
                    && host[prefix.len()..host.len() - suffix.len()]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }
        }
    }

    /// The template with its part filled in, e.g. `{account}.sakura.ne.jp` + `abc`.
    pub fn fill(&self, value: &str) -> String {
        match *self {
            HostSpec::Fixed(name) => name.to_owned(),
            HostSpec::Template { template, .. } => match (template.split_once('{'), template.split_once('}')) {
                (Some((prefix, _)), Some((_, suffix))) => format!("{prefix}{value}{suffix}"),
                _ => template.to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_kind_has_one_provider_with_a_source() {
        for kind in ServerKind::ALL {
            let n = PROVIDERS.iter().filter(|p| p.kind == kind).count();
            let want = usize::from(kind != ServerKind::Custom);
            assert_eq!(n, want, "{kind:?}");
        }
        for p in PROVIDERS {
            assert!(!p.source.trim().is_empty(), "{} names no source", p.name);
            assert!([25, 465, 587, 2525].contains(&p.port), "{}", p.name);
        }
    }

    #[test]
    fn no_address_domain_belongs_to_two_providers() {
        let mut seen = std::collections::HashSet::new();
        for p in PROVIDERS {
            for d in p.address_domains {
                assert_eq!(*d, d.to_ascii_lowercase(), "{d}");
                assert!(seen.insert(*d), "{d} is listed twice");
            }
        }
    }

    #[test]
    fn templates_have_one_part_and_accept_their_own_filling() {
        for p in PROVIDERS {
            if let HostSpec::Template { template, .. } = p.host {
                assert_eq!(template.matches('{').count(), 1, "{template}");
                assert_eq!(template.matches('}').count(), 1, "{template}");
                let filled = p.host.fill("abc1");
                assert!(p.host.matches(&filled), "{filled}");
                assert!(!p.host.matches(&p.host.fill("a.b")), "{template} takes one label only");
                assert!(!p.host.matches(&p.host.fill("")), "{template} needs its part");
                assert_eq!(Provider::for_smtp_host(&filled).map(|q| q.kind), Some(p.kind));
            }
        }
    }

    #[test]
    fn lookups_by_address_mx_and_smtp_host() {
        assert_eq!(
            Provider::for_address_domain("Gmail.com.").map(|p| p.kind),
            Some(ServerKind::Gmail)
        );
        assert_eq!(
            Provider::for_mx_host("alt1.aspmx.l.google.com.").map(|p| p.kind),
            Some(ServerKind::GoogleWorkspace)
        );
        assert_eq!(
            Provider::for_mx_host("example-jp.mail.protection.outlook.com").map(|p| p.kind),
            Some(ServerKind::Microsoft365)
        );
        // A suffix matches on a label boundary only.
        assert_eq!(Provider::for_mx_host("evilaspmx.l.google.com"), None);
        assert_eq!(Provider::for_mx_host("mx.example.jp"), None);
        assert_eq!(
            Provider::for_smtp_host("email-smtp.ap-northeast-1.amazonaws.com").map(|p| p.kind),
            Some(ServerKind::AmazonSes)
        );
    }

    #[test]
    fn the_interval_keeps_under_the_limit() {
        let limit = SendLimit {
            count: 30,
            period: LimitPeriod::Minute,
        };
        assert_eq!(limit.send_interval_ms(), 2000);
        let limit = SendLimit {
            count: 7,
            period: LimitPeriod::Minute,
        };
        // Rounded up: 7 sends 8572 ms apart take more than a minute.
        assert_eq!(limit.send_interval_ms(), 8572);
        assert_eq!(
            Provider::of_kind(ServerKind::Microsoft365).and_then(Provider::send_interval_ms),
            Some(2000)
        );
    }
}
