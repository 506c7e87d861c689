//! The Atlassian client against the fake Atlassian over a real port.

use std::time::Duration;

use crate::support::fake_atlassian::{
    ADMIN_KEY, AuthKind, DIRECTORY_ID, FakeAccount, FakeAtlassian, FakeStatus, Fault, FaultKind,
    Matcher, ORG_ID, RecordedRequest, SITE_EMAIL, SITE_TOKEN,
};
use offboard::atlassian::{
    Account, AdminSettings, Applied, AtlassianSettings, CallError, Client, Mutation,
    PlannedRequest, SiteSettings,
};
use offboard::domain::ApiFamily;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Site URL without and admin URL with a trailing slash: both forms must work.
fn settings(fake: &FakeAtlassian) -> AtlassianSettings {
    AtlassianSettings {
        site: Some(site_settings(fake, SITE_TOKEN)),
        admin: Some(AdminSettings {
            url: format!("{}/", fake.url),
            api_key: ADMIN_KEY.into(),
            org_id: ORG_ID.into(),
            directory_id: DIRECTORY_ID.into(),
        }),
        request_timeout: Duration::from_secs(5),
        requests_per_second: 1000.0,
    }
}

fn site_settings(fake: &FakeAtlassian, token: &str) -> SiteSettings {
    SiteSettings {
        url: fake.url.clone(),
        email: SITE_EMAIL.into(),
        api_token: token.into(),
    }
}

fn client(fake: &FakeAtlassian) -> Client {
    Client::new(settings(fake)).unwrap()
}

fn last_request(fake: &FakeAtlassian) -> RecordedRequest {
    fake.requests().pop().expect("a request reached the fake")
}

fn site_auth() -> AuthKind {
    AuthKind::Basic {
        user: SITE_EMAIL.into(),
    }
}

fn ids(accounts: &[Account]) -> Vec<&str> {
    accounts.iter().map(|a| a.account_id.as_str()).collect()
}

/// A lifecycle-style 409 "not eligible" for the next request whose path contains `path`.
fn not_eligible_once(path: &str) -> Fault {
    Fault::once(
        Matcher::PathContains(path.into()),
        FaultKind::Refuse {
            status: 409,
            body: r#"{"errorMessages":["The account isn't eligible for the requested action."]}"#
                .into(),
        },
    )
}

fn suspend(account_id: &str) -> Mutation {
    Mutation::SuspendAccess {
        account_id: account_id.into(),
    }
}

#[tokio::test]
async fn site_search_keeps_only_exact_email_matches() {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "Alice@Example.com");
    fake.add_managed("m-1", "alice@example.com");
    fake.add_customer("qm:2", "malice@example.com");
    fake.add_customer("qm:3", "alice@example.com.au");
    fake.add_account(FakeAccount {
        email: None,
        display_name: "alice@example.com".into(),
        ..FakeAccount::customer("qm:4", "hidden@example.com")
    });

    let found = client(&fake)
        .find_site_accounts("alice@EXAMPLE.com")
        .await
        .unwrap();

    assert_eq!(ids(&found), ["m-1", "qm:1"]);
    assert_eq!(found[0].account_type, "atlassian");
    assert_eq!(found[1].account_type, "customer");
    assert_eq!(found[1].email.as_deref(), Some("Alice@Example.com"));
    assert_eq!(found[1].status.as_deref(), Some("active"));
    let request = last_request(&fake);
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/rest/api/3/user/search");
    assert_eq!(
        request.query.as_deref(),
        Some("query=alice%40EXAMPLE.com&maxResults=50")
    );
    assert_eq!(request.auth, site_auth());
}

#[tokio::test]
async fn directory_search_follows_cursors() {
    let fake = FakeAtlassian::start().await;
    fake.set_directory_page_size(2);
    for (id, email) in [
        ("m-1", "bob@x.com"),
        ("m-2", "BOB@x.com"),
        ("m-3", "bob@X.com"),
    ] {
        fake.add_managed(id, email);
    }
    fake.add_managed("m-4", "bobby@x.com");
    fake.add_customer("qm:1", "bob@x.com");

    let found = client(&fake)
        .find_directory_accounts("bob@x.com")
        .await
        .unwrap();

    assert_eq!(ids(&found), ["m-1", "m-2", "m-3"]);
    assert_eq!(found[0].status.as_deref(), Some("active"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let path = format!("/admin/v2/orgs/{ORG_ID}/directories/{DIRECTORY_ID}/users/search");
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", path.as_str())
        );
        assert_eq!(request.auth, AuthKind::Bearer);
    }
    assert_eq!(requests[0].body, Some(json!({ "emails": ["bob@x.com"] })));
    let cursor = requests[1].body.as_ref().unwrap()["cursor"].clone();
    assert!(cursor.is_string(), "{:?}", requests[1].body);
    assert_eq!(
        requests[1].body,
        Some(json!({ "emails": ["bob@x.com"], "cursor": cursor }))
    );
}

struct Expected {
    mutation: Mutation,
    method: &'static str,
    path: String,
    query: Option<&'static str>,
    body: Option<Value>,
    servicedesk_api: bool,
}

fn expected_requests() -> Vec<Expected> {
    let dir = format!("/admin/v2/orgs/{ORG_ID}/directories/{DIRECTORY_ID}");
    let customer = |mutation, method, path: &str, body| Expected {
        mutation,
        method,
        path: path.to_owned(),
        query: None,
        body,
        servicedesk_api: true,
    };
    let managed = |mutation, method, path: String| Expected {
        mutation,
        method,
        path,
        query: None,
        body: None,
        servicedesk_api: false,
    };
    vec![
        customer(
            Mutation::RevokePortalAccess {
                account_id: "qm:c1".into(),
            },
            "PUT",
            "/rest/servicedeskapi/customer/user/qm:c1/revoke-portal-only-access",
            None,
        ),
        Expected {
            query: Some("accountId=qm%3Ac2"),
            servicedesk_api: false,
            ..customer(
                Mutation::DeletePortalCustomer {
                    account_id: "qm:c2".into(),
                },
                "DELETE",
                "/rest/api/3/user",
                None,
            )
        },
        customer(
            Mutation::RemoveFromServiceDesk {
                service_desk_id: "10".into(),
                account_id: "qm:c3".into(),
                email: "c3@example.com".into(),
            },
            "DELETE",
            "/rest/servicedeskapi/servicedesk/10/customer",
            Some(json!({ "accountIds": ["qm:c3"] })),
        ),
        customer(
            Mutation::RemoveFromCustomerOrganization {
                organization_id: "20".into(),
                account_id: "qm:c4".into(),
            },
            "DELETE",
            "/rest/servicedeskapi/organization/20/user",
            Some(json!({ "accountIds": ["qm:c4"] })),
        ),
        Expected {
            body: Some(json!({})),
            ..managed(suspend("m1"), "POST", format!("{dir}/users/m1/suspend"))
        },
        Expected {
            body: Some(json!({})),
            ..managed(
                Mutation::RestoreAccess {
                    account_id: "m2".into(),
                },
                "POST",
                format!("{dir}/users/m2/restore"),
            )
        },
        managed(
            Mutation::RemoveFromDirectory {
                account_id: "m3".into(),
            },
            "DELETE",
            format!("{dir}/users/m3"),
        ),
        managed(
            Mutation::RemoveFromGroup {
                group_id: "g-1".into(),
                account_id: "m4".into(),
            },
            "DELETE",
            format!("{dir}/groups/g-1/memberships/m4"),
        ),
        Expected {
            body: Some(json!({ "message": "offboarded by rule r" })),
            ..managed(
                Mutation::DeactivateAccount {
                    account_id: "m5".into(),
                    message: "offboarded by rule r".into(),
                },
                "POST",
                "/users/m5/manage/lifecycle/disable".into(),
            )
        },
        managed(
            Mutation::DeleteAccount {
                account_id: "m6".into(),
            },
            "POST",
            "/users/m6/manage/lifecycle/delete".into(),
        ),
    ]
}

/// Accounts for `expected_requests`, each in the state its mutation acts on.
fn add_targets(fake: &FakeAtlassian) {
    for id in ["qm:c1", "qm:c2"] {
        fake.add_customer(id, &format!("{id}@example.com"));
    }
    fake.add_account(FakeAccount {
        service_desks: ["10".to_owned()].into(),
        ..FakeAccount::customer("qm:c3", "c3@example.com")
    });
    fake.add_account(FakeAccount {
        organizations: ["20".to_owned()].into(),
        ..FakeAccount::customer("qm:c4", "c4@example.com")
    });
    for id in ["m1", "m3", "m5", "m6"] {
        fake.add_managed(id, &format!("{id}@example.com"));
    }
    fake.add_account(FakeAccount::managed("m2", "m2@example.com").in_state(FakeStatus::Suspended));
    fake.add_account(FakeAccount {
        groups: ["g-1".to_owned()].into(),
        ..FakeAccount::managed("m4", "m4@example.com")
    });
}

#[tokio::test]
async fn each_mutation_sends_the_documented_request() {
    let fake = FakeAtlassian::start().await;
    add_targets(&fake);
    let client = client(&fake);

    for expected in expected_requests() {
        let m = &expected.mutation;
        assert_eq!(client.apply(m).await.unwrap(), Applied::Done, "{m:?}");
        let request = last_request(&fake);
        assert_eq!(request.method, expected.method, "{m:?}");
        assert_eq!(request.path, expected.path, "{m:?}");
        assert_eq!(request.query.as_deref(), expected.query, "{m:?}");
        assert_eq!(request.body, expected.body, "{m:?}");
        let auth = match m.family() {
            ApiFamily::Site => site_auth(),
            ApiFamily::Admin => AuthKind::Bearer,
        };
        assert_eq!(request.auth, auth, "{m:?}");
        let experimental = expected.servicedesk_api.then_some("opt-in");
        assert_eq!(request.header("x-experimentalapi"), experimental, "{m:?}");
        assert_eq!(request.header("accept"), Some("application/json"));
        let user_agent = request.header("user-agent").unwrap();
        assert!(user_agent.starts_with("offboard/"), "{user_agent}");

        let url = match expected.query {
            Some(query) => format!("{}{}?{query}", fake.url, expected.path),
            None => format!("{}{}", fake.url, expected.path),
        };
        let planned = PlannedRequest {
            method: expected.method.into(),
            url,
            body: expected.body.clone(),
        };
        assert_eq!(client.describe(m).unwrap(), planned);
    }
}

#[tokio::test]
async fn mutations_change_the_fake_accounts() {
    let fake = FakeAtlassian::start().await;
    add_targets(&fake);
    let client = client(&fake);
    for expected in expected_requests() {
        client.apply(&expected.mutation).await.unwrap();
    }

    let account = |id: &str| fake.account(id).unwrap();
    assert!(account("qm:c1").portal_access_revoked);
    assert_eq!(account("qm:c2").status(), FakeStatus::Deleted);
    assert!(account("qm:c3").service_desks.is_empty());
    assert!(account("qm:c4").organizations.is_empty());
    assert_eq!(account("m1").status(), FakeStatus::Suspended);
    assert_eq!(account("m2").status(), FakeStatus::Active);
    assert_eq!(account("m3").status(), FakeStatus::Removed);
    assert!(account("m4").groups.is_empty());
    assert_eq!(account("m5").status(), FakeStatus::Deactivated);
    assert_eq!(account("m6").status(), FakeStatus::PendingDelete);
    // The desk and organization removals answer non-members like members, so membership is
    // read first: one read each, and nothing else is read.
    let reads: Vec<String> = fake.read_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        reads,
        [
            "/rest/servicedeskapi/servicedesk/10/customer",
            "/rest/servicedeskapi/organization/20/user"
        ]
    );
    assert_eq!(fake.mutating_requests().len(), 10);
}

/// With no account and no group, desk or organization at all: a missing account is already
/// done where a read confirms it, a missing configured target never is, and a restore of an
/// account that is not there fails: it cannot be given access back.
#[tokio::test]
async fn not_found_means_already_done_except_for_configured_targets() {
    let fake = FakeAtlassian::start().await;
    let client = client(&fake);

    for expected in expected_requests() {
        let m = &expected.mutation;
        let result = client.apply(m).await;
        let missing = |kind: &str, id: &str| matches!(&result, Err(CallError::MissingTarget { kind: k, id: i }) if *k == kind && i == id);
        match m {
            Mutation::RemoveFromServiceDesk { .. } => {
                assert!(missing("service_desk", "10"), "{result:?}")
            }
            Mutation::RemoveFromCustomerOrganization { .. } => {
                assert!(missing("organization", "20"), "{result:?}")
            }
            Mutation::RemoveFromGroup { .. } => assert!(missing("group", "g-1"), "{result:?}"),
            Mutation::RestoreAccess { .. } => assert!(
                matches!(result, Err(CallError::Rejected { status: 404, .. })),
                "{result:?}"
            ),
            _ => assert_eq!(result.unwrap(), Applied::AlreadyDone, "{m:?}"),
        }
    }
}

/// "Not a member" of a group that exists is already done: the group is read back to tell.
#[tokio::test]
async fn not_a_member_of_an_existing_group_is_already_done() {
    let fake = FakeAtlassian::start().await;
    fake.add_group("g-1");
    fake.add_managed("m4", "m4@example.com");
    let client = client(&fake);
    let m = Mutation::RemoveFromGroup {
        group_id: "g-1".into(),
        account_id: "m4".into(),
    };
    assert_eq!(client.apply(&m).await.unwrap(), Applied::AlreadyDone);
    let reads = fake.read_requests();
    assert_eq!(reads.len(), 2);
    assert_eq!(
        reads[0].path,
        format!("/admin/v2/orgs/{ORG_ID}/directories/{DIRECTORY_ID}/groups/g-1")
    );
    // The group's membership, not only its existence: the directory search narrowed to the
    // account and the group.
    assert_eq!(
        reads[1].path,
        format!("/admin/v2/orgs/{ORG_ID}/directories/{DIRECTORY_ID}/users/search")
    );
    assert_eq!(
        reads[1].body,
        Some(json!({ "accountIds": ["m4"], "groupIds": ["g-1"] }))
    );
}

/// A 409 is read back: already in the target state is already done, anything else fails
/// with the body and the status read back.
#[tokio::test]
async fn a_conflict_is_read_back_before_it_counts_as_done() {
    let fake = FakeAtlassian::start().await;
    fake.add_account(
        FakeAccount::managed("m-off", "off@example.com").in_state(FakeStatus::Deactivated),
    );
    fake.add_account(FakeAccount::managed("m-on", "on@example.com").in_state(FakeStatus::Active));
    let client = client(&fake);
    let deactivate = |id: &str| Mutation::DeactivateAccount {
        account_id: id.into(),
        message: "m".into(),
    };
    assert_eq!(
        client.apply(&deactivate("m-off")).await.unwrap(),
        Applied::AlreadyDone
    );
    // Restoring an active account conflicts, and it is already active: done.
    let restore = Mutation::RestoreAccess {
        account_id: "m-on".into(),
    };
    assert_eq!(client.apply(&restore).await.unwrap(), Applied::AlreadyDone);
    let suspend_twice = suspend("m-on");
    assert_eq!(client.apply(&suspend_twice).await.unwrap(), Applied::Done);
    assert_eq!(
        client.apply(&suspend_twice).await.unwrap(),
        Applied::AlreadyDone
    );
    // A suspend that conflicts while the membership is active is not done: a failure with
    // the body and what was read.
    fake.inject(not_eligible_once("/users/m-off/suspend"));
    let result = client.apply(&suspend("m-off")).await;
    let Err(CallError::Rejected { status: 409, body }) = result else {
        panic!("{result:?}");
    };
    assert!(
        body.contains("isn't eligible") && body.contains("membershipStatus active"),
        "{body}"
    );
}

#[tokio::test]
async fn deleting_twice_is_already_done_the_second_time() {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "c@example.com");
    fake.add_managed("m-1", "m@example.com");
    let client = client(&fake);
    let deletes = [
        Mutation::DeletePortalCustomer {
            account_id: "qm:1".into(),
        },
        Mutation::DeleteAccount {
            account_id: "m-1".into(),
        },
    ];
    for m in &deletes {
        assert_eq!(client.apply(m).await.unwrap(), Applied::Done);
        assert_eq!(client.apply(m).await.unwrap(), Applied::AlreadyDone);
    }
}

/// Applies a suspension to an existing account with one fault injected.
async fn suspend_with_fault(fake: &FakeAtlassian, client: &Client, kind: FaultKind) -> CallError {
    fake.add_managed("m-1", "m@example.com");
    fake.inject(Fault::once(Matcher::Mutating, kind));
    client.apply(&suspend("m-1")).await.unwrap_err()
}

#[tokio::test]
async fn rate_limit_with_retry_after() {
    let fake = FakeAtlassian::start().await;
    let kind = FaultKind::Status429 {
        retry_after: Some(2),
        reset_after: Some(30),
    };
    let error = suspend_with_fault(&fake, &client(&fake), kind).await;
    assert!(
        matches!(
            error,
            CallError::RateLimited {
                status: 429,
                wait: Some(wait)
            } if wait == Duration::from_secs(2)
        ),
        "{error:?}"
    );
}

/// Atlassian's form: minute precision, so the wait runs to the end of the named minute.
#[tokio::test]
async fn rate_limit_with_only_a_reset_minute() {
    let fake = FakeAtlassian::start().await;
    let kind = FaultKind::Status429 {
        retry_after: None,
        reset_after: Some(3),
    };
    let error = suspend_with_fault(&fake, &client(&fake), kind).await;
    let CallError::RateLimited {
        status: 429,
        wait: Some(wait),
    } = error
    else {
        panic!("{error:?}");
    };
    assert!(
        wait > Duration::from_secs(3) && wait <= Duration::from_secs(63),
        "{wait:?}"
    );
}

/// RFC 3339 with seconds is honoured as it is.
#[tokio::test]
async fn rate_limit_with_only_a_reset_time_in_seconds() {
    let fake = FakeAtlassian::start().await;
    let kind = FaultKind::Status429ResetSeconds { reset_after: 3 };
    let error = suspend_with_fault(&fake, &client(&fake), kind).await;
    let CallError::RateLimited {
        status: 429,
        wait: Some(wait),
    } = error
    else {
        panic!("{error:?}");
    };
    // The header has whole seconds, so up to one second is lost in truncation.
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(3),
        "{wait:?}"
    );
}

#[tokio::test]
async fn rate_limit_without_headers_leaves_the_wait_to_the_caller() {
    let fake = FakeAtlassian::start().await;
    let kind = FaultKind::Status429 {
        retry_after: None,
        reset_after: None,
    };
    let error = suspend_with_fault(&fake, &client(&fake), kind).await;
    assert!(
        matches!(
            error,
            CallError::RateLimited {
                status: 429,
                wait: None
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn service_unavailable_is_a_rate_limit() {
    let fake = FakeAtlassian::start().await;
    let kind = FaultKind::Status503 {
        retry_after: Some(1),
    };
    let error = suspend_with_fault(&fake, &client(&fake), kind).await;
    assert!(
        matches!(
            error,
            CallError::RateLimited {
                status: 503,
                wait: Some(wait)
            } if wait == Duration::from_secs(1)
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_pauses_only_its_family() {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "c@example.com");
    let client = client(&fake);
    let kind = FaultKind::Status429 {
        retry_after: Some(1),
        reset_after: None,
    };
    suspend_with_fault(&fake, &client, kind).await;

    let start = Instant::now();
    client.find_site_accounts("c@example.com").await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(500));
    client
        .find_directory_accounts("m@example.com")
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = FakeAtlassian::start().await;
    let error = suspend_with_fault(&fake, &client(&fake), FaultKind::Status500).await;
    assert!(matches!(error, CallError::Transient { .. }), "{error:?}");
}

#[tokio::test]
async fn unauthorized_names_the_family() {
    let fake = FakeAtlassian::start().await;
    let error = suspend_with_fault(&fake, &client(&fake), FaultKind::Status401).await;
    assert!(
        matches!(
            error,
            CallError::Unauthorized {
                family: ApiFamily::Admin
            }
        ),
        "{error:?}"
    );

    let wrong_token = Client::new(AtlassianSettings {
        site: Some(site_settings(&fake, "not-the-token")),
        ..settings(&fake)
    })
    .unwrap();
    let error = wrong_token.find_site_accounts("a@b.c").await.unwrap_err();
    assert!(
        matches!(
            error,
            CallError::Unauthorized {
                family: ApiFamily::Site
            }
        ),
        "{error:?}"
    );
    assert_eq!(last_request(&fake).auth, AuthKind::Invalid);
}

#[tokio::test]
async fn forbidden_is_rejected_with_its_body() {
    let fake = FakeAtlassian::start().await;
    let body = r#"{"key":"forbidden.targetUnverified"}"#;
    let kind = FaultKind::Status403 { body: body.into() };
    let error = suspend_with_fault(&fake, &client(&fake), kind).await;
    assert!(
        matches!(&error, CallError::Rejected { status: 403, body: got } if got == body),
        "{error:?}"
    );
}

#[tokio::test]
async fn long_rejection_bodies_are_truncated() {
    let fake = FakeAtlassian::start().await;
    let kind = FaultKind::Status403 {
        body: "é".repeat(5000),
    };
    let error = suspend_with_fault(&fake, &client(&fake), kind).await;
    let CallError::Rejected { status: 403, body } = error else {
        panic!("{error:?}");
    };
    assert!(body.len() <= 2048 && body.len() >= 2000, "{}", body.len());
    assert!(body.chars().all(|c| c == 'é'));
}

#[tokio::test]
async fn a_hanging_request_times_out_as_transient() {
    let fake = FakeAtlassian::start().await;
    let client = Client::new(AtlassianSettings {
        request_timeout: Duration::from_millis(300),
        ..settings(&fake)
    })
    .unwrap();
    let error = suspend_with_fault(&fake, &client, FaultKind::Hang).await;
    fake.release_held();
    assert!(matches!(error, CallError::Transient { .. }), "{error:?}");
}

#[tokio::test]
async fn a_released_request_completes() {
    let fake = FakeAtlassian::start().await;
    fake.add_managed("m-1", "m@example.com");
    fake.inject(Fault::once(
        Matcher::PathContains("/suspend".into()),
        FaultKind::Hang,
    ));
    let client = client(&fake);
    let pending = tokio::spawn(async move { client.apply(&suspend("m-1")).await });
    while fake.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pending.is_finished());
    fake.release_held();
    assert_eq!(pending.await.unwrap().unwrap(), Applied::Done);
}

#[tokio::test]
async fn hostile_ids_cannot_change_the_path() {
    let fake = FakeAtlassian::start().await;
    let client = client(&fake);
    let dir = format!("/admin/v2/orgs/{ORG_ID}/directories/{DIRECTORY_ID}");
    for (id, segment) in [
        ("../x", "..%2Fx"),
        ("a?b", "a%3Fb"),
        ("a#b", "a%23b"),
        ("%2E%2E", "%252E%252E"),
    ] {
        assert_eq!(
            client.apply(&suspend(id)).await.unwrap(),
            Applied::AlreadyDone
        );
        assert_eq!(
            fake.mutating_requests().pop().unwrap().path,
            format!("{dir}/users/{segment}/suspend")
        );
    }

    let delete = Mutation::DeletePortalCustomer {
        account_id: "a&accountId=b".into(),
    };
    client.apply(&delete).await.unwrap();
    assert_eq!(
        last_request(&fake).query.as_deref(),
        Some("accountId=a%26accountId%3Db")
    );
}

#[tokio::test]
async fn ids_the_url_parser_would_rewrite_are_never_sent() {
    let fake = FakeAtlassian::start().await;
    let client = client(&fake);
    for id in ["..", ".", "", "a\nb"] {
        let error = client.apply(&suspend(id)).await.unwrap_err();
        assert!(
            matches!(error, CallError::Rejected { status: 400, .. }),
            "{id:?}: {error:?}"
        );
    }
    let group = Mutation::RemoveFromGroup {
        group_id: "..".into(),
        account_id: "m-1".into(),
    };
    assert!(client.apply(&group).await.is_err());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn thirty_lookups_at_ten_per_second_take_two_seconds() {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "c@example.com");
    let client = Client::new(AtlassianSettings {
        requests_per_second: 10.0,
        ..settings(&fake)
    })
    .unwrap();

    let start = Instant::now();
    let lookups: Vec<_> = (0..30)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.find_site_accounts("c@example.com").await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap().len(), 1);
    }
    // A burst of 10, then 20 more at 10 per second.
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn debug_output_holds_no_secret() {
    let fake = FakeAtlassian::start().await;
    let shown = format!("{:?}", client(&fake));
    assert!(shown.contains(&fake.url), "{shown}");
    assert!(!shown.contains(SITE_TOKEN), "{shown}");
    assert!(!shown.contains(ADMIN_KEY), "{shown}");
}

/// The reads by id see what the searches do not: a revoked customer, a suspended account.
/// Without "Browse users and groups" the site search answers `[]`, the read by id 403, and
/// the permission check says so.
#[tokio::test]
async fn reads_by_id_and_the_browse_permission() {
    let fake = FakeAtlassian::start().await;
    fake.add_account(FakeAccount {
        portal_access_revoked: true,
        ..FakeAccount::customer("qm:revoked", "revoked@example.com")
    });
    fake.add_account(
        FakeAccount::managed("m-s", "suspended@example.com").in_state(FakeStatus::Suspended),
    );
    let client = client(&fake);
    assert!(
        client
            .find_site_accounts("revoked@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    let revoked = client
        .site_user("qm:revoked")
        .await
        .unwrap()
        .expect("read by id");
    assert_eq!(revoked.account_type, "customer");
    assert_eq!(revoked.status.as_deref(), Some("inactive"));
    assert_eq!(client.site_user("qm:nobody").await.unwrap(), None);
    let suspended = client
        .directory_user("m-s")
        .await
        .unwrap()
        .expect("read by id");
    assert_eq!(suspended.directory_status.as_deref(), Some("suspended"));
    assert_eq!(suspended.status.as_deref(), Some("active"));
    assert_eq!(client.directory_user("m-nobody").await.unwrap(), None);
    assert!(client.can_browse_users().await.unwrap());

    fake.add_customer("qm:live", "live@example.com");
    fake.set_browse_users(false);
    assert!(
        client
            .find_site_accounts("live@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!client.can_browse_users().await.unwrap());
    let forbidden = client.site_user("qm:live").await;
    assert!(
        matches!(forbidden, Err(CallError::Rejected { status: 403, .. })),
        "{forbidden:?}"
    );
    let request = last_request(&fake);
    assert_eq!(request.path, "/rest/api/3/user");
    assert_eq!(request.query.as_deref(), Some("accountId=qm%3Alive"));
}

fn query_values(request: &RecordedRequest, name: &str) -> Vec<String> {
    let query = request.query.as_deref().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// The bulk read names up to 50 ids a request and asks for all of them, and follows
/// `startAt` over the pages of 10 the fake answers (the largest page is UNCONFIRMED). Ids
/// nobody has are not in the answer; each id is asked for and answered once.
#[tokio::test]
async fn the_bulk_read_chunks_the_ids_and_follows_every_page() {
    let fake = FakeAtlassian::start().await;
    let mut asked = Vec::new();
    for i in 0..57 {
        let id = format!("qm:{i:03}");
        if i % 10 != 9 {
            fake.add_customer(&id, &format!("c{i}@example.com"));
        }
        asked.push(id);
    }
    fake.add_managed("557058:agent", "agent@example.com");
    asked.push("557058:agent".to_owned());
    asked.push("qm:000".to_owned());
    let client = client(&fake);

    let found = client.site_users_bulk(&asked).await.unwrap();
    let known: Vec<&str> = asked[..58]
        .iter()
        .map(String::as_str)
        .filter(|id| !id.ends_with('9'))
        .collect();
    assert_eq!(ids(&found), known, "the known ones, each once");
    let agent = found.last().unwrap();
    assert_eq!(
        (agent.account_type.as_str(), agent.status.as_deref()),
        ("atlassian", Some("active"))
    );
    assert_eq!(found[0].email.as_deref(), Some("c0@example.com"));

    let reads = fake.requests();
    assert!(
        reads.iter().all(|r| r.path == "/rest/api/3/user/bulk"
            && r.method == "GET"
            && r.auth == site_auth())
    );
    let pages: Vec<(usize, String, String)> = reads
        .iter()
        .map(|r| {
            (
                query_values(r, "accountId").len(),
                query_values(r, "startAt").concat(),
                query_values(r, "maxResults").concat(),
            )
        })
        .collect();
    let page = |ids: usize, start: &str| (ids, start.to_owned(), ids.to_string());
    assert_eq!(
        pages,
        [
            // 50 ids, 45 of them known: 5 pages of at most 10.
            page(50, "0"),
            page(50, "10"),
            page(50, "20"),
            page(50, "30"),
            page(50, "40"),
            // The other 8, all known (the repeated id is not asked again).
            page(8, "0"),
        ]
    );

    fake.clear_requests();
    fake.set_bulk_page_cap(50);
    let again = client.site_users_bulk(&asked).await.unwrap();
    assert_eq!(again, found);
    assert_eq!(
        fake.requests().len(),
        2,
        "a server that serves whole chunks"
    );
    assert!(client.site_users_bulk(&[]).await.unwrap().is_empty());
    assert_eq!(fake.requests().len(), 2, "nothing to read, nothing sent");
}

/// The bulk read as the fake serves it [SPEC]: `accountId` is required; an unknown id is
/// left out of the page; only "Permission to access Jira" is needed, so a site user without
/// "Browse users and groups" still reads it (the single read answers 403 then).
#[tokio::test]
async fn the_fake_bulk_read_answers_as_documented() {
    offboard::install_tls_provider();
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "one@example.com");
    fake.set_browse_users(false);
    let http = reqwest::Client::new();
    let get = |query: &'static str| {
        http.get(format!("{}/rest/api/3/user/bulk{query}", fake.url))
            .basic_auth(SITE_EMAIL, Some(SITE_TOKEN))
            .send()
    };
    let missing = get("?maxResults=5").await.unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::BAD_REQUEST);
    let page: Value = get("?accountId=qm%3A1&accountId=qm%3Anobody")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 1);
    assert_eq!(page["isLast"], true);
    assert_eq!(page["maxResults"], 10, "the documented default");
    assert_eq!(page["startAt"], 0);
    assert_eq!(
        page["values"],
        json!([{ "accountId": "qm:1", "accountType": "customer", "active": true,
                 "displayName": "one", "emailAddress": "one@example.com" }])
    );
}
