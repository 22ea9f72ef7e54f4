//! What a server's reply may never carry out of the process: every form in which we sent
//! a credential. A server may echo what it received (`535 5.7.8 AHNob3AAaHVudGVyMg==`);
//! the reply is shown to the tenant (`sendTestMail`, the probe), stored (a version's
//! `lastFailure`, a delivery's failure), posted (webhooks) and logged, so it is redacted
//! once, where the mailer turns it into a failure or an answer.
//!
//! Hidden: the plain secret; its base64 (standard and URL-safe alphabet, with and without
//! padding, and at each of the three byte alignments, so the secret is found inside any
//! base64 blob that carries it); the base64 of the AUTH PLAIN blob (`\0user\0password`),
//! of LOGIN's user name and password, and the XOAUTH2 string (`user=…\x01auth=Bearer …`)
//! and its base64; and every run of [`MIN_RUN`] or more characters of any of them,
//! whitespace in the reply ignored (a server that splits the blob over several reply
//! lines gets it hidden too). Base64 is matched with its exact case; shorter secrets
//! (3–7 characters) are hidden where they appear whole.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Runs of at least this many characters of a secret's form are hidden.
pub const MIN_RUN: usize = 8;

/// Forms shorter than this are not hidden (they would hide ordinary words).
const SHORTEST: usize = 3;

/// A redacted reply keeps at most this many characters.
pub const MAX_CHARS: usize = 500;

/// What replaces a hidden run.
pub const REDACTED: &str = "[redacted]";

/// The strings to hide from server replies. Never printed (`Debug` says how many).
#[derive(Clone, Default)]
pub struct Secrets {
    /// Forms shorter than [`MIN_RUN`], hidden where they appear whole (whitespace-free).
    short: Vec<String>,
    /// Every [`MIN_RUN`]-character window of every longer form.
    windows: HashSet<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("short", &self.short.len())
            .field("windows", &self.windows.len())
            .finish()
    }
}

/// The base64 forms of `bytes` in the two alphabets, with and without padding.
fn encodings(bytes: &[u8]) -> [String; 4] {
    [
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ]
}

/// The characters of the base64 of `bytes` that depend on `bytes` alone, when `bytes`
/// sits at each of the three alignments inside a longer blob (the characters that mix
/// with the neighbouring bytes, and padding, are left out).
fn embedded_encodings(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for lead in 0..3usize {
        let mut padded = vec![0u8; lead];
        padded.extend_from_slice(bytes);
        // Leading characters that carry the filler bytes: none, two, three.
        let skip = [0, 2, 3][lead];
        // The trailing characters that would carry the next byte's bits (and padding).
        let drop = [0, 3, 2][padded.len() % 3];
        for engine in [&STANDARD, &URL_SAFE] {
            let encoded = engine.encode(&padded);
            if encoded.len() > skip + drop {
                out.push(encoded[skip..encoded.len() - drop].to_owned());
            }
        }
    }
    out
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.short.is_empty() && self.windows.is_empty()
    }

    /// Adds one form as it may appear in a reply.
    fn add_form(&mut self, form: &str) {
        // As `redact` reads a reply: control characters are spaces, whitespace is skipped.
        let form: Vec<char> = form.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
        if form.len() >= MIN_RUN {
            for window in form.windows(MIN_RUN) {
                self.windows.insert(window.iter().collect());
            }
        } else if form.len() >= SHORTEST {
            let form: String = form.into_iter().collect();
            if !self.short.contains(&form) {
                self.short.push(form);
            }
        }
    }

    /// Adds bytes we sent in every base64 form, also as part of a longer blob.
    fn add_encoded(&mut self, bytes: &[u8]) {
        for form in encodings(bytes) {
            self.add_form(&form);
        }
        for form in embedded_encodings(bytes) {
            self.add_form(&form);
        }
    }

    /// A secret sent as is (a POP3 `PASS`, an API key): hidden as text and as base64.
    pub fn secret(mut self, secret: &str) -> Self {
        self.add_form(secret);
        self.add_encoded(secret.as_bytes());
        self
    }

    /// A password login over SMTP AUTH: the password; the PLAIN blob
    /// (`\0user\0password`, RFC 4616, as lettre sends it); LOGIN's user name and password
    /// (each base64, RFC 4954 challenges); all in every base64 form.
    pub fn password_login(self, user: &str, password: &str) -> Self {
        let mut this = self.secret(password);
        // The blobs as text are the user name (no secret: the settings show it) and the
        // password (hidden above); their base64 forms are hidden whole.
        this.add_encoded(format!("\0{user}\0{password}").as_bytes());
        // LOGIN's user name is sent base64 on its own.
        for form in encodings(user.as_bytes()) {
            this.add_form(&form);
        }
        this.xoauth2(user, password)
    }

    /// An OAuth 2.0 token sent with XOAUTH2 (`user=…\x01auth=Bearer …\x01\x01`, as
    /// lettre builds it): the token and the whole string, in every form.
    pub fn xoauth2(self, user: &str, token: &str) -> Self {
        let mut this = self.secret(token);
        this.add_encoded(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes());
        this
    }

    /// Both sets' strings.
    pub fn merge(mut self, other: &Secrets) -> Self {
        for s in &other.short {
            if !self.short.contains(s) {
                self.short.push(s.clone());
            }
        }
        self.windows.extend(other.windows.iter().cloned());
        self
    }

    /// `message` as it may be shown, stored, posted or logged: control characters made
    /// spaces, every secret run replaced by `[redacted]`, at most [`MAX_CHARS`] characters.
    pub fn redact(&self, message: &str) -> String {
        let cleaned: Vec<char> = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        // The reply without whitespace, and where each of its characters came from.
        let at: Vec<usize> = (0..cleaned.len()).filter(|&i| !cleaned[i].is_whitespace()).collect();
        let projected: String = at.iter().map(|&i| cleaned[i]).collect();
        let offsets: Vec<usize> = projected
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(projected.len()))
            .collect();
        let n = at.len();
        let mut hidden = vec![false; n];
        if !self.windows.is_empty() {
            for p in 0..n.saturating_sub(MIN_RUN - 1) {
                if self.windows.contains(&projected[offsets[p]..offsets[p + MIN_RUN]]) {
                    hidden[p..p + MIN_RUN].iter_mut().for_each(|h| *h = true);
                }
            }
        }
        for form in &self.short {
            let len = form.chars().count();
            for (byte, _) in projected.match_indices(form.as_str()) {
                if let Ok(p) = offsets.binary_search(&byte) {
                    hidden[p..(p + len).min(n)].iter_mut().for_each(|h| *h = true);
                }
            }
        }
        // Whitespace between two hidden characters is hidden with them.
        let mut inside = vec![false; cleaned.len()];
        for (p, &i) in at.iter().enumerate() {
            inside[i] = hidden[p];
            if p > 0 && hidden[p] && hidden[p - 1] {
                inside[at[p - 1]..i].iter_mut().for_each(|h| *h = true);
            }
        }
        let mut out = String::with_capacity(message.len());
        let mut in_run = false;
        for (i, &c) in cleaned.iter().enumerate() {
            if inside[i] {
                if !in_run {
                    out.push_str(REDACTED);
                    in_run = true;
                }
            } else {
                in_run = false;
                out.push(c);
            }
        }
        out.chars().take(MAX_CHARS).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "info@shop.example.jp";
    const PASSWORD: &str = "s3cret-Passw0rd!";

    fn login() -> Secrets {
        Secrets::new().password_login(USER, PASSWORD)
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s.as_bytes())
    }

    /// No 8-character run of `secret` is left in `text`.
    fn leaks(text: &str, secret: &str) -> bool {
        let chars: Vec<char> = secret.chars().collect();
        chars.len() >= MIN_RUN
            && chars
                .windows(MIN_RUN)
                .any(|w| text.contains(w.iter().collect::<String>().as_str()))
    }

    #[test]
    fn the_plain_password_and_every_encoding_we_sent_are_hidden() {
        let plain_blob = b64(&format!("\0{USER}\0{PASSWORD}"));
        let xoauth2 = format!("user={USER}\x01auth=Bearer {PASSWORD}\x01\x01");
        for sent in [
            PASSWORD.to_owned(),
            plain_blob.clone(),
            plain_blob.trim_end_matches('=').to_owned(),
            b64(PASSWORD),
            b64(PASSWORD).trim_end_matches('=').to_owned(),
            b64(USER),
            URL_SAFE.encode(PASSWORD),
            b64(&xoauth2),
        ] {
            let reply = format!("535 5.7.8 Authentication failed for {sent} (try again)");
            let out = login().redact(&reply);
            assert!(!leaks(&out, &sent), "{sent} leaked in {out}");
            assert!(out.contains(REDACTED), "{out}");
            assert!(out.starts_with("535 5.7.8 Authentication failed for "), "{out}");
            assert!(out.ends_with(" (try again)"), "{out}");
            assert!(!out.contains("Passw0rd"), "{out}");
        }
        // The XOAUTH2 string as text: the token goes, the user name (shown anyway) stays.
        let out = login().redact(&format!("535 {xoauth2}"));
        assert_eq!(out, format!("535 user={USER} auth=Bearer [redacted]  "));
    }

    #[test]
    fn any_run_of_eight_or_more_characters_is_hidden_and_shorter_ones_are_not() {
        let blob = b64(&format!("\0{USER}\0{PASSWORD}"));
        for start in [0, 3, 7, 11] {
            let part = &blob[start..start + 8];
            let out = login().redact(&format!("535 {part} no"));
            assert_eq!(out, "535 [redacted] no", "{part}");
        }
        // Seven characters of the blob reveal too little to hide (and would hide words).
        let part = &blob[5..12];
        assert_eq!(login().redact(&format!("535 {part} no")), format!("535 {part} no"));
        // The middle of the password.
        assert_eq!(login().redact("535 bad: cret-Passw0 x"), "535 bad: [redacted] x");
    }

    #[test]
    fn base64_is_matched_with_its_exact_case() {
        let blob = b64(&format!("\0{USER}\0{PASSWORD}"));
        let swapped: String = blob
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        let out = login().redact(&format!("535 {swapped}"));
        assert_eq!(out, format!("535 {swapped}"), "another string, not our blob");
    }

    #[test]
    fn the_password_inside_any_base64_blob_is_found_at_every_alignment() {
        for prefix in ["", "a", "ab", "abc", "user\0", "\0x\0"] {
            for suffix in ["", "z", "yz", "\x01\x01"] {
                let blob = b64(&format!("{prefix}{PASSWORD}{suffix}"));
                let out = login().redact(&format!("535 {blob}"));
                assert!(out.contains(REDACTED), "{prefix:?}+{suffix:?}: {out}");
                // What is left is at most the few characters that carry the neighbours.
                let left = out.trim_start_matches("535 ").replace(REDACTED, "");
                let bound = 4 * (prefix.len() + suffix.len()) / 3 + 6;
                assert!(left.len() <= bound, "{prefix:?}+{suffix:?}: {out}");
            }
        }
    }

    #[test]
    fn a_blob_split_over_lines_or_spaces_is_hidden_whole() {
        let blob = b64(&format!("\0{USER}\0{PASSWORD}"));
        let (a, b) = blob.split_at(blob.len() / 2);
        let out = login().redact(&format!("535-5.7.8 {a}\r\n535 5.7.8 {b}\r\n"));
        assert!(!leaks(&out, &blob), "{out}");
        let spaced: String = blob.chars().flat_map(|c| [c, ' ']).collect();
        let out = login().redact(&format!("535 {spaced}end"));
        assert_eq!(out, "535 [redacted] end");
    }

    #[test]
    fn short_secrets_are_hidden_whole_and_replies_are_cleaned_and_capped() {
        let pop = Secrets::new().secret("hunter2");
        assert_eq!(pop.redact("-ERR bad pw hunter2\r\n"), "-ERR bad pw [redacted]  ");
        assert_eq!(pop.redact(&format!("-ERR {}", b64("hunter2"))), "-ERR [redacted]");
        assert_eq!(Secrets::new().redact("250 OK\r\nqueued"), "250 OK  queued");
        assert_eq!(Secrets::new().redact(&"x".repeat(2000)).chars().count(), MAX_CHARS);
        // Redacted before it is cut: the end of the blob past the cut leaves nothing.
        let blob = b64(&format!("\0{USER}\0{PASSWORD}"));
        let reply = format!("{}{blob}", "y".repeat(MAX_CHARS - 5));
        let out = login().redact(&reply);
        assert!(out.ends_with("yyyyy[reda"), "{out}");
        // Non-ASCII text around a secret survives.
        assert_eq!(
            login().redact(&format!("認証失敗 {PASSWORD} です")),
            "認証失敗 [redacted] です"
        );
    }

    #[test]
    fn merged_sets_hide_both_and_debug_prints_no_secret() {
        let both = Secrets::new().secret("pop-password-1").merge(&login());
        let out = both.redact(&format!("x pop-password-1 y {PASSWORD} z"));
        assert_eq!(out, "x [redacted] y [redacted] z");
        let shown = format!("{both:?}");
        assert!(!shown.contains("pop-pass") && !shown.contains("Passw0rd"), "{shown}");
        assert!(Secrets::new().is_empty());
        assert!(!both.is_empty());
    }
}
