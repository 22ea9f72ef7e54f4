//! Thunderbird's autoconfig document (`config-v1.1.xml`): the SMTP servers it names.
//! Parsed by roxmltree, which refuses DTDs (no entity expansion); the document is capped
//! before it gets here.

use domain::discovery::{Candidate, Confidence, DiscoverySource};
use domain::providers::{Provider, UsernameKind};
use domain::server::{Encryption, ServerKind};

/// The outgoing SMTP servers of an autoconfig document, in its order, for `domain`
/// (`%EMAILDOMAIN%` filled in). Nothing when it is not such a document.
pub fn smtp_servers(xml: &str, domain: &str, evidence: &str) -> Vec<Candidate> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    let root = doc.root_element();
    if root.tag_name().name() != "clientConfig" {
        return Vec::new();
    }
    let text = |node: roxmltree::Node<'_, '_>, name: &str| {
        node.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_owned())
    };
    root.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "outgoingServer" && n.attribute("type") == Some("smtp"))
        .filter_map(|server| {
            let host = text(server, "hostname")?
                .replace("%EMAILDOMAIN%", domain)
                .to_ascii_lowercase();
            if host.is_empty() || host.contains('%') {
                return None;
            }
            let port: u16 = text(server, "port")?.parse().ok()?;
            let encryption = match text(server, "socketType")?.to_ascii_uppercase().as_str() {
                "SSL" => Encryption::Ssl,
                "STARTTLS" => Encryption::StartTls,
                "PLAIN" => Encryption::None,
                _ => return None,
            };
            let username = match text(server, "username").as_deref() {
                Some("%EMAILADDRESS%") => Some(UsernameKind::Address),
                Some("%EMAILLOCALPART%") => Some(UsernameKind::LocalPart),
                Some(_) => Some(UsernameKind::AccountId),
                None => None,
            };
            let auths: Vec<String> = server
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() == "authentication")
                .filter_map(|c| c.text().map(|t| t.trim().to_ascii_lowercase()))
                .collect();
            // Mailgate logs in with a password (PLAIN/LOGIN); a server that names only
            // OAuth2 is still listed, with authentication, and the probe will say.
            let smtp_auth = !auths.iter().all(|a| a == "none") || auths.is_empty();
            let kind = Provider::for_smtp_host(&host).map_or(ServerKind::Custom, |p| p.kind);
            Some(Candidate {
                kind,
                host,
                port,
                encryption,
                smtp_auth,
                username,
                source: DiscoverySource::Autoconfig,
                confidence: Confidence::Medium,
                evidence: evidence.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_smtp_servers_and_fills_the_domain() {
        let xml = r#"<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="example.jp">
    <incomingServer type="imap"><hostname>imap.example.jp</hostname><port>993</port><socketType>SSL</socketType></incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.%EMAILDOMAIN%</hostname><port>587</port><socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.jp</hostname><port>465</port><socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>"#;
        let found = smtp_servers(xml, "example.jp", "url");
        assert_eq!(found.len(), 2);
        assert_eq!(
            (
                found[0].host.as_str(),
                found[0].port,
                found[0].encryption,
                found[0].username
            ),
            (
                "smtp.example.jp",
                587,
                Encryption::StartTls,
                Some(UsernameKind::Address)
            )
        );
        assert_eq!(found[1].encryption, Encryption::Ssl);
        assert_eq!(found[1].username, Some(UsernameKind::LocalPart));
    }

    #[test]
    fn refuses_what_is_not_an_autoconfig_document_and_entity_tricks() {
        assert!(smtp_servers("<html><body>hi</body></html>", "x.jp", "").is_empty());
        assert!(smtp_servers("not xml", "x.jp", "").is_empty());
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
<clientConfig><emailProvider><outgoingServer type="smtp"><hostname>&lol2;</hostname><port>587</port>
<socketType>STARTTLS</socketType></outgoingServer></emailProvider></clientConfig>"#;
        assert!(smtp_servers(bomb, "x.jp", "").is_empty());
    }
}
