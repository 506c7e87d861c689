//! The customer inventory's client against the fake Atlassian (README, "Customer inventory"):
//! paging over several pages and desks, short pages, merging, both filters, the experimental
//! header, a rate limit waited out, and the guard against a server that pages forever; every
//! account classified by its own record (licensed accounts left out, `active` the account's,
//! an account the bulk read leaves out read singly), and a desk changing between two pages.

use std::sync::Mutex;
use std::time::Duration;

use crate::support::fake_atlassian::{
    DeskChange, FakeAccount, FakeAtlassian, FakeStatus, Fault, FaultKind, Matcher, RecordedRequest,
    SITE_EMAIL, SITE_TOKEN,
};
use offboard::atlassian::{
    AtlassianSettings, CallError, Client, CustomerFilter, InventoryProgress, PortalCustomer,
    SiteSettings,
};
use offboard::domain::Domain;
use reqwest::StatusCode;

pub const DESKS: [&str; 3] = ["10", "20", "30"];
pub const CUSTOMERS: usize = 250;

/// Where customer `i` is listed: one desk by turn, and every seventh on the next desk too.
pub fn desks_of(i: usize) -> Vec<&'static str> {
    let mut desks = vec![DESKS[i % 3]];
    if i.is_multiple_of(7) {
        desks.push(DESKS[(i + 1) % 3]);
    }
    desks
}

/// `c{i}` at eu.example.com (every fifth), other.org (the next), else example.com.
pub fn email_of(i: usize) -> String {
    let domain = match i % 5 {
        0 => "eu.example.com",
        1 => "other.org",
        _ => "example.com",
    };
    format!("c{i:03}@{domain}")
}

/// Customers 3 and 4 were revoked; customer 5 hides its email.
pub const REVOKED: [&str; 2] = ["qm:003", "qm:004"];
pub const HIDDEN: &str = "qm:005";

/// 250 customers on 3 desks, some on two; besides, a customer on no desk and a deleted one,
/// whom the listings never show.
pub async fn populated_fake() -> FakeAtlassian {
    let fake = FakeAtlassian::start().await;
    for i in 0..CUSTOMERS {
        let account_id = format!("qm:{i:03}");
        let mut account = FakeAccount::customer(&account_id, &email_of(i));
        account.service_desks = desks_of(i).into_iter().map(str::to_owned).collect();
        account.portal_access_revoked = REVOKED.contains(&account_id.as_str());
        if account_id == HIDDEN {
            account.email = None;
        }
        fake.add_account(account);
    }
    fake.add_customer("qm:nodesk", "nodesk@example.com");
    fake.add_account(FakeAccount {
        service_desks: ["10".to_owned()].into(),
        ..FakeAccount::customer("qm:deleted", "deleted@example.com").in_state(FakeStatus::Deleted)
    });
    fake
}

fn client(fake: &FakeAtlassian) -> Client {
    Client::new(AtlassianSettings {
        site: Some(SiteSettings {
            url: fake.url.clone(),
            email: SITE_EMAIL.into(),
            api_token: SITE_TOKEN.into(),
        }),
        admin: None,
        request_timeout: Duration::from_secs(5),
        requests_per_second: 1000.0,
    })
    .unwrap()
}

fn customer_lists(fake: &FakeAtlassian) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/customer"))
        .collect()
}

fn query_value(request: &RecordedRequest, name: &str) -> Option<String> {
    let query = request.query.as_deref().unwrap_or_default();
    reqwest::Url::parse(&format!("http://fake/?{query}"))
        .ok()?
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn bulk_reads(fake: &FakeAtlassian) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path == "/rest/api/3/user/bulk")
        .collect()
}

/// Where the pages of a list of `len` entries start when the server answers `page` a time:
/// each starts 5 entries (at most half a page) before the one before ended, so that one
/// taken off the list in between cannot make the reading skip the next.
fn overlapping_starts(len: usize, page: usize) -> Vec<usize> {
    let mut starts = vec![0];
    let mut start = 0;
    while start + page < len {
        start += page - 5.min(page / 2);
        starts.push(start);
    }
    starts
}

/// How many customers the fake has on `desk`.
fn on_desk(desk: &str) -> usize {
    (0..CUSTOMERS)
        .filter(|&i| desks_of(i).contains(&desk))
        .count()
}

fn find<'a>(customers: &'a [PortalCustomer], account_id: &str) -> &'a PortalCustomer {
    customers
        .iter()
        .find(|c| c.account_id == account_id)
        .unwrap_or_else(|| panic!("{account_id} is listed"))
}

#[tokio::test]
async fn every_page_of_every_desk_is_read_and_merged_by_account() {
    let fake = populated_fake().await;
    let heard = Mutex::new(Vec::new());
    let customers = client(&fake)
        .portal_customers(&|p: InventoryProgress| heard.lock().unwrap().push(p))
        .await
        .unwrap()
        .customers;

    assert_eq!(customers.len(), CUSTOMERS, "each account once");
    assert!(
        customers.windows(2).all(|w| w[0].key() < w[1].key()),
        "sorted by email, then account id"
    );
    assert_eq!(customers.last().unwrap().account_id, HIDDEN, "hidden last");
    assert_eq!(find(&customers, HIDDEN).email, None);
    let first = &customers[0];
    assert_eq!(
        (first.account_id.as_str(), first.email.as_deref()),
        ("qm:000", Some("c000@eu.example.com"))
    );
    assert_eq!(first.service_desks, ["10", "20"], "on two desks");
    assert_eq!(find(&customers, "qm:001").service_desks, ["20"]);
    assert_eq!(
        find(&customers, "qm:002").display_name.as_deref(),
        Some("c002")
    );
    for c in &customers {
        assert_eq!(c.active, !REVOKED.contains(&c.account_id.as_str()), "{c:?}");
    }
    assert!(customers.iter().all(|c| c.account_id != "qm:nodesk"));
    assert!(customers.iter().all(|c| c.account_id != "qm:deleted"));

    // One request for the three desks, then every page of each desk: full pages of 50 until
    // the last, each page starting 5 entries before the one before ended; then the 250
    // accounts' own records, in 5 bulk reads of 50 ids, each answered in pages of 10.
    let requests = fake.requests();
    assert_eq!(requests[0].path, "/rest/servicedeskapi/servicedesk");
    let lists = customer_lists(&fake);
    let bulk = bulk_reads(&fake);
    assert_eq!(requests.len(), 1 + lists.len() + bulk.len());
    assert_eq!(bulk.len(), CUSTOMERS / 10);
    assert!(
        requests[1 + lists.len()..]
            .iter()
            .all(|r| r.path == "/rest/api/3/user/bulk"),
        "the records are read once every desk is listed"
    );
    let mut expected = Vec::new();
    for desk in DESKS {
        let starts = overlapping_starts(on_desk(desk), 50);
        assert!(starts.len() >= 2, "desk {desk} has several pages");
        expected.extend(starts.into_iter().map(|s| (desk.to_owned(), s.to_string())));
    }
    let asked: Vec<(String, String)> = lists
        .iter()
        .map(|r| {
            let desk = r.path.split('/').nth(4).unwrap().to_owned();
            (desk, query_value(r, "start").unwrap())
        })
        .collect();
    assert_eq!(asked, expected);
    for request in &lists {
        assert_eq!(request.header("x-experimentalapi"), Some("opt-in"));
        assert_eq!(query_value(request, "limit").as_deref(), Some("50"));
    }

    let heard = heard.into_inner().unwrap();
    let last = heard.last().unwrap();
    assert_eq!(
        *last,
        InventoryProgress {
            desks: Some(3),
            desks_done: 3,
            pages: 1 + lists.len(),
            accounts: CUSTOMERS,
            classified: CUSTOMERS,
        }
    );
    assert!(heard.windows(2).all(|w| w[0].pages <= w[1].pages));
}

#[tokio::test]
async fn a_server_answering_fewer_than_asked_is_followed_to_the_end() {
    let fake = populated_fake().await;
    fake.set_listing_page_cap(20);
    let customers = client(&fake)
        .portal_customers(&|_| {})
        .await
        .unwrap()
        .customers;
    assert_eq!(customers.len(), CUSTOMERS);
    let starts: Vec<String> = customer_lists(&fake)
        .iter()
        .filter(|r| r.path.contains("/servicedesk/10/"))
        .map(|r| query_value(r, "start").unwrap())
        .collect();
    let expected: Vec<String> = overlapping_starts(on_desk("10"), 20)
        .into_iter()
        .map(|start| start.to_string())
        .collect();
    assert_eq!(
        starts, expected,
        "each page starts 5 before what came ended"
    );
}

#[tokio::test]
async fn filters_by_domain_and_subdomains_and_by_inactive() {
    let fake = populated_fake().await;
    let customers = client(&fake)
        .portal_customers(&|_| {})
        .await
        .unwrap()
        .customers;
    let kept = |filter: &CustomerFilter| -> Vec<String> {
        customers
            .iter()
            .filter(|c| filter.admits(c))
            .map(|c| c.account_id.clone())
            .collect()
    };
    let example = CustomerFilter {
        domain: Some(Domain::parse("EXAMPLE.com").unwrap()),
        inactive_only: false,
    };
    let expected: Vec<String> = (0..CUSTOMERS)
        .filter(|&i| i % 5 != 1 && i != 5)
        .map(|i| format!("qm:{i:03}"))
        .collect();
    let mut got = kept(&example);
    got.sort();
    assert_eq!(
        got, expected,
        "example.com and eu.example.com, not other.org"
    );
    let eu = CustomerFilter {
        domain: Some(Domain::parse("eu.example.com").unwrap()),
        inactive_only: false,
    };
    assert_eq!(
        kept(&eu).len(),
        (0..CUSTOMERS).filter(|i| i % 5 == 0).count() - 1
    );
    let inactive = CustomerFilter {
        domain: None,
        inactive_only: true,
    };
    assert_eq!(kept(&inactive), REVOKED);
    let inactive_elsewhere = CustomerFilter {
        domain: Some(Domain::parse("other.org").unwrap()),
        inactive_only: true,
    };
    assert!(kept(&inactive_elsewhere).is_empty());
}

#[tokio::test]
async fn the_customer_list_wants_the_experimental_header() {
    // Test builds link two rustls providers: run alone (nextest), this test must pick one.
    offboard::install_tls_provider();
    let fake = populated_fake().await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/rest/servicedeskapi/servicedesk/10/customer?start=0&limit=50",
        fake.url
    );
    let without = http
        .get(&url)
        .basic_auth(SITE_EMAIL, Some(SITE_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), StatusCode::BAD_REQUEST);
    let with = http
        .get(&url)
        .basic_auth(SITE_EMAIL, Some(SITE_TOKEN))
        .header("X-ExperimentalApi", "opt-in")
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), StatusCode::OK);
    let page: serde_json::Value = with.json().await.unwrap();
    assert_eq!(page["values"].as_array().unwrap().len(), 50);
    assert_eq!(page["isLastPage"], false);
    // The desk list is not experimental.
    let desks = http
        .get(format!("{}/rest/servicedeskapi/servicedesk", fake.url))
        .basic_auth(SITE_EMAIL, Some(SITE_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(desks.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_empty_page_that_is_not_the_last_stops_the_listing() {
    let fake = populated_fake().await;
    fake.set_empty_listing_pages(true);
    let err = client(&fake).portal_customers(&|_| {}).await.unwrap_err();
    match &err {
        CallError::Transient { detail } => assert!(detail.contains("empty page"), "{detail}"),
        other => panic!("expected a transient failure, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1, "stopped at once, no second ask");
}

#[tokio::test]
async fn a_rate_limited_page_is_asked_again_after_the_wait() {
    let fake = populated_fake().await;
    fake.inject(Fault::once(
        Matcher::PathContains("/servicedesk/20/customer".into()),
        FaultKind::Status429 {
            retry_after: Some(1),
            reset_after: None,
        },
    ));
    let started = tokio::time::Instant::now();
    let customers = client(&fake)
        .portal_customers(&|_| {})
        .await
        .unwrap()
        .customers;
    assert_eq!(customers.len(), CUSTOMERS);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited it out");
    let pages: usize = DESKS
        .iter()
        .map(|d| overlapping_starts(on_desk(d), 50).len())
        .sum();
    assert_eq!(
        customer_lists(&fake).len(),
        pages + 1,
        "one page asked twice"
    );
}

#[tokio::test]
async fn a_refused_desk_fails_the_listing_with_atlassians_reason() {
    let fake = populated_fake().await;
    fake.inject(Fault::once(
        Matcher::PathContains("/servicedesk/30/customer".into()),
        FaultKind::Status403 {
            body: "You do not have permission to view this desk's customers".into(),
        },
    ));
    let err = client(&fake).portal_customers(&|_| {}).await.unwrap_err();
    match err {
        CallError::Rejected { status, body } => {
            assert_eq!(status, 403);
            assert!(body.contains("permission"), "{body}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The inventory as the CLI and the API read it, with a client paced out of the way.
async fn listed(fake: &FakeAtlassian) -> Vec<PortalCustomer> {
    client(fake)
        .portal_customers(&|_| {})
        .await
        .unwrap()
        .customers
}

/// A desk with customers `qm:d00`…, each on `desk` only.
fn desk_of_customers(fake: &FakeAtlassian, desk: &str, count: usize) {
    for i in 0..count {
        let mut account =
            FakeAccount::customer(&format!("qm:d{i:02}"), &format!("d{i:02}@example.com"));
        account.service_desks.insert(desk.to_owned());
        fake.add_account(account);
    }
}

/// The desk list has no `accountType` and holds whoever was added to the desk: an agent's
/// licensed account and an app are there too. Only `customer` accounts are listed.
#[tokio::test]
async fn licensed_accounts_on_a_desk_are_not_listed() {
    let fake = FakeAtlassian::start().await;
    desk_of_customers(&fake, "10", 2);
    let mut agent = FakeAccount::managed("557058:agent", "agent@example.com");
    agent.service_desks.insert("10".to_owned());
    fake.add_account(agent);
    let mut app = FakeAccount::customer("app-bot", "bot@apps.example.com");
    app.account_type = "app".to_owned();
    app.service_desks.insert("10".to_owned());
    fake.add_account(app);

    let inventory = client(&fake).portal_customers(&|_| {}).await.unwrap();
    let ids: Vec<&str> = inventory
        .customers
        .iter()
        .map(|c| c.account_id.as_str())
        .collect();
    assert_eq!(ids, ["qm:d00", "qm:d01"]);
    assert_eq!(inventory.not_customers, 2, "left out, and counted");
    assert_eq!(
        bulk_reads(&fake).len(),
        1,
        "the four accounts read in one request"
    );
}

/// `active` is the account's own, read after the desks: a customer revoked while the
/// listing was between its two desks is inactive, whatever the first desk's entry said.
#[tokio::test]
async fn active_is_the_accounts_own_not_the_first_desks_entry() {
    let fake = FakeAtlassian::start().await;
    let mut both = FakeAccount::customer("qm:both", "both@example.com");
    both.service_desks = ["10".to_owned(), "20".to_owned()].into();
    fake.add_account(both.clone());
    let revoked = FakeAccount {
        portal_access_revoked: true,
        ..both
    };
    fake.after_next_desk_page("10", DeskChange::Put(revoked));

    let customers = listed(&fake).await;
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].service_desks, ["10", "20"]);
    assert!(!customers[0].active, "{customers:?}");
}

/// A customer taken off the desk while the listing is between two of its pages moves every
/// later entry one place up: the next page must not start past the entry that moved into
/// the gap. One added before the offset is not listed twice.
#[tokio::test]
async fn a_desk_changing_between_pages_skips_nobody() {
    let fake = FakeAtlassian::start().await;
    fake.set_listing_page_cap(3);
    desk_of_customers(&fake, "10", 10);
    fake.after_next_desk_page("10", DeskChange::Remove("qm:d00".to_owned()));
    let ids: Vec<String> = listed(&fake)
        .await
        .into_iter()
        .map(|c| c.account_id)
        .collect();
    let all: Vec<String> = (0..10).map(|i| format!("qm:d{i:02}")).collect();
    assert_eq!(
        ids, all,
        "the one taken off was seen first; nobody was skipped"
    );

    let fake = FakeAtlassian::start().await;
    fake.set_listing_page_cap(3);
    desk_of_customers(&fake, "10", 10);
    let mut early = FakeAccount::customer("qm:a", "a@example.com");
    early.service_desks.insert("10".to_owned());
    fake.after_next_desk_page("10", DeskChange::Put(early));
    let ids: Vec<String> = listed(&fake)
        .await
        .into_iter()
        .map(|c| c.account_id)
        .collect();
    assert_eq!(
        ids, all,
        "each once; the one added behind the reading is not seen"
    );
}

/// An account the bulk read leaves out is read by itself; one that is not there either
/// (deleted after the desks were read) is left out, and counted.
#[tokio::test]
async fn an_account_the_bulk_read_leaves_out_is_read_singly() {
    let fake = FakeAtlassian::start().await;
    desk_of_customers(&fake, "10", 3);
    let mut gone = FakeAccount::customer("qm:gone", "gone@example.com");
    gone.service_desks.insert("10".to_owned());
    fake.add_account(gone.clone());
    fake.after_next_desk_page("10", DeskChange::Put(gone.in_state(FakeStatus::Deleted)));
    fake.set_bulk_omits_customers(true);

    let inventory = client(&fake).portal_customers(&|_| {}).await.unwrap();
    let ids: Vec<&str> = inventory
        .customers
        .iter()
        .map(|c| c.account_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["qm:d00", "qm:d01", "qm:d02"],
        "customers, by their own records"
    );
    assert_eq!(inventory.unknown, ["qm:gone"], "left out, and named");
    assert_eq!(inventory.not_customers, 0);
    let single: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/rest/api/3/user")
        .filter_map(|r| query_value(&r, "accountId"))
        .collect();
    assert_eq!(single, ["qm:d00", "qm:d01", "qm:d02", "qm:gone"]);
}
