//! One SMTP conversation, step by step, each step under a deadline of our own and
//! labelled with its stage so a failure says where it happened. The TCP stream is
//! opened here (to an address checked by `guard`, with `TCP_NODELAY`, so the final
//! `.` line does not wait for a delayed ACK), encrypted here (implicit TLS, or our own
//! STARTTLS exchange, which refuses plain text sent after the server's STARTTLS reply),
//! and handed to lettre behind [`CappedReplies`], so no reply can grow without bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::address::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Noop, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::redact::Secrets;
use domain::settings::Encryption;

use crate::tls::{TlsMaterial, classify_tls};
use crate::wire::{CappedReplies, Prefixed, ProtocolViolation, RepliesSeen, Reply, read_reply, violation};

/// Deadlines for the steps of a conversation.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// DNS, TCP connect, TLS handshake, greeting: each.
    pub connect: Duration,
    /// Each command and its reply.
    pub command: Duration,
    /// The message body and the final reply.
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(30),
            data: Duration::from_secs(60),
        }
    }
}

/// Where and how to talk SMTP.
#[derive(Clone)]
pub struct ServerParams {
    /// The name certificates are checked against (and resolved, for tenants' hosts).
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    pub credentials: Option<(String, SecretString)>,
    /// How `credentials` authenticate: a password (PLAIN, else LOGIN) or an OAuth
    /// access token (XOAUTH2).
    pub mechanism: AuthMechanism,
    pub ehlo: ClientId,
}

/// What the secret of [`ServerParams::credentials`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMechanism {
    /// A password: AUTH PLAIN, else LOGIN.
    #[default]
    Password,
    /// An OAuth 2 access token: AUTH XOAUTH2 (`user=…^Aauth=Bearer …^A^A`).
    Xoauth2,
}

/// lettre's words when a server answers XOAUTH2 with a `334` challenge instead of a
/// refusal, as Gmail does for a bad token (facts §2, §4): the token was refused.
const XOAUTH2_CHALLENGE: &str = "This mechanism does not expect a challenge";

impl std::fmt::Debug for ServerParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("encryption", &self.encryption)
            .field("auth", &self.credentials.is_some())
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// An open, greeted (and, if configured, encrypted and authenticated) connection.
pub struct Session {
    conn: AsyncSmtpConnection,
    pub last_used: Instant,
    /// A step timed out or broke the conversation: what the server saw last is unknown,
    /// so nothing more (not even QUIT) is said on it.
    broken: bool,
    /// The server offered PIPELINING (RFC 2920): a send's MAIL FROM, RCPT TO and DATA go
    /// in one write ([`Session::deliver`]).
    pipelining: bool,
    /// Every form of the credentials sent on this connection: hidden from each reply
    /// that becomes a failure or an answer (a server may echo them at any later step).
    secrets: Secrets,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("last_used", &self.last_used)
            .finish_non_exhaustive()
    }
}

/// A TLS stream lettre can drive (implicit TLS is done here, not by lettre, so that the
/// stream is ours: checked address, `TCP_NODELAY`).
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// Our own STARTTLS on a fresh connection: greeting, EHLO, STARTTLS. Returns the
/// greeting and the connection, ready for the TLS handshake. Nothing the server sends
/// after its reply to STARTTLS may be read as a reply after the upgrade (the "STARTTLS
/// response injection" class): bytes already waiting then end the session. Never sends
/// credentials or mail: when STARTTLS is not offered, it says QUIT and fails.
async fn starttls(
    mut tcp: TcpStream,
    params: &ServerParams,
    t: &Timeouts,
    secrets: &Secrets,
) -> Result<(Reply, TcpStream), SendFailure> {
    let mut pending = Vec::new();
    let refused = |stage: SendStage, reply: &Reply| refused(stage, reply, secrets);
    let greeting = step(SendStage::Greeting, t.connect, async {
        read_reply(&mut tcp, &mut pending)
            .await
            .map_err(io_failure(SendStage::Greeting))
    })
    .await?;
    if greeting.code != 220 {
        say_quit(&mut tcp, &mut pending, t.command).await;
        return Err(refused(SendStage::Greeting, &greeting));
    }
    let ehlo = step(SendStage::Ehlo, t.command, async {
        tcp.write_all(format!("EHLO {}\r\n", params.ehlo).as_bytes())
            .await
            .map_err(io_failure(SendStage::Ehlo))?;
        read_reply(&mut tcp, &mut pending)
            .await
            .map_err(io_failure(SendStage::Ehlo))
    })
    .await?;
    if ehlo.code != 250 {
        say_quit(&mut tcp, &mut pending, t.command).await;
        return Err(refused(SendStage::Ehlo, &ehlo));
    }
    let offered = ehlo.lines.iter().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        // Required: never send credentials or mail over a connection that stayed plain.
        say_quit(&mut tcp, &mut pending, t.command).await;
        return Err(SendFailure::new(SendStage::Tls, FailureKind::StartTlsNotOffered));
    }
    let reply = step(SendStage::Tls, t.command, async {
        tcp.write_all(b"STARTTLS\r\n")
            .await
            .map_err(io_failure(SendStage::Tls))?;
        read_reply(&mut tcp, &mut pending)
            .await
            .map_err(io_failure(SendStage::Tls))
    })
    .await?;
    if reply.code != 220 {
        // Refused STARTTLS: the plain conversation still stands.
        say_quit(&mut tcp, &mut pending, t.command).await;
        return Err(refused(SendStage::Tls, &reply));
    }
    if !pending.is_empty() {
        tracing::warn!(
            host = %params.host,
            violation = %ProtocolViolation::DataAfterStartTls,
            "ending the session"
        );
        return Err(SendFailure::new(SendStage::Tls, FailureKind::ProtocolViolation));
    }
    Ok((greeting, tcp))
}

/// A failure reading or writing on the conversation before lettre has it.
fn io_failure(stage: SendStage) -> impl Fn(std::io::Error) -> SendFailure {
    move |e: std::io::Error| {
        if violation(&e).is_some() {
            SendFailure::new(stage, FailureKind::ProtocolViolation)
        } else {
            SendFailure::new(stage, FailureKind::Network)
        }
    }
}

/// A refusal read before lettre has the conversation, its text with the secrets removed.
fn refused(stage: SendStage, reply: &Reply, secrets: &Secrets) -> SendFailure {
    let message = secrets.redact(&reply.lines.join(" "));
    SendFailure {
        smtp_code: Some(reply.code),
        enhanced_code: enhanced_code(&message),
        server_message: Some(message),
        ..SendFailure::new(stage, FailureKind::Rejected)
    }
}

/// The server's greeting, read here rather than by lettre: a server that refuses the
/// session in its greeting (`554`, RFC 5321 §3.1) waits for our QUIT, and gets it (lettre
/// would only drop the connection). An accepting greeting is handed on to lettre, which
/// begins by reading one, with whatever the server sent after it.
async fn greeted<S>(mut stream: S, t: &Timeouts, secrets: &Secrets) -> Result<Prefixed<S>, SendFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut pending = Vec::new();
    let greeting = step(SendStage::Greeting, t.connect, async {
        read_reply(&mut stream, &mut pending)
            .await
            .map_err(|e| match classify_tls(&e) {
                // Implicit TLS: an alert on the first read is the TLS stage's, as before.
                Some(kind) => SendFailure::new(SendStage::Tls, kind),
                None => io_failure(SendStage::Greeting)(e),
            })
    })
    .await?;
    match greeting.code {
        // lettre took any positive greeting; so do we.
        200..=399 => {}
        // A refusal: the server waits for QUIT (briefly: the host place is held meanwhile).
        400..=599 => {
            say_quit(&mut stream, &mut pending, t.connect).await;
            return Err(refused(SendStage::Greeting, &greeting, secrets));
        }
        _ => return Err(SendFailure::new(SendStage::Greeting, FailureKind::ProtocolViolation)),
    }
    let mut replay = format!("220 {}\r\n", greeting.lines.first().map_or("", String::as_str)).into_bytes();
    replay.extend_from_slice(&pending);
    Ok(Prefixed::new(replay, stream))
}

/// QUIT on a conversation that still stands, and its reply read (so the server has it
/// before the connection closes); best effort, within the command deadline.
async fn say_quit<S>(stream: &mut S, pending: &mut Vec<u8>, limit: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bye = async {
        stream.write_all(b"QUIT\r\n").await?;
        stream.flush().await?;
        read_reply(stream, pending).await
    };
    if !matches!(tokio::time::timeout(limit, bye).await, Ok(Ok(_))) {
        tracing::debug!("QUIT went unanswered");
    }
}

/// Whether a failure leaves the conversation in an unknown state (no reply came, or not
/// one that could be read): such a session cannot even say QUIT.
fn breaks(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::TimedOut
            | FailureKind::Network
            | FailureKind::ProtocolViolation
            | FailureKind::TlsModeMismatch
            | FailureKind::CertificateNameMismatch
            | FailureKind::CertificateUntrusted
    )
}

/// Runs a step under its deadline.
async fn step<T>(
    stage: SendStage,
    deadline: Duration,
    fut: impl Future<Output = Result<T, SendFailure>>,
) -> Result<T, SendFailure> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(SendFailure::new(stage, FailureKind::TimedOut)),
    }
}

/// Splits `5.7.8 Authentication failed` into the enhanced code and the text.
fn enhanced_code(message: &str) -> Option<String> {
    let first = message.split_whitespace().next()?;
    let parts: Vec<&str> = first.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
    ok.then(|| first.to_owned())
}

/// Turns a lettre error at `stage` into a failure, with the server's reply redacted: the
/// one place a server's refusal becomes words we show, store, post or log.
pub fn failure(stage: SendStage, e: &lettre::transport::smtp::Error, secrets: &Secrets) -> SendFailure {
    if let Some(code) = e.status() {
        let message = std::error::Error::source(e).map(|s| secrets.redact(&s.to_string()));
        return SendFailure {
            smtp_code: Some(u16::from(code)),
            enhanced_code: message.as_deref().and_then(enhanced_code),
            server_message: message,
            ..SendFailure::new(stage, FailureKind::Rejected)
        };
    }
    if e.is_timeout() {
        return SendFailure::new(stage, FailureKind::TimedOut);
    }
    if violation(e).is_some() {
        return SendFailure::new(stage, FailureKind::ProtocolViolation);
    }
    if let Some(kind) = classify_tls(e) {
        return SendFailure::new(SendStage::Tls, kind);
    }
    // What did not parse as an SMTP reply is another service's bytes: never echoed (a
    // tenant could read banners of internal services through Mailgate).
    if e.is_response() {
        return SendFailure::new(stage, FailureKind::ProtocolViolation);
    }
    let text = e.to_string();
    if text.contains("STARTTLS is not supported") {
        return SendFailure::new(SendStage::Tls, FailureKind::StartTlsNotOffered);
    }
    if text.contains("No compatible authentication mechanism") {
        return SendFailure::new(SendStage::Auth, FailureKind::AuthNotOffered);
    }
    // A library's words (which may quote what the other side sent) are not a server's
    // reply: only the kind of failure is reported; the log has the detail.
    tracing::debug!(stage = stage.code(), error = %secrets.redact(&text), "SMTP session failed");
    SendFailure::new(stage, FailureKind::Network)
}

/// Every form in which `params`' credentials go over the wire (AUTH PLAIN or LOGIN).
fn secrets_of(params: &ServerParams) -> Secrets {
    match (&params.credentials, params.mechanism) {
        (Some((user, password)), AuthMechanism::Password) => {
            Secrets::new().password_login(user, password.expose_secret())
        }
        (Some((user, token)), AuthMechanism::Xoauth2) => Secrets::new().xoauth2(user, token.expose_secret()),
        (None, _) => Secrets::new(),
    }
}

/// Connects to the first reachable address and runs greeting, TLS, EHLO and AUTH.
pub async fn open(
    params: &ServerParams,
    addrs: &[SocketAddr],
    tls: &TlsMaterial,
    t: &Timeouts,
) -> Result<Session, SendFailure> {
    // A bearer token is never sent over a plain connection (saves refuse it too).
    if params.mechanism == AuthMechanism::Xoauth2 && params.encryption == Encryption::None {
        return Err(SendFailure::new(SendStage::Tls, FailureKind::StartTlsNotOffered));
    }
    let secrets = secrets_of(params);
    let mut last = SendFailure::new(SendStage::Connect, FailureKind::ConnectionRefused);
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = SendFailure::new(SendStage::Connect, FailureKind::ConnectionRefused);
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e.kind(), "connecting failed");
                last = SendFailure::new(SendStage::Connect, FailureKind::Network);
            }
            Err(_) => last = SendFailure::new(SendStage::Connect, FailureKind::TimedOut),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);

    let tls_failure = |e: std::io::Error| {
        let kind = classify_tls(&e).unwrap_or(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FailureKind::TlsModeMismatch
        } else {
            FailureKind::Network
        });
        SendFailure::new(SendStage::Tls, kind)
    };
    // Every reply lettre reads passes the caps; `seen` tells the greeting from later, and
    // keeps whether EHLO offered PIPELINING.
    let seen = Arc::new(RepliesSeen::default());
    let stream: Box<dyn AsyncTokioStream> = match params.encryption {
        Encryption::Ssl => {
            let tls_stream = step(SendStage::Tls, t.connect, async {
                tls.connect(&params.host, tcp).await.map_err(tls_failure)
            })
            .await?;
            let greeted = greeted(ImplicitTls(tls_stream), t, &secrets).await?;
            Box::new(CappedReplies::new(greeted, seen.clone()))
        }
        Encryption::StartTls => {
            let (greeting, tcp) = starttls(tcp, params, t, &secrets).await?;
            let tls_stream = step(SendStage::Tls, t.connect, async {
                tls.connect(&params.host, tcp).await.map_err(tls_failure)
            })
            .await?;
            // lettre begins by reading a greeting: it gets the one the server gave before
            // the upgrade, then says EHLO over TLS.
            let greeting = format!("220 {}\r\n", greeting.lines.first().map_or("", String::as_str));
            Box::new(CappedReplies::new(
                Prefixed::new(greeting.into_bytes(), ImplicitTls(tls_stream)),
                seen.clone(),
            ))
        }
        Encryption::None => Box::new(CappedReplies::new(greeted(tcp, t, &secrets).await?, seen.clone())),
    };

    let conn = step(SendStage::Greeting, t.connect, async {
        AsyncSmtpConnection::connect_with_transport(stream, &params.ehlo)
            .await
            .map_err(|e| {
                let mut f = failure(SendStage::Greeting, &e, &secrets);
                // A reply to EHLO (not the greeting) names the EHLO stage.
                let after_greeting = seen.count() >= 1;
                if (f.kind == FailureKind::Rejected
                    && f.smtp_code
                        .is_some_and(|c| c == 500 || c == 501 || c == 502 || c == 504))
                    || (f.kind == FailureKind::ProtocolViolation && after_greeting)
                {
                    f.stage = SendStage::Ehlo;
                }
                f
            })
    })
    .await?;

    let mut session = Session {
        conn,
        last_used: Instant::now(),
        broken: false,
        pipelining: seen.pipelining(),
        secrets,
    };
    match (&params.credentials, params.mechanism) {
        (Some((user, password)), AuthMechanism::Password) => session.authenticate(user, password, t).await?,
        (Some((user, token)), AuthMechanism::Xoauth2) => session.authenticate_xoauth2(user, token, t).await?,
        (None, _) => {}
    }
    Ok(session)
}

impl Session {
    /// AUTH (PLAIN, else LOGIN), once. A refusal (or no method to try) ends the session
    /// politely (QUIT) when it still stands; the caller drops it either way.
    pub async fn authenticate(&mut self, user: &str, password: &SecretString, t: &Timeouts) -> Result<(), SendFailure> {
        self.secrets =
            std::mem::take(&mut self.secrets).merge(&Secrets::new().password_login(user, password.expose_secret()));
        let secrets = &self.secrets;
        let credentials = Credentials::new(user.to_owned(), password.expose_secret().to_owned());
        let conn = &mut self.conn;
        let authenticated = step(SendStage::Auth, t.command, async {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(|e| failure(SendStage::Auth, &e, secrets))
        })
        .await;
        if let Err(f) = authenticated {
            // Refused, but the session still stands: say goodbye rather than vanish.
            self.note(&f);
            self.goodbye(t).await;
            return Err(f);
        }
        Ok(())
    }

    /// AUTH XOAUTH2 with an access token, once. A token the server refuses is a
    /// [`FailureKind::TokenRefused`] at the AUTH stage whether the server said `535` (Microsoft's
    /// `5.7.3`) or sent Gmail's `334` challenge, so the caller can refresh and try once more.
    pub async fn authenticate_xoauth2(
        &mut self,
        user: &str,
        token: &SecretString,
        t: &Timeouts,
    ) -> Result<(), SendFailure> {
        self.secrets = std::mem::take(&mut self.secrets).merge(&Secrets::new().xoauth2(user, token.expose_secret()));
        let secrets = &self.secrets;
        let credentials = Credentials::new(user.to_owned(), token.expose_secret().to_owned());
        let conn = &mut self.conn;
        let authenticated = step(SendStage::Auth, t.command, async {
            conn.auth(&[Mechanism::Xoauth2], &credentials).await.map_err(|e| {
                if e.to_string().contains(XOAUTH2_CHALLENGE) {
                    return SendFailure::new(SendStage::Auth, FailureKind::TokenRefused);
                }
                let mut f = failure(SendStage::Auth, &e, secrets);
                let refused = f.kind == FailureKind::Rejected
                    && domain::oauth::SendRefusal::classify(domain::oauth::SendAnswer::Smtp {
                        code: f.smtp_code.unwrap_or(0),
                        enhanced: f.enhanced_code.as_deref(),
                    }) == domain::oauth::SendRefusal::TokenRefused;
                if refused {
                    f.kind = FailureKind::TokenRefused;
                }
                f
            })
        })
        .await;
        if let Err(f) = authenticated {
            self.note(&f);
            self.goodbye(t).await;
            return Err(f);
        }
        Ok(())
    }

    /// What the server offered in its EHLO reply (the one over TLS on an encrypted session).
    pub fn offer(&self) -> domain::probe::Offer {
        let info = self.conn.server_info();
        let auth_mechanisms = [
            (Mechanism::Plain, "PLAIN"),
            (Mechanism::Login, "LOGIN"),
            (Mechanism::Xoauth2, "XOAUTH2"),
        ]
        .into_iter()
        .filter(|(m, _)| info.supports_auth_mechanism(*m))
        .map(|(_, name)| name.to_owned())
        .collect();
        domain::probe::Offer {
            auth_mechanisms,
            starttls: info.supports_feature(Extension::StartTls),
            smtputf8: info.supports_feature(Extension::SmtpUtfEight),
        }
    }

    /// MAIL FROM: the start of a send (what pacing spaces out).
    pub async fn mail_from(
        &mut self,
        from: &Address,
        message: &[u8],
        smtputf8: bool,
        t: &Timeouts,
    ) -> Result<(), SendFailure> {
        let options = self.mail_parameters(message, smtputf8)?;
        let (conn, secrets) = (&mut self.conn, &self.secrets);
        let started = step(SendStage::MailFrom, t.command, async {
            conn.command(Mail::new(Some(from.clone()), options))
                .await
                .map_err(|e| failure(SendStage::MailFrom, &e, secrets))
        })
        .await;
        if let Err(f) = &started {
            self.note(f);
        }
        started.map(|_| ())
    }

    /// The parameters of MAIL FROM for `message`.
    fn mail_parameters(&self, message: &[u8], smtputf8: bool) -> Result<Vec<MailParameter>, SendFailure> {
        let mut options = Vec::new();
        if smtputf8 {
            // Never mangle an address into something else: a server that cannot take it
            // does not get the mail.
            if !self.conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(SendFailure::new(SendStage::MailFrom, FailureKind::SmtpUtf8NotOffered));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() && self.conn.server_info().supports_feature(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Ok(options)
    }

    /// RCPT TO, DATA and the message, after [`Session::mail_from`]. Returns the final
    /// reply (code and text).
    pub async fn finish_mail(
        &mut self,
        to: &Address,
        message: &[u8],
        t: &Timeouts,
    ) -> Result<(u16, String), SendFailure> {
        let sent = self.rcpt_and_data(to, message, t).await;
        if let Err(f) = &sent {
            self.note(f);
        }
        sent
    }

    async fn rcpt_and_data(
        &mut self,
        to: &Address,
        message: &[u8],
        t: &Timeouts,
    ) -> Result<(u16, String), SendFailure> {
        let (conn, secrets) = (&mut self.conn, &self.secrets);
        step(SendStage::RcptTo, t.command, async {
            conn.command(Rcpt::new(to.clone(), vec![]))
                .await
                .map_err(|e| failure(SendStage::RcptTo, &e, secrets))
        })
        .await?;
        step(SendStage::Data, t.command, async {
            conn.command(Data)
                .await
                .map_err(|e| failure(SendStage::Data, &e, secrets))
        })
        .await?;
        self.message(message, t).await
    }

    /// The message, after DATA was answered `354`; its final reply (code and text).
    async fn message(&mut self, message: &[u8], t: &Timeouts) -> Result<(u16, String), SendFailure> {
        let (conn, secrets) = (&mut self.conn, &self.secrets);
        let reply = step(SendStage::Data, t.data, async {
            conn.message(message)
                .await
                .map_err(|e| failure(SendStage::Data, &e, secrets))
        })
        .await?;
        self.last_used = Instant::now();
        // The accepting reply is shown and stored too: redacted like a refusal.
        let text = self.secrets.redact(&reply.message().collect::<Vec<_>>().join(" "));
        Ok((u16::from(reply.code()), text))
    }

    /// A whole send: MAIL FROM, RCPT TO, DATA and the message. Where the server offered
    /// PIPELINING, the three commands go in one write and their replies are read after it
    /// (one round trip for the three, not three).
    pub async fn deliver(
        &mut self,
        from: &Address,
        to: &Address,
        message: &[u8],
        smtputf8: bool,
        t: &Timeouts,
    ) -> Result<(u16, String), SendFailure> {
        if !self.pipelining {
            self.mail_from(from, message, smtputf8, t).await?;
            return self.finish_mail(to, message, t).await;
        }
        let sent = self.pipelined(from, to, message, smtputf8, t).await;
        if let Err(f) = &sent {
            self.note(f);
        }
        sent
    }

    /// RFC 2920: MAIL FROM, RCPT TO and DATA in one write, then each reply in order, each
    /// under the command deadline and named by its own stage. Every reply is read even
    /// after a refusal, so the session stays in step for the RSET that follows; the first
    /// refusal is the send's failure. A server that answers DATA with `354` although it
    /// refused an earlier command gets an empty message (a lone `.`), as RFC 2920 §3.1
    /// asks, and its answer to that is read and set aside.
    async fn pipelined(
        &mut self,
        from: &Address,
        to: &Address,
        message: &[u8],
        smtputf8: bool,
        t: &Timeouts,
    ) -> Result<(u16, String), SendFailure> {
        let options = self.mail_parameters(message, smtputf8)?;
        let commands = format!(
            "{}{}{}",
            Mail::new(Some(from.clone()), options),
            Rcpt::new(to.clone(), vec![]),
            Data
        );
        let (conn, secrets) = (&mut self.conn, &self.secrets);
        let mut replies = Vec::with_capacity(3);
        for stage in [SendStage::MailFrom, SendStage::RcptTo, SendStage::Data] {
            let reply = step(stage, t.command, async {
                let reply = if stage == SendStage::MailFrom {
                    conn.command(&commands).await
                } else {
                    conn.read_response().await
                };
                reply.map(drop).map_err(|e| failure(stage, &e, secrets))
            })
            .await;
            // A reply that did not come (or broke the protocol): nothing more can be read,
            // and the session is done. A refusal before it is still what the send met (a
            // server may say `421` to MAIL FROM and hang up, as RFC 5321 allows).
            if let Err(f) = &reply
                && breaks(f.kind)
            {
                self.broken = true;
                return Err(replies.into_iter().find_map(Result::err).unwrap_or_else(|| f.clone()));
            }
            replies.push(reply);
        }
        let data_accepted = replies[2].is_ok();
        match replies.into_iter().find_map(Result::err) {
            None => self.message(message, t).await,
            Some(refused) => {
                if data_accepted {
                    let ended = step(SendStage::Data, t.data, async {
                        conn.command(".\r\n")
                            .await
                            .map_err(|e| failure(SendStage::Data, &e, secrets))
                    })
                    .await;
                    if ended.as_ref().is_err_and(|f| breaks(f.kind)) {
                        self.broken = true;
                    }
                }
                Err(refused)
            }
        }
    }

    /// Ends a transaction the server refused (RSET), so the session can be used again;
    /// false when the server does not answer it well (the session is then closed: with
    /// QUIT when it refused RSET with a reply, without when no reply came).
    pub async fn reset(&mut self, t: &Timeouts) -> bool {
        self.simple_command(Rset, t).await && !self.is_broken()
    }

    /// Checks a connection that sat idle (NOOP).
    pub async fn is_alive(&mut self, t: &Timeouts) -> bool {
        self.simple_command(Noop, t).await
    }

    /// A command that wants a positive reply; a timeout or a broken connection marks the
    /// session broken, a refusal does not.
    async fn simple_command(&mut self, command: impl std::fmt::Display, t: &Timeouts) -> bool {
        if self.is_broken() {
            return false;
        }
        match tokio::time::timeout(t.command, self.conn.command(command)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                if e.status().is_none() {
                    self.broken = true;
                }
                false
            }
            Err(_) => {
                self.broken = true;
                false
            }
        }
    }

    /// Ends the session: QUIT (and its reply, within the command deadline) when the
    /// conversation still stands; a broken one is only dropped. A QUIT that fails is
    /// no one's problem (logged at debug).
    pub async fn quit(mut self, t: &Timeouts) {
        self.goodbye(t).await;
    }

    async fn goodbye(&mut self, t: &Timeouts) {
        if self.is_broken() {
            return;
        }
        self.broken = true;
        if !matches!(tokio::time::timeout(t.command, self.conn.quit()).await, Ok(Ok(_))) {
            tracing::debug!("QUIT went unanswered");
        }
    }

    /// Marks the session broken when `failure` left the conversation in an unknown state.
    fn note(&mut self, failure: &SendFailure) {
        if breaks(failure.kind) {
            self.broken = true;
        }
    }

    /// Whether the conversation is broken (a step timed out or failed without a reply, or
    /// lettre gave up on it): it can only be dropped.
    pub fn is_broken(&self) -> bool {
        self.broken || self.conn.has_broken()
    }
}

#[cfg(test)]
mod tests {
    use super::enhanced_code;

    #[test]
    fn enhanced_codes() {
        assert_eq!(enhanced_code("5.7.8 Authentication failed").as_deref(), Some("5.7.8"));
        assert_eq!(
            enhanced_code("5.7.139 Authentication unsuccessful").as_deref(),
            Some("5.7.139")
        );
        assert_eq!(enhanced_code("Authentication failed"), None);
        assert_eq!(enhanced_code("1.2.3 x"), None);
    }
}
