//! `offboard customers list` as an operator runs it, against the fake Atlassian: the CSV read
//! back as `jobs import` would, the JSON, the table, the filters and the exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::customers::{CUSTOMERS, HIDDEN, REVOKED, populated_fake};
use crate::support::app::atlassian_toml;
use crate::support::fake_atlassian::{
    DeskChange, FakeAccount, FakeAtlassian, FakeStatus, Fault, FaultKind, Matcher, SITE_TOKEN,
};
use offboard::report::CUSTOMER_CSV_HEADER;
use serde_json::Value;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("offboard.toml");
    let db = dir.join("offboard.db");
    std::fs::write(
        &path,
        format!("database_url = \"sqlite://{}\"\n{text}", db.display()),
    )
    .expect("write config");
    path
}

fn customers_list(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["customers", "list"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .env_remove("OFFBOARD_CONFIG")
        .output()
        .expect("run offboard customers list")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_is_jobs_import_input_and_json_is_the_apis_shape() {
    let fake = populated_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &atlassian_toml(&fake));

    let out = customers_list(&config, &["--csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, CUSTOMER_CSV_HEADER);
    assert_eq!(
        header,
        [
            "account_id",
            "email",
            "display_name",
            "active",
            "service_desks"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), CUSTOMERS - 1, "all but the hidden email");
    assert!(
        rows.iter()
            .all(|row| !row[1].is_empty() && &row[0] != HIDDEN)
    );
    assert_eq!(&rows[0][0], "qm:000");
    assert_eq!(&rows[0][1], "c000@eu.example.com");
    assert_eq!(&rows[0][4], "10;20", "desks joined with ;");
    let revoked: Vec<&str> = rows
        .iter()
        .filter(|row| &row[3] == "false")
        .map(|row| row.get(0).unwrap())
        .collect();
    assert_eq!(revoked, REVOKED);
    assert!(
        text(&out.stderr).contains("1 customers whose email is hidden are not in the CSV"),
        "{}",
        text(&out.stderr)
    );

    let out = customers_list(&config, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        out.stderr.is_empty(),
        "no progress when stderr is not a terminal"
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let customers = body["customers"].as_array().unwrap();
    assert_eq!(customers.len(), CUSTOMERS);
    let keys: Vec<&String> = customers[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "active",
            "display_name",
            "email",
            "service_desks"
        ]
    );
    assert_eq!(customers[CUSTOMERS - 1]["email"], Value::Null);

    let out = customers_list(
        &config,
        &["--json", "--inactive", "--domain", "@Example.com"],
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let ids: Vec<&str> = body["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, REVOKED);

    let out = customers_list(&config, &["--domain", "other.org"]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.starts_with("EMAIL"), "{table}");
    assert!(table.contains("c001@other.org") && !table.contains("c002@example.com"));
    assert!(table.ends_with("50 customers\n"), "{table}");
    assert!(fake.mutating_requests().is_empty(), "read-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_bad_flags_and_atlassian_failures_exit_as_documented() {
    let fake = populated_fake().await;
    let dir = tempfile::tempdir().unwrap();

    let bare = write_config(dir.path(), "");
    let out = customers_list(&bare, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("site_url"),
        "{}",
        text(&out.stderr)
    );
    assert!(fake.requests().is_empty());

    let config = write_config(dir.path(), &atlassian_toml(&fake));
    let out = customers_list(&config, &["--domain", "not a domain"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = customers_list(&config, &["--json", "--csv"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--json and --csv exclude each other"
    );
    assert!(fake.requests().is_empty());

    fake.inject(Fault::once(Matcher::Any, FaultKind::Status401));
    let out = customers_list(&config, &["--csv"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot read the customer inventory")
            && stderr.contains("rejected the site credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains(SITE_TOKEN), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing half-listed");
}

/// What the desks' lists held besides portal-only customers is said on stderr, never left
/// out silently: a licensed agent on a desk, and an account deleted before its record was
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_left_out_are_counted_on_stderr() {
    let fake = FakeAtlassian::start().await;
    for (account, desk) in [
        (FakeAccount::customer("qm:1", "one@example.com"), "10"),
        (
            FakeAccount::managed("557058:agent", "agent@example.com"),
            "10",
        ),
        (FakeAccount::customer("qm:gone", "gone@example.com"), "20"),
    ] {
        let mut account = account;
        account.service_desks.insert(desk.to_owned());
        fake.add_account(account);
    }
    let deleted = fake
        .account("qm:gone")
        .unwrap()
        .in_state(FakeStatus::Deleted);
    fake.after_next_desk_page("20", DeskChange::Put(deleted));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &atlassian_toml(&fake));

    let out = customers_list(&config, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(body["customers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["customers"][0]["account_id"], "qm:1");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "1 accounts on the service desks' customer lists are not portal-only customers"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("could not be read by id (deleted since?) and are left out: qm:gone"),
        "{stderr}"
    );
}

/// Customers' own text is hostile input: in the table its control characters are shown
/// escaped, in the CSV every cell a spreadsheet would run is behind a `'`, and `jobs import`
/// reads the CSV back to the very addresses and accounts the site listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_customer_text_is_escaped_neutralised_and_read_back() {
    let fake = FakeAtlassian::start().await;
    let people = [
        (
            "qm:1",
            "=1+1@x.example.com",
            "\u{1b}[2J\u{1b}]0;pwned\u{7}Eve",
        ),
        ("-qm:2", "+a@x.example.com", "@SUM(1)\r\u{9b}31m"),
        ("qm:3", "-b@x.example.com", "\u{202e}gnp.exe\tTab"),
    ];
    for (account_id, email, name) in people {
        let mut account = FakeAccount::customer(account_id, email);
        account.display_name = name.to_owned();
        account.service_desks = ["10".to_owned()].into();
        fake.add_account(account);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &atlassian_toml(&fake));

    let out = customers_list(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        !table
            .chars()
            .any(|c| c != '\n' && (c.is_control() || c == '\u{202e}')),
        "{table:?}"
    );
    assert!(
        table.contains("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}Eve"),
        "{table}"
    );
    assert!(table.contains("@SUM(1)\\r\\u{9b}31m"), "{table}");
    assert!(table.contains("\\u{202e}gnp.exe\\tTab"), "{table}");

    let out = customers_list(&config, &["--csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    for row in reader.records() {
        let row = row.unwrap();
        for cell in row.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} in {row:?}"
            );
        }
    }
    let file = dir.path().join("customers.csv");
    std::fs::write(&file, &out.stdout).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_offboard"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("DATABASE_URL")
            .env_remove("OFFBOARD_CONFIG")
            .output()
            .expect("run offboard")
    };
    let imported = run(&[
        "jobs",
        "import",
        file.to_str().unwrap(),
        "--action",
        "delete_portal_customer",
    ]);
    assert_eq!(
        imported.status.code(),
        Some(0),
        "{}",
        text(&imported.stderr)
    );
    let listed = run(&["jobs", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let mut jobs: Vec<(String, String)> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["account_id"].as_str().unwrap().to_owned(),
                j["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    jobs.sort();
    let mut expected: Vec<(String, String)> = people
        .iter()
        .map(|(id, email, _)| ((*id).to_owned(), (*email).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(jobs, expected);
    assert!(fake.mutating_requests().is_empty(), "read-only");
}
