//! Slow, idle and malformed clients over raw TCP (README, HTTP API: "Slow clients"), with the time limits
//! shortened: headers that do not arrive in time and bodies that do not finish in time get a
//! 408 and the connection is closed, idle kept-alive connections are closed later and
//! silently, `max_connections` bounds what is served, a shutdown lets the request in
//! flight finish, and requests too malformed to reach the router still get JSON errors.

use std::time::Duration;

use crate::both_stores;
use crate::support::app::TestApp;
use crate::support::db::TestDb;
use offboard::http::server::Limits;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SOURCE: &str = r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["hr-token"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["delete_portal_customer"]
"#;

fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(1000),
        idle_timeout: Duration::from_millis(2000),
        max_connections: 1024,
    }
}

/// How late a close may come on a busy test machine.
const SLACK: Duration = Duration::from_millis(1500);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base_url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

fn hook_head(content_length: usize) -> String {
    format!(
        "POST /hooks/hr HTTP/1.1\r\nHost: offboard\r\nAuthorization: Bearer hr-token\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// Everything the service sends until it closes the connection, and when it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Instant) {
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("the service closes the connection")
        .expect("read");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        Instant::now(),
    )
}

/// One answer on a kept-alive connection: status and body (bodies carry Content-Length).
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before a whole answer: {text}");
        bytes.extend_from_slice(&buf[..n]);
    }
}

fn assert_408(answer: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 408 "),
        "a 408 before the close: {answer:?}"
    );
    let body = &answer[answer.find("\r\n\r\n").expect("a body") + 4..];
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["error"], "request_timeout", "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// The test's instants trail the server's: its idle clock starts when it has written the
/// answer, ours once we have read it. So a close may come this much "early".
const EARLY: Duration = Duration::from_millis(100);

fn assert_closed_between(closed: Instant, from: Instant, limit: Duration) {
    let after = closed - from;
    assert!(
        after + EARLY >= limit && after < limit + SLACK,
        "closed after {after:?}, the limit being {limit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn headers_that_trickle_in_too_slowly_get_408_and_a_close() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_limits(&db, SOURCE, limits()).await;
    let mut stream = connect(&app).await;
    let opened = Instant::now();
    // A byte every 50 ms never completes the headers in time, though it is never idle.
    let head = hook_head(2);
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for byte in head.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut answer = Vec::new();
    tokio::select! {
        () = trickle => unreachable!(),
        read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answer)) => {
            read.expect("closed in time").expect("read");
        }
    }
    assert_closed_between(Instant::now(), opened, limits().header_timeout);
    assert_408(&String::from_utf8_lossy(&answer));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_limits(&db, SOURCE, limits()).await;
    let mut stream = connect(&app).await;
    let opened = Instant::now();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_closed_between(closed, opened, limits().header_timeout);
    assert_408(&answer);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_does_not_finish_in_time_gets_408_and_a_close() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_limits(&db, SOURCE, limits()).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(hook_head(100_000).as_bytes())
        .await
        .unwrap();
    let headers_sent = Instant::now();
    // Keeps sending, a little at a time, for longer than the body may take.
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        loop {
            if writer.write_all(b"          ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut answer = Vec::new();
    tokio::select! {
        () = trickle => unreachable!(),
        read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answer)) => {
            read.expect("closed in time").expect("read");
        }
    }
    assert_closed_between(Instant::now(), headers_sent, limits().body_timeout);
    assert_408(&String::from_utf8_lossy(&answer));
    let deliveries = app.store.list_deliveries(None, 10).await.unwrap();
    assert!(
        deliveries.is_empty(),
        "nothing was recorded: {deliveries:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_alive_connection_outlives_the_header_timeout_and_closes_when_idle() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_limits(&db, SOURCE, limits()).await;
    let mut stream = connect(&app).await;
    let healthz = "GET /healthz HTTP/1.1\r\nHost: offboard\r\n\r\n";
    stream.write_all(healthz.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.0, 200);
    // Idle for longer than headers may take: still open for the next request.
    tokio::time::sleep(limits().header_timeout * 2).await;
    let body = r#"{"email": "leaver@example.com"}"#;
    stream
        .write_all(format!("{}{body}", hook_head(body.len())).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream).await.0, 202);
    let answered = Instant::now();
    let (rest, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(rest, "", "an idle connection is closed without an answer");
    assert_closed_between(closed, answered, limits().idle_timeout);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_more_than_max_connections_are_served_at_once() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db, &format!("max_connections = 2\n{SOURCE}")).await;
    let healthz = "GET /healthz HTTP/1.1\r\nHost: offboard\r\n\r\n";
    let mut served = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(healthz.as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut stream).await.0, 200);
        served.push(stream);
    }
    // The third is accepted by the kernel, but not served while two are open.
    let mut third = connect(&app).await;
    third.write_all(healthz.as_bytes()).await.unwrap();
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(700), third.read(&mut byte)).await;
    assert!(
        waited.is_err(),
        "the third connection was served: {waited:?}"
    );
    drop(served.pop());
    let started = Instant::now();
    assert_eq!(read_answer(&mut third).await.0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served once another closed"
    );
    app.stop().await;
}

/// The JSON error in a whole answer, after asserting its status and headers.
fn json_error_in(answer: &str, status: u16) -> Value {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "a {status}: {answer:?}"
    );
    let end = answer.find("\r\n\r\n").expect("a head");
    let head = answer[..end].to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let body: Value = serde_json::from_str(&answer[end + 4..]).expect("a JSON body");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["error", "message"]
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_hyper_cannot_parse_get_json_errors_too() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_limits(&db, SOURCE, limits()).await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: offboard\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: offboard\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for (request, status, code) in [
        ("GARBAGE\r\n\r\n".to_owned(), 400, "bad_request"),
        (
            "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
            400,
            "bad_request",
        ),
        (
            "GET /he\x01lthz HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            400,
            "bad_request",
        ),
        (huge_header, 431, "headers_too_large"),
        (many_headers, 431, "headers_too_large"),
    ] {
        let mut stream = connect(&app).await;
        // Over 64 KiB the service may stop reading and answer while we still write.
        let _ = stream.write_all(request.as_bytes()).await;
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        let body = json_error_in(&answer, status);
        assert_eq!(body["error"], code, "{request:.60}");
    }

    // On a kept-alive connection: the first request is answered as usual, the malformed
    // second one in JSON.
    let mut stream = connect(&app).await;
    let healthz = "GET /healthz HTTP/1.1\r\nHost: offboard\r\n\r\n";
    stream.write_all(healthz.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.0, 200);
    stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(json_error_in(&answer, 400)["error"], "bad_request");
    app.stop().await;
}

async fn shutdown_finishes_the_request_in_flight(db: TestDb) {
    let app = TestApp::spawn_with_limits(&db, SOURCE, limits()).await;
    let url = app.base_url.clone();
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: offboard\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut idle).await.0, 200);
    let body = r#"{"email": "leaver@example.com"}"#;
    let mut in_flight = connect(&app).await;
    in_flight
        .write_all(format!("{}{}", hook_head(body.len()), &body[..10]).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = app.store.clone();
    let stopping = tokio::spawn(app.stop());
    // The idle connection is closed at once, the one in flight is answered.
    let (rest, _) = read_until_closed(&mut idle, Duration::from_millis(500)).await;
    assert_eq!(rest, "");
    in_flight.write_all(&body.as_bytes()[10..]).await.unwrap();
    assert_eq!(read_answer(&mut in_flight).await.0, 202);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the service stops")
        .unwrap();
    assert!(
        TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .is_err(),
        "no longer listening"
    );
    assert_eq!(store.list_deliveries(None, 10).await.unwrap().len(), 1);
}

both_stores!(
    shutdown_finishes_the_request_in_flight_on,
    shutdown_finishes_the_request_in_flight
);

/// Sends `head` and `sent` bytes of its body, then nothing more: the answer, which must come
/// within 3 s (the body timeout being 30 s, it cannot have waited for the rest).
async fn answer_before_the_body_ends(base_url: &str, head: &str, sent: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(base_url.trim_start_matches("http://"))
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), read_answer(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("no answer before the body ended: {head}"))
}

fn post_head(path: &str, content_type: &str, length: Option<usize>) -> String {
    let length = match length {
        Some(length) => format!("Content-Length: {length}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: offboard\r\nContent-Type: {content_type}\r\n{length}\r\n\r\n"
    )
}

const FORM: &str = "application/x-www-form-urlencoded";
/// Just under what every console form could once send: the import limit.
const NEAR_TWELVE_MB: usize = 12_000_000;

fn assert_json_error(status: u16, body: &str, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["error", "message"]
    );
    assert_eq!(body["error"], code, "{body}");
}

/// An unauthenticated login reads a few KiB at most (README, "Operator console"): a larger
/// body is refused with 413 by its `Content-Length`, or as soon as more than that has come,
/// without waiting for the rest. A body to a route that takes none is not read at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unauthenticated_body_is_read_only_as_far_as_its_route_needs() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db, SOURCE).await;
    let few_kib = format!("token={}", "a".repeat(4 * 1024));

    let head = post_head("/console/login", FORM, Some(NEAR_TWELVE_MB));
    let (status, body) =
        answer_before_the_body_ends(&app.base_url, &head, few_kib.as_bytes()).await;
    assert_json_error(status, &body, 413, "payload_too_large");

    let head = post_head("/console/login", FORM, None);
    let chunk = format!("{:x}\r\n{}\r\n", 8 * 1024, "a".repeat(8 * 1024));
    let (status, body) = answer_before_the_body_ends(&app.base_url, &head, chunk.as_bytes()).await;
    assert_json_error(status, &body, 413, "payload_too_large");

    for path in ["/nope", "/console/nope", "/api/v1/nope", "/console/login/x"] {
        let head = post_head(path, FORM, Some(NEAR_TWELVE_MB));
        let (status, body) =
            answer_before_the_body_ends(&app.base_url, &head, few_kib.as_bytes()).await;
        assert_json_error(status, &body, 404, "not_found");
    }
    // Signed-in forms are read only once their session is known to be valid.
    let head = post_head("/console/worker/pause", FORM, Some(NEAR_TWELVE_MB));
    let (status, _) = answer_before_the_body_ends(&app.base_url, &head, few_kib.as_bytes()).await;
    assert_eq!(status, 403);

    // A login form of ordinary size is read and judged.
    let form = "token=not-the-token";
    let head = post_head("/console/login", FORM, Some(form.len()));
    let (status, body) = answer_before_the_body_ends(&app.base_url, &head, form.as_bytes()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("That is not the admin token"), "{body}");
    app.stop().await;
}

/// Without an admin token the console reads no body: nobody can sign in, so there is nothing
/// to read a form for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_console_reads_no_body() {
    let db = TestDb::sqlite();
    let mut config = crate::support::app::test_config(&db, SOURCE);
    config.admin_token = None;
    let service = offboard::serve::Service::start_with_store(
        std::sync::Arc::new(config),
        db.store().await,
        offboard::serve::Role::Api,
    )
    .await
    .unwrap();
    let base_url = format!("http://{}", service.addr);
    let few_kib = format!("token={}", "a".repeat(4 * 1024));
    for path in ["/console/login", "/console/logout", "/console/import"] {
        let head = post_head(path, FORM, Some(NEAR_TWELVE_MB));
        let (status, body) =
            answer_before_the_body_ends(&base_url, &head, few_kib.as_bytes()).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    service.stop().await.unwrap();
}
