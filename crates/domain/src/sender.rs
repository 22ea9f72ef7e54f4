//! The effective sender: from which address a tenant's mail goes out right now, and
//! why. A pure function of plan, stored settings and the platform default.

use crate::plan::{Plan, SenderOverridePermit, sender_override_permit};
use crate::settings::MailSettings;
use crate::values::{EmailAddress, SenderName};

/// The platform's default sender (`MAILGATE_DEFAULT_FROM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSender {
    pub address: EmailAddress,
    pub name: Option<SenderName>,
}

impl PlatformSender {
    /// Parses `Name <addr@example.com>` or a bare address.
    pub fn parse(raw: &str) -> Result<Self, crate::values::ValueError> {
        let raw = raw.trim();
        match raw.rsplit_once('<') {
            Some((name, rest)) => {
                let addr = rest.strip_suffix('>').ok_or(crate::values::ValueError::InvalidFormat)?;
                let name = name.trim().trim_matches('"').trim();
                Ok(Self {
                    address: EmailAddress::parse(addr)?,
                    name: if name.is_empty() {
                        None
                    } else {
                        Some(SenderName::parse(name)?)
                    },
                })
            }
            None => Ok(Self {
                address: EmailAddress::parse(raw)?,
                name: None,
            }),
        }
    }
}

crate::coded_enum! {
    /// Whose server and address mail goes out from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SenderSource {
        Custom = "CUSTOM",
        PlatformDefault = "PLATFORM_DEFAULT",
    }
}

/// Why the sender is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderReason {
    /// The plan allows a custom sender and settings are saved.
    CustomSettingsActive(Plan),
    /// The plan allows a custom sender but nothing is saved.
    NoSettingsSaved,
    /// Settings may or may not be saved; the plan forbids using them.
    PlanForbids { plan: Plan, settings_saved: bool },
    /// The plan allows a custom sender and settings are saved, but they cannot be read
    /// back: the tenant's mail waits until they are saved again or cleared (clearing
    /// sends from the platform default, the address shown).
    SettingsUnreadable,
}

/// The route a tenant's mail takes. The custom route carries the permit, so it can only
/// exist for a plan that allows it.
#[derive(Debug, Clone, Copy)]
pub enum SenderRoute<'a> {
    Custom {
        permit: SenderOverridePermit,
        settings: &'a MailSettings,
    },
    PlatformDefault {
        reason: SenderReason,
    },
    /// Custom settings are saved but cannot be read back: nothing can be sent on this
    /// route until they are saved again or cleared.
    Unreadable {
        permit: SenderOverridePermit,
    },
}

/// Decides the route: custom only with a permit and saved settings.
pub fn sender_route(plan: Plan, settings: Option<&MailSettings>) -> SenderRoute<'_> {
    match (sender_override_permit(plan), settings) {
        (Ok(permit), Some(settings)) => SenderRoute::Custom { permit, settings },
        (Ok(_), None) => SenderRoute::PlatformDefault {
            reason: SenderReason::NoSettingsSaved,
        },
        (Err(_), saved) => SenderRoute::PlatformDefault {
            reason: SenderReason::PlanForbids {
                plan,
                settings_saved: saved.is_some(),
            },
        },
    }
}

/// The address and name mail goes out from now, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveSender {
    pub address: EmailAddress,
    pub name: Option<SenderName>,
    pub source: SenderSource,
    pub reason: SenderReason,
}

/// The effective sender of a tenant on `plan` with `settings` saved.
pub fn effective_sender(plan: Plan, settings: Option<&MailSettings>, platform: &PlatformSender) -> EffectiveSender {
    effective_sender_of(sender_route(plan, settings), platform)
}

/// The effective sender on `route`.
pub fn effective_sender_of(route: SenderRoute<'_>, platform: &PlatformSender) -> EffectiveSender {
    match route {
        SenderRoute::Unreadable { .. } => EffectiveSender {
            address: platform.address.clone(),
            name: platform.name.clone(),
            source: SenderSource::PlatformDefault,
            reason: SenderReason::SettingsUnreadable,
        },
        SenderRoute::Custom { permit, settings } => EffectiveSender {
            address: settings.from_address().clone(),
            name: settings.from_name().cloned(),
            source: SenderSource::Custom,
            reason: SenderReason::CustomSettingsActive(permit.plan()),
        },
        SenderRoute::PlatformDefault { reason } => EffectiveSender {
            address: platform.address.clone(),
            name: platform.name.clone(),
            source: SenderSource::PlatformDefault,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::MailSettingsDraft;

    fn settings() -> MailSettings {
        MailSettings::validate(
            &MailSettingsDraft {
                host: Some("smtp.example.com".into()),
                port: Some(25),
                from_address: Some("shop@example.com".into()),
                from_name: Some("ショップ".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn every_plan_with_and_without_settings() {
        let platform = PlatformSender::parse("Platform <noreply@platform.example>").unwrap();
        let s = settings();
        for plan in Plan::ALL {
            let with = effective_sender(plan, Some(&s), &platform);
            let without = effective_sender(plan, None, &platform);
            assert_eq!(without.source, SenderSource::PlatformDefault);
            assert_eq!(without.address.as_str(), "noreply@platform.example");
            if plan.can_override_sender() {
                assert_eq!(with.source, SenderSource::Custom);
                assert_eq!(with.address.as_str(), "shop@example.com");
                assert_eq!(without.reason, SenderReason::NoSettingsSaved);
            } else {
                assert_eq!(with.source, SenderSource::PlatformDefault);
                assert_eq!(
                    with.reason,
                    SenderReason::PlanForbids {
                        plan,
                        settings_saved: true
                    }
                );
                assert_eq!(
                    without.reason,
                    SenderReason::PlanForbids {
                        plan,
                        settings_saved: false
                    }
                );
            }
        }
    }

    #[test]
    fn platform_sender_forms() {
        let p = PlatformSender::parse("\"Platform\" <noreply@example.com>").unwrap();
        assert_eq!(p.name.unwrap().as_str(), "Platform");
        assert!(PlatformSender::parse("noreply@example.com").unwrap().name.is_none());
        assert!(PlatformSender::parse("Bad <no>").is_err());
    }
}
