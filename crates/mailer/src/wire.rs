//! Reading what a tenant's server sends, with hard caps. A server chosen by a tenant may
//! be hostile: one that answers `220 ` and then streams bytes without a line end would
//! otherwise grow a reply buffer until the process is killed. Every byte read from an
//! SMTP server passes through [`CappedReplies`] (above TLS, so it sees the plain text),
//! and the STARTTLS exchange before the upgrade is read by [`read_reply`], which also
//! refuses anything sent after the server's STARTTLS reply.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

/// The longest SMTP reply line we read, CRLF included: the text-line limit of RFC 5321
/// §4.5.3.1.6 (reply lines are limited to 512 octets by §4.5.3.1.5; real servers stay
/// far below either).
pub const MAX_REPLY_LINE: usize = 1000;

/// The longest reply, all lines of a multi-line reply together (an EHLO reply with every
/// extension is a few hundred octets).
pub const MAX_REPLY: usize = 64 * 1024;

/// The longest POP3 line, CRLF included (RFC 1939 §3: 512 octets).
pub const MAX_POP_LINE: usize = 512;

/// What the server did wrong; carried inside an `io::Error` so that the SMTP library
/// hands it back to us unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    #[error("a reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    #[error("a reply longer than {MAX_REPLY} octets")]
    ReplyTooLong,
    #[error("a POP3 line longer than {MAX_POP_LINE} octets")]
    PopLineTooLong,
    #[error("plain text after the STARTTLS reply")]
    DataAfterStartTls,
    #[error("a reply that is not SMTP")]
    NotSmtp,
}

impl ProtocolViolation {
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Finds a [`ProtocolViolation`] anywhere in an error's source chain.
pub fn violation(err: &(dyn std::error::Error + 'static)) -> Option<ProtocolViolation> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(v) = e.downcast_ref::<ProtocolViolation>() {
            return Some(*v);
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(v) = io.get_ref().and_then(|inner| inner.downcast_ref::<ProtocolViolation>())
        {
            return Some(*v);
        }
        current = e.source();
    }
    None
}

/// What [`CappedReplies`] saw of the replies it passed on: how many, and whether the
/// reply to EHLO (the second: the greeting is the first) offered `PIPELINING` (RFC 2920),
/// a keyword the SMTP library does not keep.
#[derive(Debug, Default)]
pub struct RepliesSeen {
    count: AtomicUsize,
    pipelining: AtomicBool,
}

impl RepliesSeen {
    /// Complete replies read so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether the EHLO reply offered `PIPELINING`.
    pub fn pipelining(&self) -> bool {
        self.pipelining.load(Ordering::Relaxed)
    }
}

/// The reply that answers EHLO, counted from 0 (the greeting).
const EHLO_REPLY: usize = 1;

/// The keyword of RFC 2920, as a line of the EHLO reply names it (`250-PIPELINING`).
const PIPELINING: &[u8] = b"PIPELINING";

/// Tracks where the bytes read so far stand in the reply structure.
#[derive(Debug, Default, Clone)]
struct ReplyCursor {
    /// Octets of the current line so far.
    line: usize,
    /// Octets of the current reply so far.
    reply: usize,
    /// The fourth octet of the current line (`-` marks a continuation line).
    separator: Option<u8>,
    /// Replies completed so far.
    replies: usize,
    /// Octets of [`PIPELINING`] the current line of the EHLO reply matched so far, after
    /// its code and separator; none once it differs.
    keyword: Option<usize>,
    /// A line of the EHLO reply was `PIPELINING`, alone or with parameters.
    pipelining: bool,
}

impl ReplyCursor {
    /// Takes in the bytes `read`; the number of replies they completed, or the violation.
    fn advance(&mut self, read: &[u8]) -> Result<usize, ProtocolViolation> {
        let mut completed = 0;
        for &byte in read {
            self.line += 1;
            self.reply += 1;
            if self.line == 4 {
                self.separator = Some(byte);
            }
            if self.replies == EHLO_REPLY {
                self.look_for_pipelining(byte);
            }
            if byte == b'\n' {
                if self.separator != Some(b'-') {
                    self.reply = 0;
                    self.replies += 1;
                    completed += 1;
                }
                self.line = 0;
                self.separator = None;
            } else if self.line > MAX_REPLY_LINE {
                return Err(ProtocolViolation::LineTooLong);
            }
            if self.reply > MAX_REPLY {
                return Err(ProtocolViolation::ReplyTooLong);
            }
        }
        Ok(completed)
    }

    /// Matches the line's keyword (octets 5 to 14, after `250-`) against [`PIPELINING`],
    /// one octet at a time, and notes a whole match followed by the line's end or a space.
    fn look_for_pipelining(&mut self, byte: u8) {
        let at_keyword = self.line.checked_sub(5);
        match at_keyword {
            Some(i) if i < PIPELINING.len() => {
                let so_far = if i == 0 { Some(0) } else { self.keyword };
                self.keyword = (so_far == Some(i) && byte.to_ascii_uppercase() == PIPELINING[i]).then_some(i + 1);
            }
            Some(i) if i == PIPELINING.len() && self.keyword == Some(i) && matches!(byte, b'\r' | b'\n' | b' ') => {
                self.pipelining = true;
            }
            _ => {}
        }
    }
}

/// A stream whose reads fail (with a [`ProtocolViolation`]) as soon as the server sends a
/// reply line or a reply longer than SMTP allows. Counts the replies read, so a failure
/// can say whether it was the greeting or a later reply, and notes what EHLO offered
/// that the SMTP library does not keep ([`RepliesSeen`]).
#[derive(Debug)]
pub struct CappedReplies<S> {
    inner: S,
    cursor: ReplyCursor,
    failed: Option<ProtocolViolation>,
    seen: Arc<RepliesSeen>,
}

impl<S> CappedReplies<S> {
    /// Wraps `inner`; `seen` learns what is read through it.
    pub fn new(inner: S, seen: Arc<RepliesSeen>) -> Self {
        Self {
            inner,
            cursor: ReplyCursor::default(),
            failed: None,
            seen,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CappedReplies<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(v) = self.failed {
            return Poll::Ready(Err(v.into_io()));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                match this.cursor.advance(&buf.filled()[before..]) {
                    Ok(completed) => {
                        if completed > 0 {
                            this.seen.count.fetch_add(completed, Ordering::Relaxed);
                            if this.cursor.pipelining {
                                this.seen.pipelining.store(true, Ordering::Relaxed);
                            }
                        }
                        Poll::Ready(Ok(()))
                    }
                    Err(v) => {
                        // Hand nothing of it on, and refuse every later read.
                        buf.set_filled(before);
                        this.failed = Some(v);
                        Poll::Ready(Err(v.into_io()))
                    }
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CappedReplies<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncTokioStream> AsyncTokioStream for CappedReplies<S> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// A stream that yields `prefix` before what `inner` sends: after our own STARTTLS, the
/// SMTP library (which always begins by reading a greeting) is handed the greeting the
/// server gave before the upgrade, and then says EHLO over TLS.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self { prefix, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncTokioStream> AsyncTokioStream for Prefixed<S> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// One SMTP reply read before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, without the code, separator and line end.
    pub lines: Vec<String>,
}

/// The code of a reply line as RFC 5321 §4.2 writes it (and lettre reads it): a first
/// digit 2–5, a second 0–5, a third 0–9, then a space, a hyphen or the line's end.
fn reply_code(line: &str) -> Option<u16> {
    let b = line.as_bytes();
    let (first, second, third) = (*b.first()?, *b.get(1)?, *b.get(2)?);
    let shaped = (b'2'..=b'5').contains(&first)
        && (b'0'..=b'5').contains(&second)
        && third.is_ascii_digit()
        && matches!(b.get(3), None | Some(b' ' | b'-'));
    shaped.then(|| u16::from(first - b'0') * 100 + u16::from(second - b'0') * 10 + u16::from(third - b'0'))
}

/// Reads one whole reply from `stream`, keeping what follows it in `pending`: at most
/// [`MAX_REPLY_LINE`] per line and [`MAX_REPLY`] in all.
pub async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S, pending: &mut Vec<u8>) -> io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let line = loop {
            if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                break line;
            }
            if pending.len() > MAX_REPLY_LINE {
                return Err(ProtocolViolation::LineTooLong.into_io());
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            pending.extend_from_slice(&chunk[..n]);
        };
        if line.len() > MAX_REPLY_LINE {
            return Err(ProtocolViolation::LineTooLong.into_io());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let code = reply_code(text).ok_or_else(|| ProtocolViolation::NotSmtp.into_io())?;
        let more = text.as_bytes().get(3) == Some(&b'-');
        lines.push(text.get(4..).unwrap_or("").to_owned());
        if lines.iter().map(|l| l.len() + 6).sum::<usize>() > MAX_REPLY {
            return Err(ProtocolViolation::ReplyTooLong.into_io());
        }
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_code_is_read_only_in_its_smtp_shape() {
        for (line, code) in [
            ("220 mx.example ESMTP", Some(220)),
            ("250-PIPELINING", Some(250)),
            ("554", Some(554)),
            ("421 4.3.2 closing", Some(421)),
            ("200 news.example InterNetNews ready", Some(200)),
            ("260 what", None),
            ("5000 bytes", None),
            ("199 low", None),
            ("600 high", None),
            ("SSH-2.0-OpenSSH_9.6", None),
            ("22", None),
            ("+OK POP3 ready", None),
        ] {
            assert_eq!(reply_code(line), code, "{line}");
        }
    }

    #[test]
    fn the_cursor_counts_replies_and_refuses_long_ones() {
        let mut c = ReplyCursor::default();
        assert_eq!(c.advance(b"220 hello\r\n250-one\r\n250-two\r\n"), Ok(1));
        assert_eq!(c.advance(b"250 three\r\n"), Ok(1));
        // Split anywhere: the state carries over.
        assert_eq!(c.advance(b"25"), Ok(0));
        assert_eq!(c.advance(b"0 ok\r\n"), Ok(1));

        let mut c = ReplyCursor::default();
        let mut long = b"220 ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_REPLY_LINE));
        assert_eq!(c.advance(&long), Err(ProtocolViolation::LineTooLong));

        let mut c = ReplyCursor::default();
        let line = format!("250-{}\r\n", "x".repeat(500));
        let mut result = Ok(0);
        for _ in 0..(MAX_REPLY / line.len() + 2) {
            result = c.advance(line.as_bytes());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ProtocolViolation::ReplyTooLong));
    }

    #[test]
    fn the_cursor_notes_pipelining_only_where_ehlo_offers_it() {
        let offered = |replies: &[&[u8]]| {
            let mut c = ReplyCursor::default();
            for r in replies {
                c.advance(r).unwrap();
            }
            c.pipelining
        };
        let greeting: &[u8] = b"220 mx.example ESMTP\r\n";
        assert!(offered(&[
            greeting,
            b"250-mx.example\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        ]));
        assert!(
            offered(&[greeting, b"250-mx.example\r\n250 pipelining\r\n"]),
            "any case"
        );
        // Split anywhere, even inside the keyword.
        assert!(offered(&[
            greeting,
            b"250-mx.example\r\n250-PIPE",
            b"LINING\r\n250 OK\r\n"
        ]));
        assert!(!offered(&[
            greeting,
            b"250-mx.example\r\n250-PIPELININGX\r\n250 OK\r\n"
        ]));
        assert!(!offered(&[
            greeting,
            b"250-mx.example\r\n250-XPIPELINING\r\n250 OK\r\n"
        ]));
        assert!(!offered(&[greeting, b"250-mx.example\r\n250 8BITMIME\r\n"]));
        // Only the EHLO reply counts: not the greeting, not a later reply.
        assert!(!offered(&[b"220 PIPELINING\r\n", b"250 mx.example\r\n"]));
        assert!(!offered(&[greeting, b"250 mx.example\r\n", b"250 PIPELINING\r\n"]));
    }

    #[tokio::test]
    async fn replies_read_before_the_upgrade() {
        let mut pending = Vec::new();
        let mut input: &[u8] = b"250-mail.example\r\n250-SIZE 1000\r\n250 STARTTLS\r\n220 go ahead\r\n250 fake\r\n";
        let reply = read_reply(&mut input, &mut pending).await.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, vec!["mail.example", "SIZE 1000", "STARTTLS"]);
        let reply = read_reply(&mut input, &mut pending).await.unwrap();
        assert_eq!((reply.code, reply.lines.len()), (220, 1));
        assert_eq!(pending, b"250 fake\r\n", "what came after is kept, to be refused");

        let mut endless: &[u8] = &[b'2'; 5000];
        let err = read_reply(&mut endless, &mut Vec::new()).await.unwrap_err();
        assert_eq!(violation(&err), Some(ProtocolViolation::LineTooLong));
        let mut garbage: &[u8] = b"SSH-2.0-OpenSSH_9.2\r\n";
        let err = read_reply(&mut garbage, &mut Vec::new()).await.unwrap_err();
        assert_eq!(violation(&err), Some(ProtocolViolation::NotSmtp));
    }
}
