//! Tenants: the sites of the hosting platform.

use chrono::{DateTime, Utc};

use crate::plan::{Plan, sender_override_permit};
use crate::sender::{SenderReason, SenderRoute, sender_route};
use crate::values::{EmailAddress, ValueError, has_control_chars};

crate::ids::uuid_id! {
    /// A tenant's id.
    TenantId
}

impl TenantId {
    /// The all-zero id, which no tenant has.
    pub fn nil() -> Self {
        Self(uuid::Uuid::nil())
    }
}

/// A tenant's display name: 1–200 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(ValueError::Required);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::TooLong);
        }
        if has_control_chars(name) {
            return Err(ValueError::ControlCharacters);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Part of a tenant's name to look for (operators pick a tenant by name): trimmed, at
/// most [`TenantName::MAX_CHARS`] characters (also once normalised), matched against [`name_search_key`]s, so
/// case, full-width and half-width forms do not matter (`shop` finds 「ＳＨＯＰ」, `ｶﾌｪ`
/// finds 「カフェ」, `école` finds 「ÉCOLE」) on every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSearch(String);

impl NameSearch {
    /// `None` for a blank search (every name matches).
    pub fn parse(raw: &str) -> Result<Option<Self>, ValueError> {
        let part = raw.trim();
        if part.is_empty() {
            return Ok(None);
        }
        if part.chars().count() > TenantName::MAX_CHARS {
            return Err(ValueError::TooLong);
        }
        if has_control_chars(part) {
            return Err(ValueError::ControlCharacters);
        }
        // Some characters expand under NFKC (「㍿」 is four, U+FDFA eighteen): the key is
        // held to the same length, so a search's cost stays what the limit says.
        let key = name_search_key(part);
        if key.chars().count() > TenantName::MAX_CHARS {
            return Err(ValueError::TooLong);
        }
        Ok(Some(Self(key)))
    }

    /// The part's search key, to find inside the names' keys.
    pub fn key(&self) -> &str {
        &self.0
    }

    /// Whether `name` contains the part (compared by their search keys).
    pub fn matches(&self, name: &TenantName) -> bool {
        name_search_key(name.as_str()).contains(&self.0)
    }
}

/// The form a name is searched by: Unicode compatibility-normalised (NFKC: full-width
/// Latin letters and digits become ASCII, half-width katakana full-width), then in lower
/// case. The store keeps it beside each name; a search's part is put in the same form.
/// Time linear in the name.
pub fn name_search_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    name.nfkc().collect::<String>().to_lowercase()
}

/// Which tenants a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFilter {
    pub plan: Option<Plan>,
    pub name: Option<NameSearch>,
}

/// A site on the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: TenantName,
    pub plan: Plan,
    /// The address an operator set for the tenant: the only one notices about its
    /// settings (a suspension) are mailed to, through the platform's own sender. Never
    /// the tenant's own sender address, which its admin types and nobody proved.
    pub contact_email: Option<EmailAddress>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tenant with its saved settings, if any.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub tenant: Tenant,
    pub settings: Option<crate::settings::StoredMailSettings>,
    /// Settings are saved but could not be read back (a corrupt row, a secret whose key
    /// is gone); `settings` is then `None`. Mail on the tenant's own route waits until
    /// they are saved again or cleared, which works without reading them.
    pub unreadable_settings: Option<UnreadableSettings>,
    /// An older version that still carries the tenant's mail while the saved one waits
    /// for its test (`LIVE`, or `SUSPENDED` if it broke meanwhile).
    pub live_settings: Option<crate::settings::StoredMailSettings>,
}

/// Saved settings that could not be read back: only their version is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadableSettings {
    pub version: i64,
}

impl TenantRecord {
    /// A tenant whose settings (if any) were read back.
    pub fn new(tenant: Tenant, settings: Option<crate::settings::StoredMailSettings>) -> Self {
        Self {
            tenant,
            settings,
            unreadable_settings: None,
            live_settings: None,
        }
    }

    /// The route this tenant's mail takes: as [`sender_route`] decides from the plan and
    /// the settings, except that unreadable settings on a plan that allows them are
    /// [`SenderRoute::Unreadable`] (never silently the platform default).
    pub fn route(&self) -> SenderRoute<'_> {
        let plan = self.tenant.plan;
        match (self.unreadable_settings, sender_override_permit(plan)) {
            (Some(_), Ok(permit)) => SenderRoute::Unreadable { permit },
            (Some(_), Err(_)) => SenderRoute::PlatformDefault {
                reason: SenderReason::PlanForbids {
                    plan,
                    settings_saved: true,
                },
                reply_to: None,
            },
            (None, _) => sender_route(plan, self.settings.as_ref(), self.live_settings.as_ref()),
        }
    }

    /// The stored version `version` of this tenant's settings, if it is still kept (the
    /// saved one, or the live one before it).
    pub fn settings_of_version(&self, version: i64) -> Option<&crate::settings::StoredMailSettings> {
        [self.settings.as_ref(), self.live_settings.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.version == version)
    }

    /// The version of what is saved, readable or not (0: nothing saved).
    pub fn settings_version(&self) -> i64 {
        match (&self.settings, self.unreadable_settings) {
            (Some(s), _) => s.version,
            (None, Some(u)) => u.version,
            (None, None) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(part: &str) -> NameSearch {
        NameSearch::parse(part).unwrap().unwrap()
    }

    fn name(n: &str) -> TenantName {
        TenantName::parse(n).unwrap()
    }

    #[test]
    fn a_name_is_found_whatever_its_case_and_width() {
        // Full-width Latin, half-width katakana, accented capitals, plain ASCII.
        for (part, found) in [
            ("shop", "ＳＨＯＰ さくら"),
            ("ＳＨＯＰ", "Sakura shop"),
            ("ｶﾌｪ", "カフェ・ド・サクラ"),
            ("école", "ÉCOLE DU SOIR"),
            ("１２３", "Bakery 123"),
            ("50%", "50% off"),
        ] {
            assert!(search(part).matches(&name(found)), "{part} in {found}");
        }
        for (part, missed) in [("shop", "Sakura Bakery"), ("カフェ", "cafe"), ("50%", "500 off")] {
            assert!(!search(part).matches(&name(missed)), "{part} not in {missed}");
        }
    }

    #[test]
    fn the_search_key_is_compatibility_normalised_then_lowered() {
        assert_eq!(name_search_key("ＳＨＯＰ ｶﾌｪ Ä"), "shop カフェ ä");
        assert_eq!(search("  ＡＢＣ  ").key(), "abc");
        assert_eq!(NameSearch::parse("   ").unwrap(), None);
        assert_eq!(
            NameSearch::parse(&"㍿".repeat(50)).unwrap().unwrap().key(),
            "株式会社".repeat(50)
        );
        assert_eq!(NameSearch::parse(&"㍿".repeat(51)), Err(ValueError::TooLong));
    }
}
