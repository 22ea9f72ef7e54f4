//! The provider table: one entry per preset of the settings form, with what discovery and the
//! sender-domain check match against. Every entry names its sources in `source`; the SMTP
//! facts come from Thunderbird's ISPDB (`thunderbird/autoconfig`, files under `ispdb/`) where
//! it has the provider, otherwise from the provider's help pages. A fact no source states is
//! left out (`None`, an empty slice) rather than guessed.
use super::{HostSpec, LimitPeriod, Provider, ProviderHint, SendLimit, TemplateInput, UsernameKind};
use crate::server::{Encryption, ServerKind};

pub const PROVIDERS: &[Provider] = &[
    // ISPDB lists 465/SSL; Google's page lists both 465 (SSL) and 587 (TLS), and 587 STARTTLS is
    // the form's preferred submission port. The 500 a day is Gmail's limit for personal accounts.
    Provider {
        kind: ServerKind::Gmail,
        name: "Gmail",
        address_domains: &["gmail.com", "googlemail.com"],
        mx_suffixes: &[],
        host: HostSpec::Fixed("smtp.gmail.com"),
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: Some(SendLimit {
            count: 500,
            period: LimitPeriod::Day,
        }),
        hints: &[ProviderHint::AppPassword, ProviderHint::FromMustBeMailbox],
        spf_include: Some("include:_spf.google.com"),
        dkim_selectors: &[],
        source: "ISPDB thunderbird/autoconfig ispdb/googlemail.com.xml; \
                 https://support.google.com/a/answer/176600 (smtp.gmail.com, 465 SSL or 587 TLS); \
                 https://support.google.com/mail/answer/22839 (sending limits); \
                 https://support.google.com/accounts/answer/185833 (app passwords); \
                 https://support.google.com/mail/answer/22370 (From: other addresses need \"Send mail as\"); \
                 https://support.google.com/a/answer/10684623 (SPF)",
    },
    // MX: the single `smtp.google.com` record (domains set up since 2023) and the older
    // ASPMX set (`aspmx.l.google.com`, `altN.aspmx.l.google.com`, `aspmxN.googlemail.com`).
    // The SMTP host is the same as Gmail's, so `for_smtp_host` answers Gmail for it.
    Provider {
        kind: ServerKind::GoogleWorkspace,
        name: "Google Workspace",
        address_domains: &[],
        mx_suffixes: &["smtp.google.com", "aspmx.l.google.com", "googlemail.com"],
        host: HostSpec::Fixed("smtp.gmail.com"),
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: Some(SendLimit {
            count: 2000,
            period: LimitPeriod::Day,
        }),
        hints: &[ProviderHint::AppPassword, ProviderHint::FromMustBeMailbox],
        spf_include: Some("include:_spf.google.com"),
        dkim_selectors: &["google"],
        source: "ISPDB thunderbird/autoconfig ispdb/googlemail.com.xml (google.com as MX for Google Apps); \
                 https://support.google.com/a/answer/176600 (SMTP); \
                 https://support.google.com/a/answer/166852 (2,000 messages a day, 500 for trials); \
                 https://support.google.com/a/answer/174125 (MX values); \
                 https://support.google.com/a/answer/10684623 (SPF); \
                 https://support.google.com/a/answer/174124 (DKIM, default selector google)",
    },
    // Exchange Online allows 10,000 recipients a day and 30 messages a minute per mailbox; the
    // limit here is the per-minute one (the daily one counts recipients, not messages).
    Provider {
        kind: ServerKind::Microsoft365,
        name: "Microsoft 365",
        address_domains: &[],
        mx_suffixes: &["mail.protection.outlook.com"],
        host: HostSpec::Fixed("smtp.office365.com"),
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: Some(SendLimit {
            count: 30,
            period: LimitPeriod::Minute,
        }),
        hints: &[
            ProviderHint::SmtpAuthPerMailbox,
            ProviderHint::BasicAuthRetiring,
            ProviderHint::FromMustBeMailbox,
        ],
        spf_include: Some("include:spf.protection.outlook.com"),
        dkim_selectors: &["selector1", "selector2"],
        source: "ISPDB thunderbird/autoconfig ispdb/office365.com.xml; \
                 https://learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365; \
                 https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission; \
                 https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits#sending-limits-1; \
                 Microsoft 365 message center MC786329 (SMTP AUTH Basic auth retirement, 550 5.7.30); \
                 https://learn.microsoft.com/defender-office-365/email-authentication-spf-configure; \
                 https://learn.microsoft.com/defender-office-365/email-authentication-dkim-configure",
    },
    // Microsoft removed Basic authentication (user name and password) from Outlook.com accounts
    // on 16 September 2024; the server now takes OAuth2 only (ISPDB lists OAuth2 alone), so a
    // password login is refused. Microsoft publishes a daily limit (5,000 recipients) only for
    // Microsoft 365 subscribers and says it is lower for others, without a number: no limit here.
    Provider {
        kind: ServerKind::OutlookCom,
        name: "Outlook.com",
        address_domains: &[
            "hotmail.com",
            "live.com",
            "msn.com",
            "outlook.com",
            "windowslive.com",
            "outlook.at",
            "outlook.be",
            "outlook.cl",
            "outlook.cz",
            "outlook.de",
            "outlook.dk",
            "outlook.es",
            "outlook.fr",
            "outlook.hu",
            "outlook.ie",
            "outlook.in",
            "outlook.it",
            "outlook.jp",
            "outlook.kr",
            "outlook.lv",
            "outlook.my",
            "outlook.ph",
            "outlook.pt",
            "outlook.sa",
            "outlook.sg",
            "outlook.sk",
            "outlook.co.id",
            "outlook.co.il",
            "outlook.co.th",
            "outlook.com.ar",
            "outlook.com.au",
            "outlook.com.br",
            "outlook.com.gr",
            "outlook.com.tr",
            "outlook.com.vn",
            "hotmail.be",
            "hotmail.ca",
            "hotmail.cl",
            "hotmail.cz",
            "hotmail.de",
            "hotmail.dk",
            "hotmail.es",
            "hotmail.fi",
            "hotmail.fr",
            "hotmail.gr",
            "hotmail.hu",
            "hotmail.it",
            "hotmail.lt",
            "hotmail.lv",
            "hotmail.my",
            "hotmail.nl",
            "hotmail.no",
            "hotmail.ph",
            "hotmail.rs",
            "hotmail.se",
            "hotmail.sg",
            "hotmail.sk",
            "hotmail.co.id",
            "hotmail.co.il",
            "hotmail.co.in",
            "hotmail.co.jp",
            "hotmail.co.kr",
            "hotmail.co.th",
            "hotmail.co.uk",
            "hotmail.co.za",
            "hotmail.com.ar",
            "hotmail.com.au",
            "hotmail.com.br",
            "hotmail.com.hk",
            "hotmail.com.tr",
            "hotmail.com.tw",
            "hotmail.com.vn",
            "live.at",
            "live.be",
            "live.ca",
            "live.cl",
            "live.cn",
            "live.de",
            "live.dk",
            "live.fi",
            "live.fr",
            "live.hk",
            "live.ie",
            "live.in",
            "live.it",
            "live.jp",
            "live.nl",
            "live.no",
            "live.ru",
            "live.se",
            "live.co.jp",
            "live.co.kr",
            "live.co.uk",
            "live.co.za",
            "live.com.ar",
            "live.com.au",
            "live.com.mx",
            "live.com.my",
            "live.com.ph",
            "live.com.pt",
            "live.com.sg",
            "livemail.tw",
        ],
        mx_suffixes: &["olc.protection.outlook.com"],
        host: HostSpec::Fixed("smtp-mail.outlook.com"),
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: None,
        hints: &[ProviderHint::PasswordLoginRemoved],
        spf_include: None,
        dkim_selectors: &[],
        source: "ISPDB thunderbird/autoconfig ispdb/hotmail.com.xml (domains, MX olc.protection.outlook.com, \
                 SMTP with OAuth2); \
                 https://support.microsoft.com/office/pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040; \
                 https://support.microsoft.com/office/sending-limits-in-outlook-com-279ee200-594c-40f0-9ec8-bb6af7735c2e; \
                 Microsoft's notice of Basic authentication removal for Outlook.com accounts (16 September 2024)",
    },
    Provider {
        kind: ServerKind::YahooJapan,
        name: "Yahoo! JAPAN",
        address_domains: &["yahoo.co.jp"],
        mx_suffixes: &[],
        host: HostSpec::Fixed("smtp.mail.yahoo.co.jp"),
        port: 465,
        encryption: Encryption::Ssl,
        smtp_auth: true,
        username: UsernameKind::LocalPart,
        limit: None,
        hints: &[],
        spf_include: None,
        dkim_selectors: &[],
        source: "ISPDB thunderbird/autoconfig ispdb/yahoo.co.jp.xml",
    },
    // Apple's page: 1,000 messages and 1,000 recipients a day.
    Provider {
        kind: ServerKind::ICloud,
        name: "iCloud Mail",
        address_domains: &["icloud.com", "me.com", "mac.com"],
        mx_suffixes: &[],
        host: HostSpec::Fixed("smtp.mail.me.com"),
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: Some(SendLimit {
            count: 1000,
            period: LimitPeriod::Day,
        }),
        hints: &[ProviderHint::AppPassword],
        spf_include: None,
        dkim_selectors: &[],
        source: "ISPDB thunderbird/autoconfig ispdb/me.com.xml; \
                 https://support.apple.com/HT202304 (mail server settings, app-specific password); \
                 https://support.apple.com/102198 (sending limits)",
    },
    // The sending quota and rate are per AWS account and region, so no fixed limit. Easy DKIM
    // publishes generated tokens as selectors, so there are no fixed selectors either.
    Provider {
        kind: ServerKind::AmazonSes,
        name: "Amazon SES",
        address_domains: &[],
        mx_suffixes: &[],
        host: HostSpec::Template {
            template: "email-smtp.{region}.amazonaws.com",
            input: TemplateInput::Region,
        },
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::SmtpCredentials,
        limit: None,
        hints: &[
            ProviderHint::SesCredentialsAndSandbox,
            ProviderHint::VerifiedSenderRequired,
        ],
        spf_include: Some("include:amazonses.com"),
        dkim_selectors: &[],
        source: "https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html (endpoints, 587 STARTTLS); \
                 https://docs.aws.amazon.com/ses/latest/dg/smtp-credentials.html; \
                 https://docs.aws.amazon.com/ses/latest/dg/request-production-access.html (sandbox); \
                 https://docs.aws.amazon.com/ses/latest/dg/mail-from.html (SPF include:amazonses.com)",
    },
    // The quota depends on the SendGrid plan: no fixed limit.
    Provider {
        kind: ServerKind::SendGrid,
        name: "SendGrid",
        address_domains: &[],
        mx_suffixes: &[],
        host: HostSpec::Fixed("smtp.sendgrid.net"),
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::ApiKey,
        limit: None,
        hints: &[ProviderHint::ApiKeyAsPassword, ProviderHint::VerifiedSenderRequired],
        spf_include: Some("include:sendgrid.net"),
        dkim_selectors: &["s1", "s2"],
        source: "https://www.twilio.com/docs/sendgrid/for-developers/sending-email/integrating-with-the-smtp-api \
                 (smtp.sendgrid.net, 587, user apikey); \
                 https://www.twilio.com/docs/sendgrid/for-developers/sending-email/sender-identity; \
                 https://www.twilio.com/docs/sendgrid/ui/account-and-settings/how-to-set-up-domain-authentication \
                 (s1/s2._domainkey, include:sendgrid.net)",
    },
    // Xserver's spec page gave 1,500 messages an hour and 15,000 a day (as quoted in 2016); the
    // limit is the hourly one, as for Microsoft 365 the shorter window. SPF and DKIM are the
    // records Xserver sets by default (`include:spf.sender.xserver.jp`, `default._domainkey`), as
    // seen in many published zones; the MX of an Xserver domain is the domain itself, so no suffix.
    Provider {
        kind: ServerKind::Xserver,
        name: "Xserver",
        address_domains: &[],
        mx_suffixes: &[],
        host: HostSpec::Template {
            template: "sv{server}.xserver.jp",
            input: TemplateInput::Server,
        },
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: Some(SendLimit {
            count: 1500,
            period: LimitPeriod::Hour,
        }),
        hints: &[],
        spf_include: Some("include:spf.sender.xserver.jp"),
        dkim_selectors: &["default"],
        source: "https://www.xserver.ne.jp/manual/man_mail_setting.php (SMTP sv***.xserver.jp, 587 STARTTLS \
                 or 465 SSL/TLS, user = whole address, as quoted by threedplus.co.jp and dm2.co.jp); \
                 https://www.xserver.ne.jp/manual/man_mail_spec.php (1,500/hour, 15,000/day, as quoted by \
                 ezhp.jp/web/1466944804.html, 2016); \
                 https://www.xserver.ne.jp/support/faq/faq_service_mail_trouble.php (SMTP AUTH); \
                 SPF/DKIM: Xserver default records in public zone files on GitHub, not an Xserver page",
    },
    // No Sakura page on sending limits, SPF or MX names was found, so none are given.
    Provider {
        kind: ServerKind::Sakura,
        name: "Sakura Internet",
        address_domains: &[],
        mx_suffixes: &[],
        host: HostSpec::Template {
            template: "{account}.sakura.ne.jp",
            input: TemplateInput::Account,
        },
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: None,
        hints: &[],
        spf_include: None,
        dkim_selectors: &[],
        source: "No Sakura help page in the corpus; xxx.sakura.ne.jp, 587 TLS, SMTP AUTH from \
                 https://gist.github.com/yuheiy/cc34cf0bc5eb1d43b307542e1a705b9b; SMTP-AUTH with the whole \
                 address as account from https://dm2.co.jp/blog/3078",
    },
    // Lolipop's limits depend on the plan (100 to 1,000 an hour, 1,000 to 10,000 a day, 50 a day
    // while on trial), so no single limit is given.
    Provider {
        kind: ServerKind::Lolipop,
        name: "Lolipop!",
        address_domains: &[],
        mx_suffixes: &[],
        host: HostSpec::Fixed("smtp.lolipop.jp"),
        port: 465,
        encryption: Encryption::Ssl,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: None,
        hints: &[],
        spf_include: None,
        dkim_selectors: &[],
        source: "No Lolipop mail-client page in the corpus; smtp.lolipop.jp, 465 SSL, SMTP AUTH with the whole \
                 address from public client configurations on GitHub; https://lolipop.jp/terms/prohibition \
                 (per-plan sending limits)",
    },
    Provider {
        kind: ServerKind::ConohaWing,
        name: "ConoHa WING",
        address_domains: &[],
        mx_suffixes: &[],
        host: HostSpec::Template {
            template: "mail{server}.conoha.ne.jp",
            input: TemplateInput::Server,
        },
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: None,
        hints: &[],
        spf_include: None,
        dkim_selectors: &[],
        source: "No ConoHa help page in the corpus; mailNN.conoha.ne.jp, 587 STARTTLS, whole address as user \
                 from https://gist.github.com/sutonea/398df1499d5903b2ca36ea3598384bb5",
    },
    // ISPDB lists ocn.ne.jp and ocn.ad.jp; OCN's OP25B page names @dream.com addresses as OCN
    // mail too. Most OCN addresses are on a subdomain (`user@xx.ocn.ne.jp`).
    Provider {
        kind: ServerKind::Ocn,
        name: "OCN",
        address_domains: &["ocn.ne.jp", "ocn.ad.jp", "dream.com"],
        mx_suffixes: &[],
        host: HostSpec::Fixed("smtp.ocn.ne.jp"),
        port: 465,
        encryption: Encryption::Ssl,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: None,
        hints: &[ProviderHint::OutboundPort25Blocked],
        spf_include: None,
        dkim_selectors: &[],
        source: "ISPDB thunderbird/autoconfig ispdb/ocn.ne.jp.xml; \
                 https://service.ocn.ne.jp/option/mail/ocnmail/meiwaku/op25b.html (OP25B, SMTPS-AUTH on 465, \
                 @xx.ocn.ne.jp and @dream.com addresses)",
    },
    // ISPDB notes about 1,400 Biglobe domains, all with bgmgate1.biglobe.ne.jp as MX.
    Provider {
        kind: ServerKind::Biglobe,
        name: "BIGLOBE",
        address_domains: &["biglobe.ne.jp"],
        mx_suffixes: &["bgmgate1.biglobe.ne.jp"],
        host: HostSpec::Fixed("mail.biglobe.ne.jp"),
        port: 465,
        encryption: Encryption::Ssl,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: None,
        hints: &[],
        spf_include: None,
        dkim_selectors: &[],
        source: "ISPDB thunderbird/autoconfig ispdb/biglobe.ne.jp.xml",
    },
    // So-net addresses are `user@xx1.so-net.ne.jp` (a subdomain So-net assigns); only the
    // domain itself is listed.
    Provider {
        kind: ServerKind::SoNet,
        name: "So-net",
        address_domains: &["so-net.ne.jp"],
        mx_suffixes: &[],
        host: HostSpec::Fixed("mail.so-net.ne.jp"),
        port: 587,
        encryption: Encryption::StartTls,
        smtp_auth: true,
        username: UsernameKind::Address,
        limit: None,
        hints: &[ProviderHint::OutboundPort25Blocked],
        spf_include: None,
        dkim_selectors: &[],
        source: "Not in ISPDB; mail.so-net.ne.jp, 587 STARTTLS, whole address as user from public client \
                 configurations on GitHub (one citing https://support.so-net.ne.jp/fa/faq/web/knowledge1804.html); \
                 https://www.nuro.jp/hikari/option/mail/basic/ (address form user@xx1.so-net.ne.jp); \
                 http://www.so-net.ne.jp/option/mail/op25b/faq/faq.html (OP25B, archived)",
    },
];
