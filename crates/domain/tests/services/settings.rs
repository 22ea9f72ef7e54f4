//! Saving and clearing mail settings: the plan gate, versions, what a save keeps, the
//! warnings only a save can give.

use domain::audit::AuditAction;
use domain::error::{Error, FieldCode};
use domain::fakes::{Fakes, admin, operator};
use domain::health::{ActivationMode, SettingsState};
use domain::ports::HostCheck;
use domain::settings::{MailSettingsDraft, SettingsWarning};
use domain::tenant::TenantId;
use domain::{Plan, SenderSource};
use secrecy::SecretString;

use crate::{draft, field_codes};

#[tokio::test]
async fn plans_without_a_custom_sender_cannot_save_and_nothing_is_written() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    for plan in [Plan::Economy, Plan::Basic, Plan::Pro] {
        let id = fakes.tenants.add("Site", plan);
        let refused = tenants.update_mail_settings(&admin(id), id, &draft(), None).await;
        assert!(
            matches!(refused, Err(Error::PlanForbidsCustomSender(p)) if p == plan),
            "{plan:?}: {refused:?}"
        );
        assert!(fakes.tenants.versions(id).is_empty());
    }
    assert!(fakes.tenants.audit().is_empty());
}

#[tokio::test]
async fn a_save_waits_for_its_test_and_the_live_version_carries_the_mail_meanwhile() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);

    let first = tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.stored.version, 1);
    assert_eq!(first.stored.health.state, SettingsState::PendingVerification);
    let view = tenants.tenant(&admin(id), id).await.unwrap().unwrap();
    assert_eq!(
        view.effective_sender().source,
        SenderSource::PlatformDefault,
        "unproven settings carry no mail"
    );

    tenants
        .send_test_mail(&admin(id), id, "me@example.org", None, domain::Locale::En)
        .await
        .unwrap();
    let live = fakes.tenants.record(id).unwrap();
    assert_eq!(live.settings.as_ref().unwrap().health.state, SettingsState::Live);
    let view = tenants.tenant(&admin(id), id).await.unwrap().unwrap();
    assert_eq!(view.effective_sender().source, SenderSource::Custom);
    assert_eq!(view.effective_sender().address.as_str(), "info@example.com");

    // A new save waits for its own test; the live one stays beside it.
    let second = MailSettingsDraft {
        host: Some("smtp2.example.com".into()),
        ..draft()
    };
    let saved = tenants
        .update_mail_settings(&admin(id), id, &second, Some(1))
        .await
        .unwrap()
        .unwrap();
    // Versions only grow: every write (the activation too) took one.
    let version = saved.stored.version;
    assert!(version > 1, "{version}");
    let kept: Vec<(i64, SettingsState)> = fakes
        .tenants
        .versions(id)
        .iter()
        .map(|v| (v.version, v.health.state))
        .collect();
    assert_eq!(
        kept,
        vec![(1, SettingsState::Live), (version, SettingsState::PendingVerification)]
    );
    let record = fakes.tenants.record(id).unwrap();
    assert_eq!(record.live_settings.as_ref().unwrap().version, 1);
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_naming_the_current_one_and_changes_nothing() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Biz);
    tenants
        .update_mail_settings(&admin(id), id, &draft(), Some(0))
        .await
        .unwrap();

    let stale = tenants.update_mail_settings(&admin(id), id, &draft(), Some(0)).await;
    assert!(matches!(stale, Err(Error::VersionConflict { current: 1 })), "{stale:?}");
    let clear = tenants.clear_mail_settings(&admin(id), id, Some(7)).await;
    assert!(matches!(clear, Err(Error::VersionConflict { current: 1 })), "{clear:?}");
    assert_eq!(fakes.tenants.versions(id).len(), 1);
    assert_eq!(fakes.tenants.audit().len(), 1, "only the first save is in the trail");

    // Without a version the caller takes whatever is stored.
    let renamed = MailSettingsDraft {
        from_name: Some("Example Shop".into()),
        ..draft()
    };
    let again = tenants
        .update_mail_settings(&admin(id), id, &renamed, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.stored.version, 2);
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once_and_nothing_is_stored() {
    let fakes = Fakes::new();
    let id = fakes.tenants.add("Site", Plan::Share);
    let bad = MailSettingsDraft {
        host: Some("".into()),
        port: Some(70_000),
        from_address: Some("nobody".into()),
        ..draft()
    };
    let error = fakes
        .tenant_service()
        .update_mail_settings(&admin(id), id, &bad, None)
        .await
        .unwrap_err();
    let fields: Vec<&str> = field_codes(error).into_iter().map(|(f, _)| f).collect();
    for field in ["host", "port", "fromAddress"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    assert!(fakes.tenants.versions(id).is_empty() && fakes.tenants.audit().is_empty());
}

#[tokio::test]
async fn a_port_outside_the_policy_is_refused() {
    let fakes = Fakes::new();
    let id = fakes.tenants.add("Site", Plan::Share);
    let error = fakes
        .tenant_service()
        .update_mail_settings(
            &admin(id),
            id,
            &MailSettingsDraft {
                port: Some(2526),
                ..draft()
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(field_codes(error), vec![("port", FieldCode::PortNotAllowed)]);
}

#[tokio::test]
async fn a_host_that_does_not_resolve_is_saved_with_a_warning_and_an_internal_one_is_refused() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    fakes.mailer.host_check("late.example.com", HostCheck::Unresolved);
    fakes.mailer.host_check("inside.example.com", HostCheck::Forbidden);

    let late = tenants
        .update_mail_settings(
            &admin(id),
            id,
            &MailSettingsDraft {
                host: Some("late.example.com".into()),
                ..draft()
            },
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.warnings, vec![SettingsWarning::HostNotResolved]);

    let error = tenants
        .update_mail_settings(
            &admin(id),
            id,
            &MailSettingsDraft {
                host: Some("inside.example.com".into()),
                ..draft()
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(field_codes(error), vec![("host", FieldCode::ForbiddenAddress)]);
    assert_eq!(fakes.tenants.versions(id).len(), 1, "the refused save stored nothing");
}

#[tokio::test]
async fn the_stored_password_is_kept_when_the_form_leaves_it_out() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap();
    let without_password = MailSettingsDraft {
        password: None,
        from_name: Some("Renamed".into()),
        ..draft()
    };
    let saved = tenants
        .update_mail_settings(&admin(id), id, &without_password, None)
        .await
        .unwrap()
        .unwrap();
    assert!(saved.stored.settings.password().is_some());

    // Another server does not get the old password.
    let moved = MailSettingsDraft {
        host: Some("elsewhere.example.net".into()),
        password: None,
        ..draft()
    };
    let error = tenants
        .update_mail_settings(&admin(id), id, &moved, None)
        .await
        .unwrap_err();
    assert!(
        field_codes(error).contains(&("password", FieldCode::PasswordReentryRequired)),
        "a password typed for one server is never sent to another"
    );
}

#[tokio::test]
async fn an_all_empty_form_clears_and_clearing_nothing_writes_nothing() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    tenants.clear_mail_settings(&admin(id), id, None).await.unwrap();
    assert!(fakes.tenants.audit().is_empty(), "nothing saved: nothing to clear");

    tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap();
    let empty = MailSettingsDraft {
        host: Some(String::new()),
        from_address: Some(String::new()),
        password: Some(SecretString::from("")),
        ..MailSettingsDraft::default()
    };
    let cleared = tenants
        .update_mail_settings(&admin(id), id, &empty, None)
        .await
        .unwrap();
    assert!(cleared.is_none());
    assert!(fakes.tenants.versions(id).is_empty());
    let actions: Vec<AuditAction> = fakes.tenants.audit().iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        vec![AuditAction::MailSettingsSaved, AuditAction::MailSettingsCleared]
    );

    // The next save gets a version never seen before.
    let next = tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(next.stored.version > 1);
}

#[tokio::test]
async fn only_the_tenants_admins_and_operators_edit_its_settings() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    let other = TenantId::generate();
    assert!(
        matches!(
            tenants.update_mail_settings(&admin(other), id, &draft(), None).await,
            Err(Error::NotFound)
        ),
        "another tenant's admin cannot tell the tenant exists"
    );
    assert!(matches!(
        tenants
            .update_mail_settings(&domain::fakes::service(), id, &draft(), None)
            .await,
        Err(Error::Forbidden)
    ));
    assert!(
        tenants
            .update_mail_settings(&operator(), id, &draft(), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn with_activation_on_save_settings_are_live_at_once() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service().with_activation(ActivationMode::Save);
    let id = fakes.tenants.add("Site", Plan::Share);
    let saved = tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.stored.health.state, SettingsState::Live);
    let view = tenants.tenant(&admin(id), id).await.unwrap().unwrap();
    assert_eq!(view.effective_sender().source, SenderSource::Custom);
}

#[tokio::test]
async fn a_store_that_fails_leaves_the_error_internal_and_nothing_half_written() {
    let fakes = Fakes::new();
    let id = fakes.tenants.add("Site", Plan::Share);
    fakes.tenants.fail_writes();
    let failed = fakes
        .tenant_service()
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await;
    assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
    assert!(fakes.tenants.versions(id).is_empty() && fakes.tenants.audit().is_empty());
    assert!(
        fakes.views.changed().is_empty() && fakes.tenants.events().is_empty() && fakes.tenants.announced().is_empty(),
        "nothing changed: nothing to drop, no event, no announcement"
    );
}

#[tokio::test]
async fn a_save_and_a_clear_store_their_events_and_announcements_and_drop_what_this_process_kept() {
    use domain::webhook::EventType;
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    let saved = tenants.update_mail_settings(&admin(id), id, &draft(), None).await;
    assert!(saved.is_ok(), "{saved:?}");
    let cleared = tenants.clear_mail_settings(&admin(id), id, Some(1)).await;
    assert!(cleared.is_ok(), "{cleared:?}");

    let kinds: Vec<EventType> = fakes.tenants.events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventType::MailSettingsSaved, EventType::MailSettingsCleared]
    );
    assert_eq!(fakes.tenants.announced(), vec![id, id], "other processes hear of both");
    assert_eq!(
        fakes.views.changed(),
        vec![id, id],
        "and this one drops what it kept, twice"
    );
}

#[tokio::test]
async fn saving_what_is_saved_writes_nothing_and_live_settings_stay_live() {
    use domain::change::ChangeRecord;
    use domain::ports::TenantStore;
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap();
    let live = domain::audit::AuditEntry::new(
        id,
        &admin(id),
        AuditAction::MailSettingsLive,
        vec![],
        chrono::Utc::now(),
    );
    fakes
        .tenants
        .activate_mail_settings(id, 1, chrono::Utc::now(), &ChangeRecord::of(live))
        .await
        .unwrap();
    let trail = fakes.tenants.audit().len();

    // The same form again, with the password typed again or left empty (kept): unchanged.
    let kept = MailSettingsDraft {
        password: None,
        ..draft()
    };
    for same in [draft(), kept] {
        let saved = tenants
            .update_mail_settings(&admin(id), id, &same, Some(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (saved.stored.version, saved.stored.health.state),
            (1, SettingsState::Live)
        );
    }
    assert_eq!(fakes.tenants.versions(id).len(), 1);
    assert_eq!(fakes.tenants.audit().len(), trail, "nothing written, nothing audited");

    // One field changed (the password too counts): a new version that waits for its test.
    let changed = MailSettingsDraft {
        password: Some(SecretString::from("an0ther-Passw0rd")),
        ..draft()
    };
    let saved = tenants
        .update_mail_settings(&admin(id), id, &changed, Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.stored.health.state, SettingsState::PendingVerification);
    assert!(saved.stored.version > 1);
}

#[tokio::test]
async fn saving_a_suspended_version_unchanged_saves_it_anew_to_be_proven_again() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap();
    let mut record = fakes.tenants.record(id).unwrap();
    let mut suspended = record.settings.take().unwrap();
    suspended.health = domain::health::SettingsHealth::new(SettingsState::Suspended, chrono::Utc::now());
    fakes.tenants.put(record.tenant, Some(suspended));

    let saved = tenants
        .update_mail_settings(&admin(id), id, &draft(), Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.stored.health.state, SettingsState::PendingVerification);
    assert!(saved.stored.version > 1, "a new version, waiting for its test");
}
