//! How a send can fail, as codes: where in the conversation it stopped, what went wrong,
//! and the plain-language fix to suggest. Plain enums with no dependency, so that both
//! what is sent (`mail`) and what is remembered about a tenant's settings (`health`) can
//! name them.

crate::coded_enum! {
    /// Where in the conversation a send stopped.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SendStage {
        Resolve = "RESOLVE",
        Connect = "CONNECT",
        Greeting = "GREETING",
        Tls = "TLS",
        Ehlo = "EHLO",
        PopLogin = "POP_LOGIN",
        Auth = "AUTH",
        MailFrom = "MAIL_FROM",
        RcptTo = "RCPT_TO",
        Data = "DATA",
        Timeout = "TIMEOUT",
    }
}

/// What went wrong, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The host name does not resolve.
    HostNotFound,
    /// The host resolves to a loopback, private, link-local, … address.
    ForbiddenAddress,
    /// The port is not open to tenants.
    PortNotAllowed,
    ConnectionRefused,
    /// No answer within the deadline.
    TimedOut,
    /// A TLS handshake met a plain-text server, or the reverse.
    TlsModeMismatch,
    /// The certificate is not valid for the host name.
    CertificateNameMismatch,
    /// The certificate is not signed by a trusted authority (or expired).
    CertificateUntrusted,
    /// Encryption is STARTTLS but the server does not offer it.
    StartTlsNotOffered,
    /// The server offers no authentication we can use (or none at all).
    AuthNotOffered,
    /// The server answered with an SMTP error reply (see code and message).
    Rejected,
    /// The POP3 login before SMTP failed.
    PopLoginFailed,
    /// The connection broke.
    Network,
    /// The server broke the protocol in a way that could harm us: a reply line or reply
    /// longer than SMTP allows (or a POP line over 512 octets), or plain text sent after
    /// its STARTTLS reply. The session is ended at once.
    ProtocolViolation,
    /// The message could not be built from the stored data.
    InvalidMessage,
    /// The tenant's saved settings cannot be read back; nothing was sent. Passes once
    /// they are saved again or cleared.
    SettingsUnreadable,
    /// Every connection this process may open to the destination host (across tenants)
    /// is in use, and none came free in time; nothing was sent. Tried again later like a
    /// "slow down" reply.
    HostBusy,
    /// An address of the mail needs SMTPUTF8 (non-ASCII before the @) and the server does
    /// not offer it; nothing was sent. Permanent for this mail.
    SmtpUtf8NotOffered,
    /// A sign-in's access token was refused by the server (SMTP `535 5.7.3` after
    /// XOAUTH2, Gmail's `334` challenge, HTTP `401`), even after a refresh.
    TokenRefused,
    /// The sign-in is gone (revoked, expired, password changed, consent withdrawn): an
    /// admin must sign in again.
    SignInRevoked,
    /// The provider refuses Mailgate's own client (client secret, app registration) or
    /// the provider is no longer configured: the operator's to fix. Tried again later,
    /// never counted against the tenant's settings.
    SignInMisconfigured,
    /// No token could be had for now (the provider throttled or did not answer).
    SignInUnavailable,
}

crate::coded_enum! {
    /// A plain-language fix for a failed test mail.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Hint {
        WrongCredentials = "WRONG_CREDENTIALS",
        GmailAppPassword = "GMAIL_APP_PASSWORD",
        Microsoft365SmtpAuthDisabled = "M365_SMTP_AUTH_DISABLED",
        SenderNotAllowed = "SENDER_NOT_ALLOWED",
        /// The server refused to relay for settings with neither SMTP AUTH nor POP before
        /// SMTP: it wants a login first (POP before SMTP, or SMTP AUTH).
        PopBeforeSmtpSuggested = "POP_BEFORE_SMTP_SUGGESTED",
        RecipientRejected = "RECIPIENT_REJECTED",
        TlsModeMismatch = "TLS_MODE_MISMATCH",
        StartTlsNotOffered = "STARTTLS_NOT_OFFERED",
        CertificateNameMismatch = "CERTIFICATE_NAME_MISMATCH",
        CertificateUntrusted = "CERTIFICATE_UNTRUSTED",
        ConnectionRefused = "CONNECTION_REFUSED",
        TimedOut = "TIMED_OUT",
        PopLoginFailed = "POP_LOGIN_FAILED",
        HostNotFound = "HOST_NOT_FOUND",
        ForbiddenAddress = "FORBIDDEN_ADDRESS",
        PortNotAllowed = "PORT_NOT_ALLOWED",
        AuthNotOffered = "AUTH_NOT_OFFERED",
        TemporaryFailure = "TEMPORARY_FAILURE",
        /// The server does not speak SMTP (or POP3) as it must.
        ProtocolViolation = "PROTOCOL_VIOLATION",
        /// An address with non-ASCII characters before the @ needs SMTPUTF8, which the
        /// server does not offer.
        SmtpUtf8NotSupported = "SMTPUTF8_NOT_SUPPORTED",
        /// The sign-in was revoked or expired: reconnect.
        ReconnectMailbox = "RECONNECT_MAILBOX",
        /// The server refused the sign-in's token.
        TokenRefused = "TOKEN_REFUSED",
        /// The provider refuses the platform's sign-in app (the operator's setup): the
        /// mail waits and is tried again.
        SignInSetup = "SIGN_IN_SETUP",
        /// The provider limited how fast this mailbox may send (or did not answer): it
        /// waits and tries again.
        ProviderThrottled = "PROVIDER_THROTTLED",
        Other = "OTHER",
    }
}
