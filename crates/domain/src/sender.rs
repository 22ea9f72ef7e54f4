//! The effective sender: from which address a tenant's mail goes out right now, and
//! why. A pure function of plan, stored settings and the platform default.

use crate::health::SettingsState;
use crate::plan::{Plan, SenderOverridePermit, sender_override_permit};
use crate::settings::{MailSettings, StoredMailSettings};
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
    /// The plan allows a custom sender and a live settings version carries the mail (the
    /// saved one, or the one before it while the saved one waits for its test).
    CustomSettingsActive(Plan),
    /// The saved settings wait for a successful test and no earlier version is live:
    /// mail goes out from the platform default until then.
    PendingVerification,
    /// Real deliveries kept failing for a configuration fault: mail goes out from the
    /// platform default, replies going to the tenant's address, until a version is
    /// proven again.
    Suspended,
    /// The plan allows a custom sender but nothing is saved.
    NoSettingsSaved,
    /// Settings may or may not be saved; the plan forbids using them.
    PlanForbids { plan: Plan, settings_saved: bool },
    /// The plan allows a custom sender and settings are saved, but they cannot be read
    /// back: the tenant's mail waits until they are saved again or cleared (clearing
    /// sends from the platform default, the address shown).
    SettingsUnreadable,
}

/// A mailbox replies should go to: the tenant's own `fromName <fromAddress>` when its mail
/// goes out from the platform default in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub address: EmailAddress,
    pub name: Option<SenderName>,
}

impl ReplyTo {
    pub fn of(settings: &MailSettings) -> Self {
        Self {
            address: settings.from_address().clone(),
            name: settings.from_name().cloned(),
        }
    }
}

/// The route a tenant's mail takes. The custom route carries the permit, so it can only
/// exist for a plan that allows it, and the version whose settings it uses.
#[derive(Debug, Clone)]
pub enum SenderRoute<'a> {
    Custom {
        permit: SenderOverridePermit,
        settings: &'a MailSettings,
        version: i64,
    },
    PlatformDefault {
        reason: SenderReason,
        /// Set when the tenant's own address stands behind the mail (its settings are
        /// suspended, or a delivery fell back): replies go there.
        reply_to: Option<ReplyTo>,
    },
    /// Custom settings are saved but cannot be read back: nothing can be sent on this
    /// route until they are saved again or cleared.
    Unreadable { permit: SenderOverridePermit },
}

/// Decides the route from the plan and the saved settings: custom only with a permit and
/// a live version — the saved one, or `live` (the version before it) while the saved one
/// waits for its test; the platform default otherwise, with the tenant's Reply-To when
/// the version in force is suspended.
pub fn sender_route<'a>(
    plan: Plan,
    saved: Option<&'a StoredMailSettings>,
    live: Option<&'a StoredMailSettings>,
) -> SenderRoute<'a> {
    let permit = match sender_override_permit(plan) {
        Ok(permit) => permit,
        Err(_) => {
            return SenderRoute::PlatformDefault {
                reason: SenderReason::PlanForbids {
                    plan,
                    settings_saved: saved.is_some(),
                },
                reply_to: None,
            };
        }
    };
    let Some(saved) = saved else {
        return SenderRoute::PlatformDefault {
            reason: SenderReason::NoSettingsSaved,
            reply_to: None,
        };
    };
    let in_force = match (saved.health.state, live) {
        (SettingsState::PendingVerification, Some(live)) => live,
        (SettingsState::PendingVerification, None) => {
            return SenderRoute::PlatformDefault {
                reason: SenderReason::PendingVerification,
                reply_to: None,
            };
        }
        _ => saved,
    };
    match in_force.health.state {
        SettingsState::Live => SenderRoute::Custom {
            permit,
            settings: &in_force.settings,
            version: in_force.version,
        },
        SettingsState::Suspended => SenderRoute::PlatformDefault {
            reason: SenderReason::Suspended,
            reply_to: Some(ReplyTo::of(&in_force.settings)),
        },
        SettingsState::PendingVerification => SenderRoute::PlatformDefault {
            reason: SenderReason::PendingVerification,
            reply_to: None,
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
    /// Where replies go when it is not the sender itself.
    pub reply_to: Option<ReplyTo>,
}

/// The effective sender on `route`.
pub fn effective_sender_of(route: SenderRoute<'_>, platform: &PlatformSender) -> EffectiveSender {
    match route {
        SenderRoute::Unreadable { .. } => EffectiveSender {
            address: platform.address.clone(),
            name: platform.name.clone(),
            source: SenderSource::PlatformDefault,
            reason: SenderReason::SettingsUnreadable,
            reply_to: None,
        },
        SenderRoute::Custom { permit, settings, .. } => EffectiveSender {
            address: settings.from_address().clone(),
            name: settings.from_name().cloned(),
            source: SenderSource::Custom,
            reason: SenderReason::CustomSettingsActive(permit.plan()),
            reply_to: None,
        },
        SenderRoute::PlatformDefault { reason, reply_to } => EffectiveSender {
            address: platform.address.clone(),
            name: platform.name.clone(),
            source: SenderSource::PlatformDefault,
            reason,
            reply_to,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::MailSettingsDraft;

    fn stored(state: SettingsState, version: i64) -> StoredMailSettings {
        StoredMailSettings {
            settings: settings(),
            version,
            updated_at: chrono::Utc::now(),
            health: crate::health::SettingsHealth::new(state, chrono::Utc::now()),
        }
    }

    fn effective_sender(plan: Plan, saved: Option<&StoredMailSettings>, platform: &PlatformSender) -> EffectiveSender {
        effective_sender_of(sender_route(plan, saved, None), platform)
    }

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
        let s = stored(SettingsState::Live, 1);
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
    fn pending_keeps_the_version_before_and_suspended_replies_to_the_tenant() {
        let platform = PlatformSender::parse("noreply@platform.example").unwrap();
        let plan = Plan::Biz;
        let pending = stored(SettingsState::PendingVerification, 2);
        let live = stored(SettingsState::Live, 1);
        let suspended = stored(SettingsState::Suspended, 1);
        let alone = effective_sender_of(sender_route(plan, Some(&pending), None), &platform);
        assert_eq!(alone.reason, SenderReason::PendingVerification);
        assert_eq!(alone.source, SenderSource::PlatformDefault);
        assert_eq!(alone.reply_to, None);
        match sender_route(plan, Some(&pending), Some(&live)) {
            SenderRoute::Custom { version, .. } => assert_eq!(version, 1, "the live version before the save"),
            other => panic!("{other:?}"),
        }
        for route in [
            sender_route(plan, Some(&suspended), None),
            sender_route(plan, Some(&pending), Some(&suspended)),
        ] {
            let e = effective_sender_of(route, &platform);
            assert_eq!(e.reason, SenderReason::Suspended);
            assert_eq!(e.address.as_str(), "noreply@platform.example");
            let reply_to = e.reply_to.expect("replies go to the tenant");
            assert_eq!(reply_to.address.as_str(), "shop@example.com");
            assert_eq!(reply_to.name.unwrap().as_str(), "ショップ");
        }
        let forbidden = effective_sender_of(sender_route(Plan::Pro, Some(&suspended), None), &platform);
        assert!(matches!(forbidden.reason, SenderReason::PlanForbids { .. }));
        assert_eq!(
            forbidden.reply_to, None,
            "the plan forbids the tenant's sender altogether"
        );
    }

    #[test]
    fn platform_sender_forms() {
        let p = PlatformSender::parse("\"Platform\" <noreply@example.com>").unwrap();
        assert_eq!(p.name.unwrap().as_str(), "Platform");
        assert!(PlatformSender::parse("noreply@example.com").unwrap().name.is_none());
        assert!(PlatformSender::parse("Bad <no>").is_err());
    }
}
