//! Building the message: `From` is `"fromName" <fromAddress>` (RFC 2047-encoded for
//! Japanese names, by lettre), the envelope sender is `fromAddress`, and every message has
//! a `Message-ID`. Every value was validated (no control characters), so nothing a tenant
//! entered can add headers.

use lettre::Message;
use lettre::address::{Address, Envelope};
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};

use domain::mail::{FailureKind, OutgoingMail, SendFailure, SendStage};
use domain::sender::ReplyTo;
use domain::values::{EmailAddress, SenderName};

/// A message ready for the wire.
#[derive(Debug)]
pub struct Built {
    pub from: Address,
    pub to: Address,
    pub bytes: Vec<u8>,
    pub message_id: String,
    /// An address has non-ASCII characters before its @: only a server offering SMTPUTF8
    /// (RFC 6531) may take it, with `SMTPUTF8` on MAIL FROM.
    pub smtputf8: bool,
}

fn invalid() -> SendFailure {
    SendFailure::new(SendStage::MailFrom, FailureKind::InvalidMessage)
}

fn address(a: &EmailAddress) -> Result<Address, SendFailure> {
    a.to_ascii().parse::<Address>().map_err(|_| invalid())
}

/// A new `Message-ID` in the sender's domain.
pub fn new_message_id(from: &EmailAddress) -> String {
    let ascii = from.to_ascii();
    let domain = ascii
        .rsplit_once('@')
        .map_or("mailgate.invalid", |(_, d)| d.trim_matches(['[', ']']));
    format!("<{}@{}>", uuid::Uuid::new_v4().simple(), domain)
}

/// Builds the message from `from` (and `name`) to the mail's recipient, with a
/// `Reply-To` when replies should go elsewhere (the tenant, for mail the platform default
/// sends in its place).
pub fn build(
    from: &EmailAddress,
    name: Option<&SenderName>,
    reply_to: Option<&ReplyTo>,
    mail: &OutgoingMail,
) -> Result<Built, SendFailure> {
    let from_addr = address(from)?;
    let to_addr = address(&mail.to)?;
    let message_id = mail.message_id.clone().unwrap_or_else(|| new_message_id(from));
    let mut builder = Message::builder();
    if let Some(r) = reply_to {
        builder = builder.reply_to(Mailbox::new(
            r.name.as_ref().map(|n| n.as_str().to_owned()),
            address(&r.address)?,
        ));
    }
    let builder = builder
        .from(Mailbox::new(name.map(|n| n.as_str().to_owned()), from_addr.clone()))
        .to(Mailbox::new(None, to_addr.clone()))
        .subject(mail.subject.as_str())
        .message_id(Some(message_id.clone()))
        .envelope(Envelope::new(Some(from_addr.clone()), vec![to_addr.clone()]).map_err(|_| invalid())?);
    let message = match &mail.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(mail.text.clone(), html.clone())),
        None => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(mail.text.clone()),
        ),
    }
    .map_err(|_| invalid())?;
    let smtputf8 =
        from.needs_smtputf8() || mail.to.needs_smtputf8() || reply_to.is_some_and(|r| r.address.needs_smtputf8());
    Ok(Built {
        from: from_addr,
        to: to_addr,
        bytes: message.formatted(),
        message_id,
        smtputf8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::mail::Subject;

    #[test]
    fn japanese_display_name_is_encoded_and_headers_are_set() {
        let mail = OutgoingMail {
            to: EmailAddress::parse("user@example.net").unwrap(),
            subject: Subject::parse("ご登録ありがとうございます").unwrap(),
            text: "本文".into(),
            html: None,
            message_id: None,
            via_platform: false,
        };
        let from = EmailAddress::parse("info@日本語.jp").unwrap();
        let built = build(
            &from,
            Some(&SenderName::parse("株式会社サンプル").unwrap()),
            None,
            &mail,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&built.bytes);
        assert!(text.contains("From: =?utf-8?b?"), "{text}");
        assert!(text.contains("<info@xn--wgv71a119e.jp>"), "{text}");
        assert!(text.contains(&format!("Message-ID: {}", built.message_id)), "{text}");
        assert!(built.message_id.ends_with("@xn--wgv71a119e.jp>"));
        assert_eq!(built.from.to_string(), "info@xn--wgv71a119e.jp");
    }
}
