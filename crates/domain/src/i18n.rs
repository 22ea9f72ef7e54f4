//! The two languages Mailgate answers in, chosen from `Accept-Language`. The sentences
//! themselves are the API's (its catalogues); the domain only names the language.

crate::coded_enum! {
    /// A language the API answers in. English when the caller states nothing we speak.
    /// The codes are the language tags stored with a delivery.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Locale {
        #[default]
        En = "en",
        Ja = "ja",
    }
}

impl Locale {
    /// Picks the best of `ja`/`en` from an `Accept-Language` header value, honouring
    /// q-values; anything else (or nothing) gives English.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let Some(header) = header else {
            return Self::En;
        };
        let mut best: Option<(f32, Self)> = None;
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.parse::<f32>().ok()))
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let locale = match primary {
                "ja" => Self::Ja,
                "en" => Self::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, locale));
            }
        }
        best.map_or(Self::En, |(_, l)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::Locale;

    #[test]
    fn accept_language_picks_by_quality() {
        assert_eq!(Locale::from_accept_language(None), Locale::En);
        assert_eq!(Locale::from_accept_language(Some("ja")), Locale::Ja);
        assert_eq!(
            Locale::from_accept_language(Some("ja-JP,ja;q=0.9,en;q=0.8")),
            Locale::Ja
        );
        assert_eq!(Locale::from_accept_language(Some("en-US,ja;q=0.5")), Locale::En);
        assert_eq!(Locale::from_accept_language(Some("fr, ja;q=0.1")), Locale::Ja);
        assert_eq!(Locale::from_accept_language(Some("fr")), Locale::En);
        assert_eq!(Locale::from_accept_language(Some("ja;q=0")), Locale::En);
    }
}
