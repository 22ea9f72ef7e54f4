//! The setup assistant's decisions: the plan gate, what is looked up, the limits, and
//! the probe's place in the test-mail limit and the audit trail.

use domain::Plan;
use domain::audit::AuditAction;
use domain::error::{Error, FieldCode};
use domain::fakes::{Fakes, admin};
use domain::services::TEST_MAILS_PER_MINUTE;

use crate::{draft, field_codes};

#[tokio::test]
async fn plans_without_a_custom_sender_get_no_assistant_and_nothing_is_looked_up() {
    let fakes = Fakes::new();
    let assistant = fakes.assistant_service();
    let id = fakes.tenants.add("Site", Plan::Economy);
    let refused = assistant.discover_mail_server(&admin(id), id, "info@example.com").await;
    assert!(
        matches!(refused, Err(Error::PlanForbidsCustomSender(Plan::Economy))),
        "{refused:?}"
    );
    let probe = assistant.probe_mail_server(&admin(id), id, &draft()).await;
    assert!(matches!(probe, Err(Error::PlanForbidsCustomSender(_))));
    assert!(fakes.lookups.asked().is_empty());
}

#[tokio::test]
async fn discovery_checks_the_address_first_and_is_limited_per_tenant() {
    let fakes = Fakes::new();
    let assistant = fakes.assistant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    let bad = assistant
        .discover_mail_server(&admin(id), id, "nobody")
        .await
        .unwrap_err();
    assert_eq!(field_codes(bad), vec![("fromAddress", FieldCode::InvalidFormat)]);
    assert!(fakes.lookups.asked().is_empty(), "a bad address costs no lookup");

    let found = assistant
        .discover_mail_server(&admin(id), id, "info@example.com")
        .await
        .unwrap();
    assert_eq!(found.domain, "example.com");
    let mut answered = 1;
    while assistant
        .discover_mail_server(&admin(id), id, "info@example.com")
        .await
        .is_ok()
    {
        answered += 1;
        assert!(answered < 1_000, "discovery is never limited");
    }
    assert!(matches!(
        assistant.discover_mail_server(&admin(id), id, "info@example.com").await,
        Err(Error::RateLimited)
    ));
    assert_eq!(fakes.lookups.asked().len(), answered, "a refused lookup is not made");
    // Another tenant has its own budget.
    let other = fakes.tenants.add("Other", Plan::Share);
    assistant
        .discover_mail_server(&admin(other), other, "info@example.org")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_domain_check_that_runs_out_of_time_says_so() {
    let fakes = Fakes::new();
    let id = fakes.tenants.add("Site", Plan::Share);
    let checked = fakes
        .assistant_service()
        .check_sender_domain(&admin(id), id, "info@example.com", Some(&draft()))
        .await;
    assert!(matches!(checked, Err(Error::TimedOut)), "{checked:?}");
}

#[tokio::test]
async fn a_probe_counts_as_a_test_mail_and_is_in_the_trail() {
    let fakes = Fakes::new();
    let assistant = fakes.assistant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    let report = assistant.probe_mail_server(&admin(id), id, &draft()).await.unwrap();
    assert!(report.best().is_none(), "the fake transport finds no working pair");
    let audit = fakes.tenants.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, AuditAction::MailServerProbed);
    assert_eq!(fakes.coordination.test_mails(id), 1);

    for _ in 1..TEST_MAILS_PER_MINUTE {
        assistant.probe_mail_server(&admin(id), id, &draft()).await.unwrap();
    }
    assert!(matches!(
        assistant.probe_mail_server(&admin(id), id, &draft()).await,
        Err(Error::RateLimited)
    ));
    let tests = fakes
        .tenant_service()
        .send_test_mail(&admin(id), id, "me@example.org", Some(&draft()), domain::Locale::En)
        .await;
    assert!(
        matches!(tests, Err(Error::RateLimited)),
        "probes and test mails share the limit"
    );
}
