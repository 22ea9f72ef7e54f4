//! Tenants and plans: who may create and move them, what each writes.

use domain::Plan;
use domain::audit::{AuditAction, TrailOrder};
use domain::error::{Error, FieldCode};
use domain::fakes::{Fakes, admin, operator, service};
use domain::tenant::TenantId;

use crate::field_codes;

#[tokio::test]
async fn only_operators_create_tenants_and_each_creation_is_audited() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let other = TenantId::generate();
    for caller in [admin(other), service()] {
        assert!(matches!(
            tenants.create_tenant(&caller, "Site", Plan::Share).await,
            Err(Error::Forbidden)
        ));
    }
    assert!(fakes.tenants.audit().is_empty(), "a refusal writes nothing");

    let view = tenants
        .create_tenant(&operator(), "  Site  ", Plan::Share)
        .await
        .unwrap();
    assert_eq!(view.tenant().name.as_str(), "Site", "names are trimmed");
    let audit = fakes.tenants.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, AuditAction::TenantCreated);
    assert_eq!(audit[0].tenant_id, view.tenant().id);
}

#[tokio::test]
async fn a_bad_name_and_contact_are_both_reported_and_nothing_is_stored() {
    let fakes = Fakes::new();
    let error = fakes
        .tenant_service()
        .create_tenant_with_contact(&operator(), "", Plan::Basic, Some("not an address"))
        .await
        .unwrap_err();
    assert_eq!(
        field_codes(error),
        vec![
            ("name", FieldCode::Required),
            ("contactEmail", FieldCode::InvalidFormat)
        ]
    );
    assert!(fakes.tenants.audit().is_empty());
}

#[tokio::test]
async fn a_plan_change_writes_its_audit_entry_event_and_announcement_and_drops_what_is_kept_but_the_same_plan_writes_nothing()
 {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Basic);

    let same = tenants.change_plan(&operator(), id, Plan::Basic).await.unwrap();
    assert_eq!(same.tenant().plan, Plan::Basic);
    assert!(fakes.tenants.audit().is_empty() && fakes.views.changed().is_empty());
    assert!(fakes.tenants.events().is_empty() && fakes.tenants.announced().is_empty());

    let moved = tenants.change_plan(&operator(), id, Plan::Biz).await.unwrap();
    assert_eq!(moved.tenant().plan, Plan::Biz);
    assert_eq!(fakes.tenants.audit()[0].action, AuditAction::PlanChanged);
    let events = fakes.tenants.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, domain::webhook::EventType::TenantPlanChanged);
    assert!(events[0].body.contains("\"from\":\"BASIC\"") && events[0].body.contains("\"to\":\"BIZ\""));
    assert_eq!(fakes.tenants.announced(), vec![id], "other processes are told");
    assert_eq!(
        fakes.views.changed(),
        vec![id],
        "this process drops what it kept: the next mail uses the new plan's route"
    );

    assert!(matches!(
        tenants.change_plan(&admin(id), id, Plan::Share).await,
        Err(Error::Forbidden)
    ));
    assert!(matches!(
        tenants
            .change_plan(&operator(), TenantId::generate(), Plan::Share)
            .await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn a_tenant_admin_sees_only_its_own_tenant() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let mine = fakes.tenants.add("Mine", Plan::Share);
    let theirs = fakes.tenants.add("Theirs", Plan::Share);
    assert!(tenants.tenant(&admin(mine), mine).await.unwrap().is_some());
    assert!(
        tenants.tenant(&admin(mine), theirs).await.unwrap().is_none(),
        "another tenant reads as absent, not as forbidden"
    );
    assert!(matches!(
        tenants.tenants(&admin(mine), None, None, None, 10).await,
        Err(Error::Forbidden)
    ));
}

#[tokio::test]
async fn tenants_page_in_creation_order_and_say_when_more_follow() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let ids: Vec<TenantId> = (0..5)
        .map(|n| fakes.tenants.add(&format!("Site {n}"), Plan::Pro))
        .collect();
    fakes.tenants.add("On Share", Plan::Share);

    let first = tenants
        .tenants(&operator(), Some(Plan::Pro), None, None, 2)
        .await
        .unwrap();
    assert!(first.has_next_page);
    let seen: Vec<TenantId> = first.items.iter().map(|v| v.tenant().id).collect();
    assert_eq!(seen, ids[..2]);
    let rest = tenants
        .tenants(&operator(), Some(Plan::Pro), None, Some(ids[1]), 10)
        .await
        .unwrap();
    assert!(!rest.has_next_page);
    assert_eq!(rest.items.len(), 3, "only Pro tenants, after the cursor");
}

#[tokio::test]
async fn operators_find_tenants_by_part_of_their_name() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let bakery = fakes.tenants.add("Sakura Bakery", Plan::Share);
    let flowers = fakes.tenants.add("さくら花店", Plan::Basic);
    let named = |part: &'static str| {
        let tenants = &tenants;
        async move {
            let page = tenants.tenants(&operator(), None, Some(part), None, 10).await.unwrap();
            page.items.iter().map(|v| v.tenant().id).collect::<Vec<_>>()
        }
    };
    assert_eq!(named("bAKERY").await, vec![bakery], "A–Z in either case");
    assert_eq!(named("花店").await, vec![flowers]);
    assert_eq!(
        named("  ").await,
        vec![bakery, flowers],
        "a blank search finds every tenant"
    );
    let too_long = "x".repeat(201);
    let refused = tenants.tenants(&operator(), None, Some(&too_long), None, 10).await;
    assert_eq!(
        field_codes(refused.err().unwrap()),
        vec![("nameContains", FieldCode::TooLong)]
    );
}

#[tokio::test]
async fn the_trail_pages_newest_first_when_asked() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = tenants
        .create_tenant(&operator(), "Site", Plan::Share)
        .await
        .unwrap()
        .tenant()
        .id;
    for plan in [Plan::Basic, Plan::Biz, Plan::Pro] {
        tenants.change_plan(&operator(), id, plan).await.unwrap();
    }
    let oldest = tenants
        .audit_trail(&operator(), id, None, 10, TrailOrder::OldestFirst)
        .await
        .unwrap();
    let ids: Vec<_> = oldest.items.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 4);
    let newest = tenants
        .audit_trail(&operator(), id, None, 3, TrailOrder::NewestFirst)
        .await
        .unwrap();
    assert!(newest.has_next_page);
    assert_eq!(
        newest.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[3], ids[2], ids[1]]
    );
    let older = tenants
        .audit_trail(&operator(), id, Some(ids[1]), 3, TrailOrder::NewestFirst)
        .await
        .unwrap();
    assert!(!older.has_next_page);
    assert_eq!(older.items.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[0]]);
    assert_eq!(older.items[0].action, AuditAction::TenantCreated);
}

#[tokio::test]
async fn a_contact_address_is_set_audited_and_removed_with_a_blank() {
    let fakes = Fakes::new();
    let tenants = fakes.tenant_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    let set = tenants
        .set_contact_email(&operator(), id, Some("owner@example.net"))
        .await
        .unwrap();
    assert_eq!(
        set.tenant().contact_email.as_ref().unwrap().as_str(),
        "owner@example.net"
    );
    // The same address again writes nothing.
    tenants
        .set_contact_email(&operator(), id, Some("owner@example.net"))
        .await
        .unwrap();
    let removed = tenants.set_contact_email(&operator(), id, Some("  ")).await.unwrap();
    assert!(removed.tenant().contact_email.is_none());
    let actions: Vec<AuditAction> = fakes.tenants.audit().iter().map(|a| a.action).collect();
    assert_eq!(actions, vec![AuditAction::TenantContactChanged; 2]);
}
