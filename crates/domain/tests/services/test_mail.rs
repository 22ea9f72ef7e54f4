//! Test mails and activation: what proves a saved version (a test, its code), the
//! limits, what the trail keeps.

use domain::Plan;
use domain::audit::AuditAction;
use domain::error::{Error, FieldCode};
use domain::fakes::{Fakes, Server, admin, operator};
use domain::health::{ActivationMode, SettingsState};
use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::services::{TEST_MAILS_PER_CALLER_PER_MINUTE, TEST_MAILS_PER_MINUTE};
use domain::settings::{MailSettingsDraft, SettingsWarning};
use domain::{Locale, TenantId};

use crate::{draft, field_codes};

/// A Share tenant with settings saved (pending), and the service.
async fn saved(fakes: &Fakes, activation: ActivationMode) -> (domain::services::TenantService, TenantId) {
    let tenants = fakes.tenant_service().with_activation(activation);
    let id = fakes.tenants.add("Site", Plan::Share);
    tenants
        .update_mail_settings(&admin(id), id, &draft(), None)
        .await
        .unwrap();
    (tenants, id)
}

fn state(fakes: &Fakes, id: TenantId) -> SettingsState {
    fakes.tenants.record(id).unwrap().settings.unwrap().health.state
}

#[tokio::test]
async fn a_successful_test_of_the_saved_version_makes_it_live_and_a_failed_one_does_not() {
    let fakes = Fakes::new();
    let (tenants, id) = saved(&fakes, ActivationMode::Test).await;
    fakes.mailer.script_tests(Server::Fails(SendFailure {
        smtp_code: Some(535),
        enhanced_code: Some("5.7.8".into()),
        server_message: Some("authentication failed".into()),
        ..SendFailure::new(SendStage::Auth, FailureKind::Rejected)
    }));
    let failed = tenants
        .send_test_mail(&admin(id), id, "me@example.org", None, Locale::Ja)
        .await
        .unwrap();
    assert!(failed.result.is_err() && !failed.activated);
    assert!(failed.diagnosis.is_some(), "a failure comes with what to check");
    assert_eq!(state(&fakes, id), SettingsState::PendingVerification);

    fakes.mailer.script_tests(Server::Accepts);
    let ok = tenants
        .send_test_mail(&admin(id), id, "me@example.org", None, Locale::Ja)
        .await
        .unwrap();
    assert!(ok.activated && ok.result.is_ok());
    assert_eq!(state(&fakes, id), SettingsState::Live);
    let actions: Vec<AuditAction> = fakes.tenants.audit().iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::MailSettingsSaved,
            AuditAction::TestMailSent,
            AuditAction::TestMailSent,
            AuditAction::MailSettingsLive
        ]
    );
    let test = &fakes.mailer.test_mails()[0];
    assert_eq!(
        test.mail.subject.as_str(),
        "Mailgate テストメール",
        "in the caller's language"
    );
    // The operator's name for the service, where it has one.
    let named = tenants.clone().with_product_name("さくらメール配信");
    named
        .send_test_mail(&admin(id), id, "me@example.org", None, Locale::En)
        .await
        .unwrap();
    assert_eq!(
        fakes.mailer.test_mails().last().unwrap().mail.subject.as_str(),
        "さくらメール配信 test mail"
    );
}

#[tokio::test]
async fn a_test_of_a_draft_proves_nothing_about_what_is_saved() {
    let fakes = Fakes::new();
    let (tenants, id) = saved(&fakes, ActivationMode::Test).await;
    let outcome = tenants
        .send_test_mail(&admin(id), id, "me@example.org", Some(&draft()), Locale::En)
        .await
        .unwrap();
    assert!(outcome.result.is_ok() && !outcome.activated);
    assert_eq!(state(&fakes, id), SettingsState::PendingVerification);
}

#[tokio::test]
async fn in_code_mode_the_test_carries_a_code_and_only_that_code_activates() {
    let fakes = Fakes::new();
    let (tenants, id) = saved(&fakes, ActivationMode::Code).await;
    let outcome = tenants
        .send_test_mail(&admin(id), id, "me@example.org", None, Locale::En)
        .await
        .unwrap();
    assert!(outcome.activation_code_sent && !outcome.activated);
    assert_eq!(state(&fakes, id), SettingsState::PendingVerification);
    let text = fakes.mailer.test_mails()[0].mail.text.clone();
    let code = text
        .lines()
        .find_map(|l| l.strip_prefix("Activation code: "))
        .expect("the mail carries the code")
        .trim()
        .to_owned();

    let wrong = tenants
        .activate_mail_settings(&admin(id), id, "WRONG0")
        .await
        .unwrap_err();
    assert_eq!(field_codes(wrong), vec![("code", FieldCode::ActivationCodeInvalid)]);
    let live = tenants.activate_mail_settings(&admin(id), id, &code).await.unwrap();
    assert_eq!(live.health.state, SettingsState::Live);
    let again = tenants.activate_mail_settings(&admin(id), id, &code).await.unwrap_err();
    assert_eq!(field_codes(again), vec![("code", FieldCode::AlreadyLive)]);
}

#[tokio::test]
async fn a_test_that_raced_a_new_save_activates_nothing() {
    let fakes = Fakes::new();
    let (tenants, id) = saved(&fakes, ActivationMode::Test).await;
    // The test mail goes through, but only after a second save replaced version 1.
    fakes
        .mailer
        .script_tests(Server::AcceptsAfter(std::time::Duration::from_millis(200)));
    let testing = {
        let tenants = tenants.clone();
        tokio::spawn(async move {
            tenants
                .send_test_mail(&admin(id), id, "me@example.org", None, Locale::En)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    tenants
        .update_mail_settings(
            &admin(id),
            id,
            &MailSettingsDraft {
                host: Some("new.example.com".into()),
                ..draft()
            },
            None,
        )
        .await
        .unwrap();
    let outcome = testing.await.unwrap().unwrap();
    assert!(outcome.result.is_ok(), "the test itself went through");
    assert!(!outcome.activated, "it proved a version that is gone");
    let versions = fakes.tenants.versions(id);
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].health.state, SettingsState::PendingVerification);
}

#[tokio::test]
async fn test_mails_are_limited_per_tenant_and_per_caller_before_any_connection() {
    let fakes = Fakes::new();
    let (tenants, id) = saved(&fakes, ActivationMode::Test).await;
    for _ in 0..TEST_MAILS_PER_MINUTE {
        tenants
            .send_test_mail(&admin(id), id, "me@example.org", Some(&draft()), Locale::En)
            .await
            .unwrap();
    }
    let refused = tenants
        .send_test_mail(&admin(id), id, "me@example.org", Some(&draft()), Locale::En)
        .await;
    assert!(matches!(refused, Err(Error::RateLimited)), "{refused:?}");
    assert_eq!(fakes.mailer.test_mails().len(), TEST_MAILS_PER_MINUTE as usize);

    // One operator across many tenants: the caller's own limit.
    let mut sent = 0;
    for round in 0.. {
        assert!(round < 10, "the caller's limit never came: {sent} sent");
        let other = fakes.tenants.add("Other", Plan::Biz);
        let mut refused = false;
        for _ in 0..TEST_MAILS_PER_MINUTE {
            match tenants
                .send_test_mail(&operator(), other, "me@example.org", Some(&draft()), Locale::En)
                .await
            {
                Ok(_) => sent += 1,
                Err(Error::RateLimited) => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        if refused {
            break;
        }
    }
    assert_eq!(sent, TEST_MAILS_PER_CALLER_PER_MINUTE);
}

#[tokio::test]
async fn a_test_needs_a_recipient_and_settings_and_warns_about_the_senders_own_domain() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    let no_settings = tenants
        .send_test_mail(&admin(id), id, "me@example.org", None, Locale::En)
        .await
        .unwrap_err();
    assert_eq!(field_codes(no_settings), vec![("settings", FieldCode::Required)]);
    let no_to = tenants
        .send_test_mail(&admin(id), id, "", Some(&draft()), Locale::En)
        .await
        .unwrap_err();
    assert_eq!(field_codes(no_to), vec![("to", FieldCode::Required)]);
    assert!(fakes.mailer.test_mails().is_empty());

    let own_domain = tenants
        .send_test_mail(&admin(id), id, "someone@example.com", Some(&draft()), Locale::En)
        .await
        .unwrap();
    assert_eq!(own_domain.warnings, vec![SettingsWarning::RecipientInSenderDomain]);
}

#[tokio::test]
async fn a_basic_tenant_cannot_test_its_own_server() {
    let fakes = Fakes::new();
    let id = fakes.tenants.add("Site", Plan::Basic);
    let refused = fakes
        .tenant_service()
        .send_test_mail(&admin(id), id, "me@example.org", Some(&draft()), Locale::En)
        .await;
    assert!(matches!(refused, Err(Error::PlanForbidsCustomSender(Plan::Basic))));
    assert!(fakes.mailer.test_mails().is_empty());
}
