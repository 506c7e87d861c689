//! The operator console over a real port: sign-in, the session cookie, CSRF, escaping, and
//! the buttons, on both stores. The browser's cookie jar is played by hand: `Set-Cookie` is
//! read and `Cookie` sent back.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use crate::both_stores;
use crate::support::app::{ADMIN_TOKEN, TestApp, job_ids, test_config};
use crate::support::db::TestDb;
use offboard::domain::JobState;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// One rule needs approval and has a hostile name, one runs directly. No [atlassian]: the
/// worker stays idle, so jobs stay where the test puts them.
const CONFIG: &str = r#"
[[sources]]
name = "jira"
scheme = "token"
secrets = ["jira-token"]

  [[sources.rules]]
  name = "<script>alert('rule')</script>"
  when = { "/kind" = "approve" }
  email = "/email"
  approval = true
  actions = ["delete_portal_customer"]

  [[sources.rules]]
  name = "direct"
  when = { "/kind" = "direct" }
  email = "/email"
  actions = ["revoke_portal_access", { action = "delete_portal_customer", after = "30d" }]
"#;

/// A browser without a cookie jar: redirects are looked at, not followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

impl Page {
    async fn read(response: reqwest::Response) -> Page {
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().expect("ASCII").to_owned())
        };
        let (location, set_cookie) = (header(LOCATION), header(SET_COOKIE));
        Page {
            status: response.status(),
            location,
            set_cookie,
            body: response.text().await.expect("body"),
        }
    }

    /// The CSRF token of the first form on the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = start + self.body[start..].find('"').expect("closing quote");
        self.body[start..end].to_owned()
    }

    /// The number of job rows in a jobs table.
    fn job_rows(&self) -> usize {
        self.body.matches("<td class=\"email\">").count()
    }
}

/// A signed-in visitor: the cookie the login set, sent back by hand.
struct Console {
    base_url: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Console {
    fn new(base_url: &str) -> Console {
        Console {
            base_url: base_url.to_owned(),
            http: browser(),
            cookie: None,
        }
    }

    async fn signed_in(app: &TestApp) -> Console {
        let mut console = Console::new(&app.base_url);
        let page = console.login(ADMIN_TOKEN).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let set_cookie = page.set_cookie.expect("a session cookie");
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        console.cookie = Some(pair);
        console
    }

    async fn login(&self, token: &str) -> Page {
        self.send(
            Method::POST,
            "/console/login",
            Some(format!("token={token}")),
        )
        .await
    }

    async fn get(&self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, form: &str) -> Page {
        self.send(Method::POST, path, Some(form.to_owned())).await
    }

    async fn send(&self, method: Method, path: &str, form: Option<String>) -> Page {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        if let Some(form) = form {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
        }
        Page::read(request.send().await.expect("request")).await
    }
}

async fn awaiting_job(app: &TestApp, email: &str) -> String {
    let body = app
        .deliver("jira", &json!({ "kind": "approve", "email": email }))
        .await;
    job_ids(&body)[0].clone()
}

async fn last_event_actor(app: &TestApp, id: &str) -> (JobState, String) {
    let job = app.job(id).await;
    let last = job.events.last().expect("events").clone();
    (job.job.state, last.actor)
}

async fn a_wrong_token_signs_nobody_in(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let console = Console::new(&app.base_url);

    let page = console.get("/console").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/console/login"));

    let page = console.get("/console/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"token\""), "{}", page.body);

    for wrong in ["wrong", "", "test-admin-toke", "test-admin-token2"] {
        let page = console.login(wrong).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(page.set_cookie.is_none(), "{wrong}");
        assert!(page.body.contains("not the admin token"), "{}", page.body);
    }

    // A cookie made up by hand, or an old one, is no session.
    for forged in [
        "offboard_session=99999999999.00",
        "offboard_session=test-admin-token",
        "offboard_session=1.0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let forged_console = Console {
            cookie: Some(forged.to_owned()),
            ..Console::new(&app.base_url)
        };
        let page = forged_console.get("/console").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{forged}");
    }
    app.stop().await;
}
both_stores!(wrong_token_on, a_wrong_token_signs_nobody_in);

async fn the_session_cookie_is_safe(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let console = Console::new(&app.base_url);
    let page = console.login(ADMIN_TOKEN).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/console"));
    let cookie = page.set_cookie.expect("Set-Cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for expected in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(attributes.contains(&expected), "{expected} in {cookie}");
    }
    let value = attributes[0]
        .strip_prefix("offboard_session=")
        .expect("named offboard_session");
    assert!(!cookie.contains(ADMIN_TOKEN));
    let parts: Vec<&str> = value.split('.').collect();
    let [expiry, nonce, signature] = parts[..] else {
        panic!("<expiry>.<nonce>.<signature>: {value}");
    };
    assert_eq!(nonce.len(), 32);
    let expiry: i64 = expiry.parse().expect("expiry is a number");
    let lifetime = expiry - chrono::Utc::now().timestamp();
    assert!(
        (12 * 3600 - 60..=12 * 3600).contains(&lifetime),
        "{lifetime}"
    );
    assert_eq!(signature.len(), 64);
    assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));

    let console = Console::signed_in(&app).await;
    let response = console
        .http
        .get(format!("{}/console", app.base_url))
        .header(COOKIE, console.cookie.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");

    // Signed in, the login form moves on; the stylesheet is served.
    let page = console.get("/console/login").await;
    assert_eq!(page.location.as_deref(), Some("/console"));
    let css = console.get("/console/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains(".badge"));

    // Log out: the cookie is cleared and the login form is next.
    let csrf = console.get("/console").await.csrf();
    let page = console
        .post("/console/logout", &format!("csrf={csrf}"))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/console/login"));
    let cleared = page.set_cookie.expect("a clearing Set-Cookie");
    assert!(cleared.starts_with("offboard_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    app.stop().await;
}
both_stores!(session_cookie_on, the_session_cookie_is_safe);

async fn pages_render_and_escape_what_senders_control(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let awaiting = awaiting_job(&app, "waiting@example.com").await;
    let direct = job_ids(
        &app.deliver(
            "jira",
            &json!({ "kind": "direct", "email": "direct@example.com" }),
        )
        .await,
    );
    // The unmappable error echoes the payload's value: it reaches the deliveries page.
    let response = app
        .send_signed(
            "jira",
            json!({ "kind": "direct", "email": "<script>alert('payload')</script>" })
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let console = Console::signed_in(&app).await;

    let jobs = console.get("/console").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert_eq!(jobs.job_rows(), 3);
    for expected in [
        "waiting@example.com",
        "direct@example.com",
        "delete_portal_customer",
        "revoke_portal_access",
        "&lt;script&gt;alert('rule')&lt;/script&gt;",
        "Worker running",
        "Dry run",
        "in 30 days",
        "just now",
        " UTC",
        "0/8",
        // Lanes (README, "Lanes"): the first step is due now, the second in 30 days.
        "badge lane-urgent",
        "badge lane-scheduled",
        &format!("href=\"/console/jobs/{awaiting}\""),
    ] {
        assert!(
            jobs.body.contains(expected),
            "{expected} in:\n{}",
            jobs.body
        );
    }
    let tab = console.get("/console?state=awaiting_approval").await;
    assert_eq!(tab.job_rows(), 1);
    assert!(tab.body.contains("waiting@example.com"));
    let tab = console.get("/console?state=pending").await;
    assert_eq!(tab.job_rows(), 2);
    let tab = console.get("/console?email=DIRECT@example.com").await;
    assert_eq!(tab.job_rows(), 2);
    assert_eq!(
        console.get("/console?state=bogus").await.status,
        StatusCode::BAD_REQUEST
    );

    let job = console.get(&format!("/console/jobs/{awaiting}")).await;
    assert_eq!(job.status, StatusCode::OK);
    assert!(job.body.contains("Audit trail"));
    assert!(job.body.contains("source:jira"));
    assert!(
        job.body
            .contains("&lt;script&gt;alert('rule')&lt;/script&gt;")
    );
    let later = console.get(&format!("/console/jobs/{}", direct[1])).await;
    assert!(
        later
            .body
            .contains(&format!("href=\"/console/jobs/{}\"", direct[0])),
        "the later step links the step it waits for"
    );
    assert!(
        later.body.contains("badge lane-scheduled"),
        "{}",
        later.body
    );

    let deliveries = console.get("/console/deliveries").await;
    assert_eq!(deliveries.status, StatusCode::OK);
    assert!(deliveries.body.contains("unmappable"));
    assert!(deliveries.body.contains("accepted"));
    assert!(
        deliveries
            .body
            .contains("&lt;script&gt;alert('payload')&lt;/script&gt;"),
        "{}",
        deliveries.body
    );
    for page in [&jobs, &job, &deliveries] {
        assert!(!page.body.contains("<script"), "unescaped: {}", page.body);
    }
    assert_eq!(
        console.get("/console/jobs/999999").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        console.get("/console/jobs/abc").await.status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}
both_stores!(pages_on, pages_render_and_escape_what_senders_control);

async fn the_jobs_list_pages_with_before(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    for i in 0..26 {
        app.deliver(
            "jira",
            &json!({ "kind": "direct", "email": format!("p{i}@example.com") }),
        )
        .await;
    }
    let console = Console::signed_in(&app).await;
    let first = console.get("/console").await;
    assert_eq!(first.job_rows(), 50);
    let marker = "href=\"/console?before=";
    let start = first.body.find(marker).expect("a link to older jobs") + marker.len();
    let before = &first.body[start..start + first.body[start..].find('"').unwrap()];
    let second = console.get(&format!("/console?before={before}")).await;
    assert_eq!(second.job_rows(), 2);
    assert!(
        !second.body.contains(marker),
        "the last page has no older link"
    );
    assert!(second.body.contains("Newest"));
    app.stop().await;
}
both_stores!(paging_on, the_jobs_list_pages_with_before);

async fn a_post_without_session_or_csrf_changes_nothing(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let id = awaiting_job(&app, "keep@example.com").await;
    let console = Console::signed_in(&app).await;
    let csrf = console
        .get(&format!("/console/jobs/{id}/approve"))
        .await
        .csrf();
    let events_before = app.job(&id).await.events.len();

    let anonymous = Console::new(&app.base_url);
    let other_session = {
        // A session a second later: its CSRF token differs from this one's.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        Console::signed_in(&app).await
    };
    let approve = format!("/console/jobs/{id}/approve");
    let cancel = format!("/console/jobs/{id}/cancel");
    let bulk =
        "action=delete_portal_customer&person=qm%3A1%20bulk%40example.com&approval=1".to_owned();
    let import = "csv=email%2Caction%0Abulk%40example.com%2Csuspend_access%0A".to_owned();
    let jobs_before = app.store.count_by_state().await.unwrap();
    let attempts: Vec<(&Console, &str, String)> = vec![
        (&console, approve.as_str(), String::new()),
        (&console, approve.as_str(), "csrf=".to_owned()),
        (&console, approve.as_str(), "csrf=00ff".to_owned()),
        (&console, approve.as_str(), format!("csrf={}", &csrf[1..])),
        (&console, cancel.as_str(), "return_to=/console".to_owned()),
        (&other_session, approve.as_str(), format!("csrf={csrf}")),
        (&anonymous, approve.as_str(), format!("csrf={csrf}")),
        (&anonymous, cancel.as_str(), format!("csrf={csrf}")),
        (&console, "/console/worker/pause", String::new()),
        (&anonymous, "/console/worker/pause", format!("csrf={csrf}")),
        (&console, "/console/logout", "csrf=nope".to_owned()),
        // The bulk forms: a selection of customers, an import's confirmation.
        (&console, "/console/customers/enqueue", bulk.clone()),
        (
            &console,
            "/console/customers/enqueue",
            format!("{bulk}&csrf=00ff"),
        ),
        (
            &anonymous,
            "/console/customers/enqueue",
            format!("{bulk}&csrf={csrf}"),
        ),
        (
            &other_session,
            "/console/customers/review",
            format!("{bulk}&csrf={csrf}"),
        ),
        (&console, "/console/import/confirm", import.clone()),
        (
            &other_session,
            "/console/import/confirm",
            format!("{import}&csrf={csrf}"),
        ),
        (
            &anonymous,
            "/console/import",
            format!("{import}&csrf={csrf}"),
        ),
    ];
    for (who, path, form) in attempts {
        let page = who.post(path, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} {form}");
        assert!(page.set_cookie.is_none());
    }
    // Not even a form body at all.
    let response = console
        .http
        .post(format!("{}{approve}", app.base_url))
        .header(COOKIE, console.cookie.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let job = app.job(&id).await;
    assert_eq!(job.job.state, JobState::AwaitingApproval);
    assert_eq!(job.events.len(), events_before);
    assert_eq!(app.store.count_by_state().await.unwrap(), jobs_before);
    assert!(!app.store.worker_state().await.unwrap().paused);
    // The session still works after all that.
    let page = console.post(&approve, &format!("csrf={csrf}")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    app.stop().await;
}
both_stores!(csrf_on, a_post_without_session_or_csrf_changes_nothing);

async fn approve_cancel_and_retry_go_through_confirmation(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let to_approve = awaiting_job(&app, "approve@example.com").await;
    let to_cancel = awaiting_job(&app, "cancel@example.com").await;
    let chain = job_ids(
        &app.deliver(
            "jira",
            &json!({ "kind": "direct", "email": "fail@example.com" }),
        )
        .await,
    );
    // Fail the first step as a worker would.
    let claimed = app
        .store
        .claim_due("test-worker", 10, Duration::from_secs(60))
        .await
        .unwrap();
    let failing = claimed
        .iter()
        .find(|job| job.id.to_string() == chain[0])
        .expect("the due step was claimed");
    assert!(
        app.store
            .fail(failing, "api_error:500", "boom")
            .await
            .unwrap()
    );
    let console = Console::signed_in(&app).await;

    // Only the allowed buttons are offered.
    let page = console.get(&format!("/console/jobs/{to_approve}")).await;
    assert!(
        page.body
            .contains(&format!("/console/jobs/{to_approve}/approve"))
    );
    assert!(
        page.body
            .contains(&format!("/console/jobs/{to_approve}/cancel"))
    );
    assert!(
        !page
            .body
            .contains(&format!("/console/jobs/{to_approve}/retry"))
    );
    let page = console.get(&format!("/console/jobs/{}", chain[0])).await;
    assert!(page.body.contains("api_error:500"));
    assert!(
        page.body
            .contains(&format!("/console/jobs/{}/retry", chain[0]))
    );
    assert!(
        !page
            .body
            .contains(&format!("/console/jobs/{}/cancel", chain[0]))
    );

    for (id, transition, expected) in [
        (to_approve.as_str(), "approve", JobState::Pending),
        (to_cancel.as_str(), "cancel", JobState::Cancelled),
        (chain[0].as_str(), "retry", JobState::Pending),
    ] {
        let path = format!("/console/jobs/{id}/{transition}");
        let confirm = console.get(&path).await;
        assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
        assert!(confirm.body.contains(&format!("action=\"{path}\"")));
        assert!(confirm.body.contains("Back, change nothing"));
        // Looking at the confirmation page changes nothing.
        assert_ne!(app.job(id).await.job.state, expected);

        let done = console
            .post(&path, &format!("csrf={}", confirm.csrf()))
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(
            done.location.as_deref(),
            Some(format!("/console/jobs/{id}").as_str())
        );
        assert_eq!(
            last_event_actor(&app, id).await,
            (expected, "console".to_owned())
        );
        let page = console.get(&format!("/console/jobs/{id}")).await;
        assert!(page.body.contains("<td>console</td>"));

        // The same transition again is refused, on the confirmation page and on POST.
        assert_eq!(console.get(&path).await.status, StatusCode::CONFLICT);
        let again = console
            .post(&path, &format!("csrf={}", confirm.csrf()))
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert_eq!(app.job(id).await.job.state, expected);
    }
    assert_eq!(
        console
            .get(&format!("/console/jobs/{to_approve}/nuke"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}
both_stores!(
    transitions_on,
    approve_cancel_and_retry_go_through_confirmation
);

async fn pause_and_resume_from_the_header(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let console = Console::signed_in(&app).await;
    let page = console.get("/console/deliveries").await;
    assert!(page.body.contains("Pause worker"));
    let csrf = page.csrf();

    let paused = console
        .post(
            "/console/worker/pause",
            &format!("csrf={csrf}&return_to=%2Fconsole%2Fdeliveries"),
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    assert_eq!(paused.location.as_deref(), Some("/console/deliveries"));
    let state = app.store.worker_state().await.unwrap();
    assert!(state.paused);
    assert_eq!(state.reason.map(|r| r.as_str()), Some("manual"));
    let page = console.get("/console").await;
    assert!(page.body.contains("Worker paused"));
    assert!(page.body.contains("by an operator"));
    assert!(page.body.contains("Resume worker"));

    let resumed = console
        .post(
            "/console/worker/resume",
            &format!("csrf={csrf}&return_to=https%3A%2F%2Fevil.example%2F"),
        )
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert_eq!(resumed.location.as_deref(), Some("/console"));
    assert!(!app.store.worker_state().await.unwrap().paused);
    app.stop().await;
}
both_stores!(pause_on, pause_and_resume_from_the_header);

/// A copy of the cookie and its CSRF token (say, from a shared machine or a log) is worth
/// nothing once its owner logged out, on this process or after a restart; other sessions go on.
async fn a_logout_ends_that_session_at_once(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let owner = Console::signed_in(&app).await;
    let other = Console::signed_in(&app).await;
    assert_ne!(owner.cookie, other.cookie);
    let csrf = owner.get("/console").await.csrf();
    let copy = Console {
        cookie: owner.cookie.clone(),
        ..Console::new(&app.base_url)
    };
    assert_eq!(copy.get("/console").await.status, StatusCode::OK);

    let page = owner.post("/console/logout", &format!("csrf={csrf}")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    let refused = copy
        .post("/console/worker/pause", &format!("csrf={csrf}"))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!app.store.worker_state().await.unwrap().paused);
    for path in ["/console", "/console/deliveries", "/console/jobs/1"] {
        let page = copy.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/console/login"), "{path}");
    }
    let login = copy.get("/console/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("name=\"token\""));
    let again = copy.post("/console/logout", &format!("csrf={csrf}")).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);

    // Another sign-in is another session: it goes on.
    let other_csrf = other.get("/console").await.csrf();
    let paused = other
        .post("/console/worker/pause", &format!("csrf={other_csrf}"))
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    assert!(app.store.worker_state().await.unwrap().paused);
    app.stop().await;

    // The logout is in the store, not in the process that served it.
    let restarted = TestApp::spawn(&db, CONFIG).await;
    let copy = Console {
        base_url: restarted.base_url.clone(),
        ..copy
    };
    assert_eq!(copy.get("/console").await.status, StatusCode::SEE_OTHER);
    let other = Console {
        base_url: restarted.base_url.clone(),
        ..other
    };
    assert_eq!(other.get("/console").await.status, StatusCode::OK);
    restarted.stop().await;
}
both_stores!(logout_on, a_logout_ends_that_session_at_once);

/// The same cookie spelt another way: hex digits upper-cased (all, some, in the nonce), a
/// leading zero or a sign on the expiry, quotes, an escaped dot, padding.
fn respellings(pair: &str) -> Vec<String> {
    let value = pair
        .strip_prefix("offboard_session=")
        .expect("the session cookie");
    let (claims, signature) = value.rsplit_once('.').expect("three parts");
    let (expiry, nonce) = claims.split_once('.').expect("three parts");
    let mixed: String = signature
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 3 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    [
        format!("{claims}.{}", signature.to_uppercase()),
        format!("{claims}.{mixed}"),
        format!("{expiry}.{}.{signature}", nonce.to_uppercase()),
        format!("0{expiry}.{nonce}.{signature}"),
        format!("+{expiry}.{nonce}.{signature}"),
        format!("\"{value}\""),
        value.replacen('.', "%2E", 1),
        format!("{value}0"),
    ]
    .into_iter()
    .map(|respelt| format!("offboard_session={respelt}"))
    .collect()
}

/// Re-encoding a logged-out cookie does not revive it: no page, no CSRF token, no change.
/// Re-encoding a live one does not make a second copy of it either; the cookie as issued
/// goes on working.
async fn a_logged_out_cookie_stays_dead_in_every_spelling(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let owner = Console::signed_in(&app).await;
    let live = Console::signed_in(&app).await;
    let csrf = owner.get("/console").await.csrf();
    let pair = owner.cookie.clone().unwrap();
    assert_eq!(
        owner
            .post("/console/logout", &format!("csrf={csrf}"))
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    let live_pair = live.cookie.clone().unwrap();
    for (respelt, was_logged_out) in respellings(&pair)
        .into_iter()
        .map(|c| (c, true))
        .chain(respellings(&live_pair).into_iter().map(|c| (c, false)))
    {
        let copy = Console {
            cookie: Some(respelt.clone()),
            ..Console::new(&app.base_url)
        };
        let page = copy.get("/console").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{respelt}");
        assert_eq!(
            page.location.as_deref(),
            Some("/console/login"),
            "{respelt}"
        );
        assert!(!page.body.contains("name=\"csrf\""), "{respelt}");
        let login = copy.get("/console/login").await;
        assert_eq!(login.status, StatusCode::OK, "{respelt}");
        assert!(!login.body.contains("name=\"csrf\""), "{respelt}");
        let tokens = [csrf.clone(), csrf.to_uppercase()];
        for token in tokens {
            let refused = copy
                .post("/console/worker/pause", &format!("csrf={token}"))
                .await;
            assert_eq!(
                refused.status,
                StatusCode::FORBIDDEN,
                "{respelt} {was_logged_out}"
            );
        }
    }
    assert!(!app.store.worker_state().await.unwrap().paused);

    // The session that was not logged out works as issued.
    let live_csrf = live.get("/console").await.csrf();
    let upper = live
        .post(
            "/console/worker/pause",
            &format!("csrf={}", live_csrf.to_uppercase()),
        )
        .await;
    assert_eq!(upper.status, StatusCode::FORBIDDEN);
    let paused = live
        .post("/console/worker/pause", &format!("csrf={live_csrf}"))
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    assert!(app.store.worker_state().await.unwrap().paused);
    app.stop().await;
}
both_stores!(
    respelt_cookie_on,
    a_logged_out_cookie_stays_dead_in_every_spelling
);

/// A visitor whose connections come from `address` (any 127/8 address is this host).
fn browser_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(address))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

async fn ten_failed_logins_a_minute_are_the_limit(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let guesser = Console {
        http: browser_from(Ipv4Addr::new(127, 0, 0, 1)),
        ..Console::new(&app.base_url)
    };
    for i in 0..10 {
        let page = guesser.login(&format!("guess-{i}")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "try {i}");
    }
    // The eleventh try is refused whatever it holds, also the right token, so that nothing
    // is learnt from it.
    for token in ["guess-10", ADMIN_TOKEN] {
        let response = guesser
            .http
            .post(format!("{}/console/login", app.base_url))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{token}");
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(response.headers().get(SET_COOKIE).is_none());
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "too_many_attempts");
        assert!(!body.to_string().contains(ADMIN_TOKEN));
    }
    // A browser gets the login page again, with the same status and why.
    let response = guesser
        .http
        .post(format!("{}/console/login", app.base_url))
        .header("accept", "text/html,application/xhtml+xml")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let page = response.text().await.unwrap();
    assert!(page.contains("Too many wrong tokens"), "{page}");
    assert!(page.contains("name=\"token\""), "{page}");

    // Another address has tries of its own.
    let colleague = Console {
        http: browser_from(Ipv4Addr::new(127, 0, 0, 2)),
        ..Console::new(&app.base_url)
    };
    assert_eq!(
        colleague.login("typo").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        colleague.login(ADMIN_TOKEN).await.status,
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}
both_stores!(login_limit_on, ten_failed_logins_a_minute_are_the_limit);

/// Console pages answer in HTML, but a request axum refuses before the page runs is the
/// JSON error every route gives.
async fn refused_console_requests_are_json(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let console = Console::signed_in(&app).await;
    let page = console.get("/console?state=failed&state=pending").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    let body: serde_json::Value = serde_json::from_str(&page.body).expect("JSON");
    assert_eq!(body["error"], "bad_request");
    let page = console.get("/console/jobs/%FF").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    let body: serde_json::Value = serde_json::from_str(&page.body).expect("JSON");
    assert_eq!(body["error"], "bad_request");
    app.stop().await;
}
both_stores!(refused_console_on, refused_console_requests_are_json);

async fn without_an_admin_token_nobody_signs_in(db: TestDb) {
    let mut config = test_config(&db, CONFIG);
    config.admin_token = None;
    let service = offboard::serve::Service::start_with_store(
        Arc::new(config),
        db.store().await,
        offboard::serve::Role::Api,
    )
    .await
    .unwrap();
    let console = Console::new(&format!("http://{}", service.addr));

    let page = console.get("/console/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("The console is disabled"));
    assert!(!page.body.contains("name=\"token\""));
    for token in ["", ADMIN_TOKEN, "anything"] {
        let page = console.login(token).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{token}");
        assert!(page.set_cookie.is_none());
    }
    let page = console.get("/console").await;
    assert_eq!(page.location.as_deref(), Some("/console/login"));
    service.stop().await.unwrap();
}
both_stores!(disabled_on, without_an_admin_token_nobody_signs_in);

/// A mass offboarding (more than `approval_above` jobs) stands out on the deliveries page:
/// a banner naming it, its count and that approval is needed, and a highlighted row.
async fn mass_offboardings_stand_out_on_the_deliveries_page(db: TestDb) {
    let config = r#"
[safety]
approval_above = 2

[[sources]]
name = "hr"
scheme = "token"
secrets = ["hr-token"]

  [[sources.rules]]
  name = "leavers"
  for_each = "/people"
  email = "/email"
  actions = ["suspend_access"]
"#;
    let app = TestApp::spawn(&db, config).await;
    let console = Console::signed_in(&app).await;
    let one = json!({ "people": [{ "email": "one@example.com" }] });
    app.deliver("hr", &one).await;
    let page = console.get("/console/deliveries").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("mass-approval"), "{}", page.body);

    let many = json!({ "people": [
        { "email": "m1@example.com" }, { "email": "m2@example.com" }, { "email": "m3@example.com" }
    ] });
    let answer = app.deliver("hr", &many).await;
    let delivery_id = answer["delivery_id"].as_str().expect("delivery id");
    let page = console.get("/console/deliveries").await;
    assert_eq!(page.status, StatusCode::OK);
    for expected in [
        "<section class=\"mass-approval\" role=\"alert\">",
        "1 mass offboarding held for approval",
        delivery_id,
        "would create 3 jobs, more than [safety] approval_above = 2",
        "href=\"/console?state=awaiting_approval\"",
        "approval required",
    ] {
        assert!(
            page.body.contains(expected),
            "{expected} in:\n{}",
            page.body
        );
    }
    assert_eq!(
        page.body.matches("<tr class=\"mass-approval\">").count(),
        1,
        "only the mass delivery's row is highlighted: {}",
        page.body
    );
    app.stop().await;
}
both_stores!(
    mass_offboarding_on,
    mass_offboardings_stand_out_on_the_deliveries_page
);

/// The console's Import and Customers pages refuse an id that is not plain (README, "Manual
/// and bulk jobs") as the API and the command line do, and create nothing.
async fn an_id_that_is_not_plain_creates_nothing(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let console = Console::signed_in(&app).await;
    let csrf = console.get("/console/import").await.csrf();
    let long = "g".repeat(129);
    for id in ["g/1", "g%2F1", "g 1", "g\u{0430}1", long.as_str()] {
        let csv = format!("email,action,group_id\na@example.com,remove_from_group,{id}\n");
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("csv", &csv)
            .append_pair("csrf", &csrf)
            .finish();
        let page = console.post("/console/import/confirm", &form).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{id:?}: {}",
            page.body
        );
        let person = format!("{id} a@example.com");
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("action", "delete_portal_customer")
            .append_pair("person", &person)
            .append_pair("csrf", &csrf)
            .finish();
        let page = console.post("/console/customers/enqueue", &form).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{id:?}: {}",
            page.body
        );
    }
    assert!(
        app.store
            .count_by_state()
            .await
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0)
    );
    app.stop().await;
}
both_stores!(
    an_id_that_is_not_plain_creates_nothing_on,
    an_id_that_is_not_plain_creates_nothing
);
