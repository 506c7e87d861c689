//! Outcomes observed, not inferred (README, "Job outcomes"): each ambiguous answer is settled
//! by the read that can tell, against a fake with Atlassian's status model (account status
//! apart from the membership per directory). One test per finding of the review.

use crate::support::fake_atlassian::{
    ADMIN_KEY, AccountStatus, DIRECTORY_ID, FakeAccount, FakeAtlassian, FakeStatus, Fault,
    FaultKind, Matcher, Membership, ORG_ID, SITE_EMAIL, SITE_TOKEN,
};
use offboard::atlassian::{
    AdminSettings, Applied, AtlassianSettings, CallError, Client, Mutation, SiteSettings,
};
use std::time::Duration;

fn client_with_directory(fake: &FakeAtlassian, directory_id: &str) -> Client {
    Client::new(AtlassianSettings {
        site: Some(SiteSettings {
            url: fake.url.clone(),
            email: SITE_EMAIL.into(),
            api_token: SITE_TOKEN.to_owned().into(),
        }),
        admin: Some(AdminSettings {
            url: fake.url.clone(),
            api_key: ADMIN_KEY.to_owned().into(),
            org_id: ORG_ID.into(),
            directory_id: directory_id.into(),
        }),
        request_timeout: Duration::from_secs(5),
        requests_per_second: 1000.0,
    })
    .unwrap()
}

fn client(fake: &FakeAtlassian) -> Client {
    client_with_directory(fake, DIRECTORY_ID)
}

fn refuse_once(path: &str, status: u16, body: &str) -> Fault {
    Fault::once(
        Matcher::PathContains(path.into()),
        FaultKind::Refuse {
            status,
            body: body.into(),
        },
    )
}

const NOT_ELIGIBLE: &str =
    r#"{"errorMessages":["The account isn't eligible for the requested action."]}"#;

fn rejected(result: Result<Applied, CallError>, status: u16) -> String {
    match result {
        Err(CallError::Rejected { status: s, body }) if s == status => body,
        other => panic!("expected a {status} failure, got {other:?}"),
    }
}

fn delete(id: &str) -> Mutation {
    Mutation::DeleteAccount {
        account_id: id.into(),
    }
}

/// Finding 1: a delete answered 409 for an account outside the configured directory is not
/// a deletion. The account is read at account level: active, so the job fails.
#[tokio::test]
async fn a_conflicting_delete_of_an_account_outside_the_directory_is_not_done() {
    let fake = FakeAtlassian::start().await;
    let mut elsewhere = FakeAccount::managed("m-other", "other@example.com");
    elsewhere.directories = [("dir-2".to_owned(), Membership::Active)].into();
    fake.add_account(elsewhere);
    fake.add_account(
        FakeAccount::managed("m-left", "left@example.com").in_state(FakeStatus::Removed),
    );
    let client = client(&fake);

    fake.inject(refuse_once(
        "/users/m-other/manage/lifecycle/delete",
        409,
        NOT_ELIGIBLE,
    ));
    let body = rejected(client.apply(&delete("m-other")).await, 409);
    assert!(body.contains("account_status active"), "{body}");

    // Removed from the directory, then deactivated: inactive at account level, and no
    // directory record says it is scheduled for deletion. The read cannot tell: it fails.
    fake.add_account(
        FakeAccount::managed("m-left", "left@example.com")
            .in_state(FakeStatus::Removed)
            .in_state(FakeStatus::Deactivated),
    );
    fake.inject(refuse_once(
        "/users/m-left/manage/lifecycle/delete",
        409,
        NOT_ELIGIBLE,
    ));
    let body = rejected(client.apply(&delete("m-left")).await, 409);
    assert!(body.contains("cannot tell"), "{body}");
    assert_eq!(
        fake.account("m-left").unwrap().status(),
        FakeStatus::Deactivated
    );
    assert!(
        fake.read_requests()
            .iter()
            .any(|r| r.path == "/users/m-left/manage/profile"),
        "the account-level profile is read"
    );
}

/// Finding 1, the honest repeat: a second delete inside the grace period is read back as
/// scheduled for deletion from the account's own directory record.
#[tokio::test]
async fn a_repeated_delete_is_already_done() {
    let fake = FakeAtlassian::start().await;
    fake.add_managed("m-1", "m1@example.com");
    let client = client(&fake);
    assert_eq!(client.apply(&delete("m-1")).await.unwrap(), Applied::Done);
    let again = client.settle(&delete("m-1")).await.unwrap();
    assert_eq!(again.applied, Applied::AlreadyDone);
    let seen = again.seen.unwrap();
    assert!(seen.contains("for_deletion"), "{seen}");
}

/// Finding 2: no directory write is sent with `directory_id = "-"`; the fake answers such a
/// write 404, which a careless reading would take for done.
#[tokio::test]
async fn directory_writes_are_never_sent_to_all_directories() {
    let fake = FakeAtlassian::start().await;
    fake.add_managed("m-1", "m1@example.com");
    fake.add_group("g-1");
    let client = client_with_directory(&fake, "-");
    for m in [
        Mutation::SuspendAccess {
            account_id: "m-1".into(),
        },
        Mutation::RestoreAccess {
            account_id: "m-1".into(),
        },
        Mutation::RemoveFromDirectory {
            account_id: "m-1".into(),
        },
        Mutation::RemoveFromGroup {
            group_id: "g-1".into(),
            account_id: "m-1".into(),
        },
        Mutation::AddToGroup {
            group_id: "g-1".into(),
            account_id: "m-1".into(),
        },
    ] {
        let result = client.apply(&m).await;
        assert!(
            matches!(result, Err(CallError::DirectoryNotWritable)),
            "{m:?}: {result:?}"
        );
    }
    assert!(fake.requests().is_empty());
    // Lifecycle calls act on the account, not a directory: they still go.
    let deactivate = Mutation::DeactivateAccount {
        account_id: "m-1".into(),
        message: "m".into(),
    };
    assert_eq!(client.apply(&deactivate).await.unwrap(), Applied::Done);
}

/// Finding 3: a restore answered 404 leaves the person locked out: it fails.
#[tokio::test]
async fn a_restore_of_an_account_not_in_the_directory_fails() {
    let fake = FakeAtlassian::start().await;
    fake.add_account(FakeAccount::managed("m-1", "m1@example.com").in_state(FakeStatus::Removed));
    let restore = Mutation::RestoreAccess {
        account_id: "m-1".into(),
    };
    rejected(client(&fake).apply(&restore).await, 404);
}

/// Finding 4: removing a non-member from a desk or an organization is already done, and no
/// removal is sent; a member is removed.
#[tokio::test]
async fn removing_a_non_member_from_a_desk_or_organization_is_already_done() {
    let fake = FakeAtlassian::start().await;
    fake.add_service_desk("10");
    fake.add_organization("20");
    fake.add_customer("qm:out", "out@example.com");
    fake.add_account(FakeAccount {
        service_desks: ["10".to_owned()].into(),
        organizations: ["20".to_owned()].into(),
        ..FakeAccount::customer("qm:in", "in@example.com")
    });
    let client = client(&fake);
    let desk = |id: &str, email: &str| Mutation::RemoveFromServiceDesk {
        service_desk_id: "10".into(),
        account_id: id.into(),
        email: email.into(),
    };
    let organization = |id: &str| Mutation::RemoveFromCustomerOrganization {
        organization_id: "20".into(),
        account_id: id.into(),
    };
    let settled = client
        .settle(&desk("qm:out", "out@example.com"))
        .await
        .unwrap();
    assert_eq!(settled.applied, Applied::AlreadyDone);
    assert!(settled.seen.unwrap().contains("not a customer of desk 10"));
    assert_eq!(
        client.apply(&organization("qm:out")).await.unwrap(),
        Applied::AlreadyDone
    );
    assert!(fake.mutating_requests().is_empty(), "nothing was removed");

    assert_eq!(
        client
            .apply(&desk("qm:in", "in@example.com"))
            .await
            .unwrap(),
        Applied::Done
    );
    assert_eq!(
        client.apply(&organization("qm:in")).await.unwrap(),
        Applied::Done
    );
    let member = fake.account("qm:in").unwrap();
    assert!(member.service_desks.is_empty() && member.organizations.is_empty());
}

/// Finding 5: enable after cancel-delete reads the account status, not the composite one,
/// which stays `suspended` until the restore.
#[tokio::test]
async fn the_undo_chain_of_suspend_deactivate_delete_gives_everything_back() {
    let fake = FakeAtlassian::start().await;
    fake.add_managed("m-1", "m1@example.com");
    let client = client(&fake);
    let id = || "m-1".to_owned();
    for m in [
        Mutation::SuspendAccess { account_id: id() },
        Mutation::DeactivateAccount {
            account_id: id(),
            message: "m".into(),
        },
        Mutation::DeleteAccount { account_id: id() },
    ] {
        assert_eq!(client.apply(&m).await.unwrap(), Applied::Done, "{m:?}");
    }
    assert_eq!(
        fake.account("m-1").unwrap().status(),
        FakeStatus::PendingDelete
    );
    let undo = [
        Mutation::CancelDeleteAccount { account_id: id() },
        Mutation::EnableAccount { account_id: id() },
        Mutation::RestoreAccess { account_id: id() },
    ];
    let applied: Vec<Applied> = {
        let mut applied = Vec::new();
        for m in &undo {
            applied.push(client.apply(m).await.unwrap());
        }
        applied
    };
    // Cancel-delete restores and activates the account, so enable finds it active.
    assert_eq!(
        applied,
        [Applied::Done, Applied::AlreadyDone, Applied::Done]
    );
    let account = fake.account("m-1").unwrap();
    assert_eq!(account.account_status, AccountStatus::Active);
    assert!(!account.for_deletion);
    assert_eq!(account.membership(DIRECTORY_ID), Some(Membership::Active));
}

/// Finding 7: adding a member again answers 409 `ADMIN-UAM-409-2`: already done. Another
/// 409 code fails with its body.
#[tokio::test]
async fn a_group_add_repeat_is_already_done_and_other_conflicts_fail() {
    let fake = FakeAtlassian::start().await;
    fake.add_group("g-1");
    fake.add_managed("m-1", "m1@example.com");
    let client = client(&fake);
    let add = Mutation::AddToGroup {
        group_id: "g-1".into(),
        account_id: "m-1".into(),
    };
    assert_eq!(client.apply(&add).await.unwrap(), Applied::Done);
    assert_eq!(client.apply(&add).await.unwrap(), Applied::AlreadyDone);

    fake.inject(refuse_once(
        "/groups/g-1/memberships",
        409,
        r#"{"errors":[{"code":"ADMIN-UAM-409-7","title":"User limit reached"}]}"#,
    ));
    let body = rejected(client.apply(&add).await, 409);
    assert!(body.contains("ADMIN-UAM-409-7"), "{body}");
}

/// Finding 9: a repeated revoke answers 400 (the current spec's "invalid id"); the site
/// user read back is inactive, so it is already done. A 400 for an active user fails.
#[tokio::test]
async fn a_revoke_answered_400_is_read_back() {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "c1@example.com");
    let client = client(&fake);
    let revoke = Mutation::RevokePortalAccess {
        account_id: "qm:1".into(),
    };
    assert_eq!(client.apply(&revoke).await.unwrap(), Applied::Done);
    assert_eq!(client.apply(&revoke).await.unwrap(), Applied::AlreadyDone);

    fake.add_customer("qm:2", "c2@example.com");
    fake.inject(refuse_once(
        "/customer/user/qm:2/",
        400,
        r#"{"errorMessage":"The account ID is invalid."}"#,
    ));
    let revoke = Mutation::RevokePortalAccess {
        account_id: "qm:2".into(),
    };
    let body = rejected(client.apply(&revoke).await, 400);
    assert!(body.contains("the site user is active"), "{body}");
}

/// Finding 14: `membershipStatus` is org-wide. A restore conflict for an account active in
/// another directory cannot tell this directory's membership: it fails; and a suspend
/// conflict with the account suspended here but active elsewhere is not done.
#[tokio::test]
async fn an_org_wide_membership_status_settles_nothing_for_one_directory() {
    let fake = FakeAtlassian::start().await;
    let mut two = FakeAccount::managed("m-2", "two@example.com");
    two.directories.insert("dir-2".into(), Membership::Active);
    fake.add_account(two.clone());
    let client = client(&fake);

    fake.inject(refuse_once("/users/m-2/restore", 409, NOT_ELIGIBLE));
    let restore = Mutation::RestoreAccess {
        account_id: "m-2".into(),
    };
    let body = rejected(client.apply(&restore).await, 409);
    assert!(body.contains("2 directories"), "{body}");

    two.directories
        .insert(DIRECTORY_ID.into(), Membership::Suspended);
    fake.add_account(two);
    fake.inject(refuse_once("/users/m-2/suspend", 409, NOT_ELIGIBLE));
    let suspend = Mutation::SuspendAccess {
        account_id: "m-2".into(),
    };
    let body = rejected(client.apply(&suspend).await, 409);
    assert!(body.contains("membershipStatus active"), "{body}");

    // With this directory the only one, a restore conflict on an active membership is
    // already done.
    fake.add_managed("m-1", "one@example.com");
    fake.inject(refuse_once("/users/m-1/restore", 409, NOT_ELIGIBLE));
    let restore = Mutation::RestoreAccess {
        account_id: "m-1".into(),
    };
    assert_eq!(client.apply(&restore).await.unwrap(), Applied::AlreadyDone);
}
