//! The signature of the Standard Webhooks specification: HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` with the secret's bytes (the base64 after
//! `whsec_`), sent as `v1,{base64}`; with several secrets (a rotation's overlap), one such
//! entry per secret, separated by spaces.

use base64::Engine as _;
use domain::webhook::WebhookSecret;

/// The `webhook-signature` header's value for this message, signed with each secret.
pub fn signature_header(secrets: &[&WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut content = Vec::with_capacity(id.len() + body.len() + 24);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    secrets
        .iter()
        .map(|secret| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret.key_bytes());
            let tag = ring::hmac::sign(&key, &content);
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's reference libraries
    /// (standard-webhooks/standard-webhooks, libraries/python tests).
    #[test]
    fn matches_the_reference_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let header = signature_header(
            &[&secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        let both = signature_header(&[&a, &b], "msg_1", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature_header(&[&a], "msg_1", 1, b"{}"));
        assert_eq!(parts[1], signature_header(&[&b], "msg_1", 1, b"{}"));
    }
}
