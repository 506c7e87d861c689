//! A landed migration is never edited. sqlx records the checksum of every migration it applies
//! (the SHA-384 of its SQL) and refuses to migrate a database whose recorded checksum differs,
//! so an edited migration breaks every database that already ran it. Every file in
//! `migrations/postgres/` and `migrations/sqlite/` is pinned here with its SHA-384 the moment
//! it lands; a schema change is a new file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use offboard::domain::{Action, Email, NewChain, NewStep};
use offboard::store::NewDelivery;
use serde_json::json;
use sha2::{Digest, Sha384};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, SqliteConnection};

use crate::both_stores;
use crate::support::db::{Backend, TestDb};

/// Every landed migration and the SHA-384 of its file. A new migration gets its line here in
/// the commit that adds it; a line is never changed or removed.
const LANDED: &[(&str, &str)] = &[
    (
        "migrations/postgres/20261128000001_initial.sql",
        "8e64e566119cc7ce4d576fd903f4c0146e20db97a3b4955da2f20cd14468ee80104c60e52fe520c83179d2292de49b0e",
    ),
    (
        "migrations/postgres/20261128000002_accept_in_one_call.sql",
        "4f9436977da3049526dc8f20660564c778082b55bb982dfeb0822ad4ad9707d63bc2ea546c7b9c8bf5ad3e0ad555f693",
    ),
    (
        "migrations/postgres/20261201000001_recorded_account.sql",
        "28be3aa4e95e68b3461926be8b162e0242d767250c89cce1d0b7e98c98b19fac0aa03904e5f2ba72c2a0573b05aed6fe",
    ),
    (
        "migrations/postgres/20261201000002_unsigned_ids_and_mass_approval.sql",
        "a3376df103c15e2875953a2369ecc9af7ef44ec904ad207e4cca641e814e5d3bd8471229e76910dfdba1c5f298ea1fa6",
    ),
    (
        "migrations/postgres/20261201000003_revoked_sessions.sql",
        "df48780b68595fce6362a72d986d26baedbf2f220c5326dc69fdce84ad9a609c8cdc2d6f96d26cdea46dd11800a7d320",
    ),
    (
        "migrations/postgres/20261206000001_decisions_from_rust.sql",
        "05067c59a2796eae3922dd51799a7892b580f174cb92b3bcf953d13ce5e771b79f4fa192b90c740ac7bf8cf565b35a23",
    ),
    (
        "migrations/postgres/20261206000002_undo_actions.sql",
        "44801e2980cf0f7f744f18df6335a4357e05391ded830727df6ec29f0d3415d4a3137a0f2598e4437d68f226275fb68d",
    ),
    (
        "migrations/postgres/20261207000001_target_in_live_key.sql",
        "727a9bc457c711942b654ea60e9d99e3fa53be54b9801f886778c618c8727e6454956b02b1b780efc0a2b5f0b8a8ea49",
    ),
    (
        "migrations/postgres/20261207000002_cancel_spares_undo.sql",
        "369ad875636e26174c21de8d4521f7ad078b9e5c46833fb6547740cda29994769b3ba8abec95fbd70229d1840f0a216e",
    ),
    (
        "migrations/postgres/20261208000002_acceptance_in_rust.sql",
        "2e8127623b68f68d5c89f3f98cb575852c0308c769947355f20f495a07d495ef2f9e146106e8413384b81fa39f67db15",
    ),
    (
        "migrations/sqlite/20261128000001_initial.sql",
        "8ce965bceeeb6f393d485ad05607e76a1c10e905a306aa67c697e538482f674959333d9c4d689c7b6922c7e52567a3fd",
    ),
    (
        "migrations/sqlite/20261201000001_recorded_account.sql",
        "c98df1a1774c91e5e09c2918a0586b80ac825c90404d8b3b3f87e2180ef22b037c6a5650259120fc714f2e74e6e011b5",
    ),
    (
        "migrations/sqlite/20261201000002_unsigned_ids_and_mass_approval.sql",
        "e103342b198585aaaa689edc2070cf654bea66fda6b0b6833de782c3999bf4a2f6ab05cf368ceb063f9bdd17b2397f79",
    ),
    (
        "migrations/sqlite/20261201000003_revoked_sessions.sql",
        "9efe12bb20e7543460a2d6d5eb6b7c34d835300b878e875f1c252e7745d2901d09e39206e69f909b43d75729cf8ba34b",
    ),
    (
        "migrations/sqlite/20261206000002_undo_actions.sql",
        "96f60aeeb597d00ecf758d27582bceb239601fd30d828e362a17e8a94e1ea1385659497cfba6ef6a91f93f0f942d7bd8",
    ),
    (
        "migrations/sqlite/20261207000001_target_in_live_key.sql",
        "fee1b1cae8e657d559f9218315890f61354943a906f53510fc134b11fd67a7f523e69a17dbf668b76ffaa6c65bf51b78",
    ),
    (
        "migrations/postgres/20261208000001_action_reference_table.sql",
        "89b56d62a088ac8c0acf14d5749cf3e4e3363ecdb2d5058a11bb2c4d3ab2b0aa89bfdfc8fd5bf973dceca65d03c2852d",
    ),
    (
        "migrations/sqlite/20261208000001_action_reference_table.sql",
        "0e56492cc1c20077879386ed696ad5812053af5a6e9849c78a05f9be90da5dc67bead93e0a5fa9847f624ce8a6d25de6",
    ),
    (
        "migrations/postgres/20261209000001_verifications.sql",
        "4bef185b5ecf62b6346f0d2ee34045c343e78dec7db3842de780f0d479ab1fd2d44b8148f9da9337b5d8c932f2cbc5f7",
    ),
    (
        "migrations/sqlite/20261209000001_verifications.sql",
        "e857e71ae929f976cdc0a67316b8dfd19475b463f605a16770ab230c019bc6bb9cee904637ba1bee50c420edb9104c12",
    ),
    (
        "migrations/postgres/20261209000005_verification_sweep_index.sql",
        "1540b58b4e7e1b5f33c0afa7b7ac4ddaaa65fab1bc5e022cbc6bfc382013b881f85b5d27fd75124ab1ac205b0998ef6e",
    ),
    (
        "migrations/sqlite/20261209000005_verification_sweep_index.sql",
        "1540b58b4e7e1b5f33c0afa7b7ac4ddaaa65fab1bc5e022cbc6bfc382013b881f85b5d27fd75124ab1ac205b0998ef6e",
    ),
    (
        "migrations/postgres/20261209000002_event_chain.sql",
        "3e2394d5e8b12983853fea6be8842d47208dc6d832e3ea9e1cd70296126907f66e612bb6be6e8ca3a1becbcf43e3ef37",
    ),
    (
        "migrations/sqlite/20261209000002_event_chain.sql",
        "b6bf7c5fe440699bdce58b118808118d98b6f02349a25f0f11386f25838bb80e524fdcd6ada8401e5638097cc6d761ea",
    ),
    (
        "migrations/postgres/20261210000005_people.sql",
        "edf310e15586b78156ed0c65c51fefc75e9eb944048b01015a8980a629ed90f6bc9644dd502110ab917dd25b74bdf54c",
    ),
    (
        "migrations/sqlite/20261210000005_people.sql",
        "1e867a61f9dc66548c7b37ff461685c4d027bce3be45e936f0bbfc7aa6371fd443c612cb01459885238045d59da1cd2f",
    ),
    (
        "migrations/postgres/20261210000006_people_filters.sql",
        "2653068be8c84a4788858e0380e3769ed8ba40b5e4a4f6611a3f7239ed508a50b9f0ba739bc9bc94637219e834bd8a9a",
    ),
    (
        "migrations/sqlite/20261210000006_people_filters.sql",
        "2653068be8c84a4788858e0380e3769ed8ba40b5e4a4f6611a3f7239ed508a50b9f0ba739bc9bc94637219e834bd8a9a",
    ),
    (
        "migrations/postgres/20261211000001_handover.sql",
        "60ffad064b92e5670dc3b1c77c70686e38e054706f92383108cd31f984be6c263608a1d302a64ba8282dce256c93b639",
    ),
    (
        "migrations/sqlite/20261211000001_handover.sql",
        "60ffad064b92e5670dc3b1c77c70686e38e054706f92383108cd31f984be6c263608a1d302a64ba8282dce256c93b639",
    ),
    (
        "migrations/postgres/20261212000001_lanes.sql",
        "84e6df355b2ba2b12226c9306239e49811210d56b4a444897480eeaa4891961a3594b8e17f4a0e216382e82ce4221efd",
    ),
    (
        "migrations/postgres/20261212000002_rate_budget.sql",
        "9879a74887e43bd886fa483d08e7e1ff061020ef0c9a21f82a6b98ce6d50aace63465558d7a03c3a080c3e83bb54ef5f",
    ),
    (
        "migrations/sqlite/20261212000001_lanes.sql",
        "84e6df355b2ba2b12226c9306239e49811210d56b4a444897480eeaa4891961a3594b8e17f4a0e216382e82ce4221efd",
    ),
];

const DIRECTORIES: [&str; 2] = ["migrations/postgres", "migrations/sqlite"];

fn sha384_hex(bytes: &[u8]) -> String {
    hex::encode(Sha384::digest(bytes))
}

/// Every file in the migration directories, by its path from the repository root.
fn migration_files() -> BTreeMap<String, Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = BTreeMap::new();
    for directory in DIRECTORIES {
        let entries = std::fs::read_dir(root.join(directory))
            .unwrap_or_else(|e| panic!("cannot list {directory}: {e}"));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {directory}: {e}"));
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path())
                .unwrap_or_else(|e| panic!("cannot read {directory}/{name}: {e}"));
            files.insert(format!("{directory}/{name}"), bytes);
        }
    }
    files
}

/// What is wrong with `files` against the pinned `landed` table, one message per file.
fn problems(landed: &[(&str, &str)], files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, pinned) in landed {
        match files.get(*path) {
            None => problems.push(format!(
                "migration {path} was removed after it landed: restore it (databases that ran it \
                 record it), and add a new migration for the change instead"
            )),
            Some(bytes) => {
                let actual = sha384_hex(bytes);
                if actual != *pinned {
                    problems.push(format!(
                        "migration {path} was edited after it landed: add a new migration instead, \
                         and put the landed text back (SHA-384 pinned {pinned}, now {actual})"
                    ));
                }
            }
        }
    }
    for (path, bytes) in files {
        if !landed.iter().any(|(pinned, _)| pinned == path) {
            problems.push(format!(
                "migration {path} is not pinned yet: add its checksum to LANDED in \
                 tests/it/migrations.rs: (\"{path}\", \"{}\"),",
                sha384_hex(bytes)
            ));
        }
    }
    problems
}

#[test]
fn landed_migrations_are_never_edited_and_every_migration_is_pinned() {
    let problems = problems(LANDED, &migration_files());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The pin is the checksum sqlx itself records for the migration.
#[test]
fn the_pinned_digest_is_the_checksum_sqlx_records() {
    for (path, bytes) in migration_files() {
        let sql = String::from_utf8(bytes.clone()).expect("a migration is UTF-8");
        let migration = Migration::new(
            0,
            Cow::Borrowed(""),
            MigrationType::Simple,
            Cow::Owned(sql),
            false,
        );
        assert_eq!(
            hex::encode(&*migration.checksum),
            sha384_hex(&bytes),
            "{path}"
        );
    }
}

fn files(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    entries
        .iter()
        .map(|(path, sql)| (path.to_string(), sql.as_bytes().to_vec()))
        .collect()
}

#[test]
fn an_edited_removed_or_unpinned_migration_is_reported() {
    let one = "CREATE TABLE one (id INTEGER);\n";
    let two = "CREATE TABLE two (id INTEGER);\n";
    let (one_sha, two_sha) = (sha384_hex(one.as_bytes()), sha384_hex(two.as_bytes()));
    let landed = [
        ("m/1_one.sql", one_sha.as_str()),
        ("m/2_two.sql", two_sha.as_str()),
    ];

    assert!(
        problems(
            &landed,
            &files(&[("m/1_one.sql", one), ("m/2_two.sql", two)])
        )
        .is_empty()
    );

    let edited = problems(
        &landed,
        &files(&[
            ("m/1_one.sql", "CREATE TABLE one (id BIGINT);\n"),
            ("m/2_two.sql", two),
        ]),
    );
    assert_eq!(edited.len(), 1, "{edited:?}");
    assert!(
        edited[0].starts_with(
            "migration m/1_one.sql was edited after it landed: add a new migration instead"
        ),
        "{edited:?}"
    );

    let removed = problems(&landed, &files(&[("m/1_one.sql", one)]));
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed[0].starts_with("migration m/2_two.sql was removed after it landed"),
        "{removed:?}"
    );

    let three = "CREATE TABLE three (id INTEGER);\n";
    let unpinned = problems(
        &landed,
        &files(&[
            ("m/1_one.sql", one),
            ("m/2_two.sql", two),
            ("m/3_three.sql", three),
        ]),
    );
    assert_eq!(
        unpinned,
        [format!(
            "migration m/3_three.sql is not pinned yet: add its checksum to LANDED in \
             tests/it/migrations.rs: (\"m/3_three.sql\", \"{}\"),",
            sha384_hex(three.as_bytes())
        )]
    );
}

/// A connection to a test database that is not a store yet: the migrations before one are
/// applied to it, and rows of the old shape written, before the store migrates the rest.
enum OldDb {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl OldDb {
    /// `db` with every landed migration before `version` applied, as sqlx reads them from
    /// the migration directory (the checksums the store's own migrator then finds recorded).
    async fn before(db: &TestDb, version: i64) -> OldDb {
        let (directory, mut conn) = match db.backend {
            Backend::Sqlite => {
                let options: SqliteConnectOptions = db.url.parse().expect("a SQLite URL");
                let conn = options
                    .create_if_missing(true)
                    .connect()
                    .await
                    .expect("open SQLite");
                ("migrations/sqlite/", OldDb::Sqlite(conn))
            }
            Backend::Postgres => {
                let conn = PgConnection::connect(&db.url)
                    .await
                    .expect("connect to Postgres");
                ("migrations/postgres/", OldDb::Postgres(conn))
            }
        };
        let migrations: Vec<Migration> = migration_files()
            .into_iter()
            .filter_map(|(path, bytes)| {
                let file = path.strip_prefix(directory)?.strip_suffix(".sql")?;
                let (number, description) = file.split_once('_')?;
                let number: i64 = number.parse().ok()?;
                (number < version).then(|| {
                    Migration::new(
                        number,
                        Cow::Owned(description.replace('_', " ")),
                        MigrationType::Simple,
                        Cow::Owned(String::from_utf8(bytes).expect("a migration is UTF-8")),
                        false,
                    )
                })
            })
            .collect();
        let earlier = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        match &mut conn {
            OldDb::Sqlite(c) => earlier.run(c).await,
            OldDb::Postgres(c) => earlier.run(c).await,
        }
        .expect("apply the earlier migrations");
        conn
    }

    async fn run(&mut self, sql: &str) {
        match self {
            OldDb::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            OldDb::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        }
        .expect(sql);
    }

    /// Whether `sql` runs, for a statement a constraint may refuse.
    async fn runs(&mut self, sql: &str) -> bool {
        match self {
            OldDb::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.is_ok(),
            OldDb::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.is_ok(),
        }
    }

    async fn strings(&mut self, sql: &str) -> Vec<String> {
        match self {
            OldDb::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await,
            OldDb::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await,
        }
        .expect(sql)
    }

    /// The SQL for "now" in a timestamp column.
    fn now(&self) -> &'static str {
        match self {
            OldDb::Sqlite(_) => "0",
            OldDb::Postgres(_) => "now()",
        }
    }

    fn index_names(&self) -> &'static str {
        match self {
            OldDb::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' \
                 ORDER BY name"
            }
            OldDb::Postgres(_) => {
                "SELECT indexname::text FROM pg_indexes \
                 WHERE tablename = 'jobs' AND schemaname = current_schema() ORDER BY indexname"
            }
        }
    }
}

/// One live job per (action, email, target) (README, "One live job per (action, email,
/// target)"): the migration gives every job already there its target, read from its
/// `params` as the Rust code reads them (an id written as a number is its digits), and the
/// key of a live job is then (action, email, target), for the jobs from before too.
async fn existing_jobs_get_their_target_and_the_new_key(db: TestDb) {
    let mut old = OldDb::before(&db, 20261207000001).await;
    let now = old.now();
    old.run(&format!(
        "INSERT INTO jobs (action, params, state, email, run_at, max_attempts, created_at, \
             updated_at, finalized_at) VALUES \
         ('remove_from_group', '{{\"group_id\":\"g-1\"}}', 'pending', 'ann@example.com', \
             {now}, 3, {now}, {now}, NULL), \
         ('remove_from_service_desk', '{{\"service_desk_id\":10}}', 'pending', \
             'cus@example.com', {now}, 3, {now}, {now}, NULL), \
         ('add_to_customer_organization', '{{\"organization_id\":\"3\"}}', 'pending', \
             'cus@example.com', {now}, 3, {now}, {now}, NULL), \
         ('suspend_access', '{{}}', 'pending', 'ann@example.com', {now}, 3, {now}, {now}, NULL), \
         ('remove_from_group', '{{\"group_id\":\"g-2\"}}', 'cancelled', 'ann@example.com', \
             {now}, 3, {now}, {now}, {now})"
    ))
    .await;
    let indexes = old.index_names();
    assert!(
        old.strings(indexes)
            .await
            .contains(&"jobs_one_live_per_action_email".to_owned())
    );

    let store = db.store().await;

    let targets = old
        .strings("SELECT action || ' ' || target FROM jobs ORDER BY id")
        .await;
    assert_eq!(
        targets,
        [
            "remove_from_group g-1",
            "remove_from_service_desk 10",
            "add_to_customer_organization 3",
            "suspend_access ",
            "remove_from_group g-2",
        ]
    );
    let indexes = old.strings(indexes).await;
    assert!(
        indexes.contains(&"jobs_one_live_per_action_email_target".to_owned()),
        "{indexes:?}"
    );
    assert!(
        !indexes.contains(&"jobs_one_live_per_action_email".to_owned()),
        "{indexes:?}"
    );

    // A person with a live removal from g-1 from before is removed from g-2 too; asking for
    // g-1 again, or for desk 10 (stored as a number then, as text now), finds the jobs there.
    let step = |action: Action, name: &str, id: &str| NewStep {
        action,
        params: json!({ name: id }).as_object().cloned().unwrap(),
        run_at: Utc::now(),
        lane: offboard::domain::Lane::Bulk,
    };
    let chain = |email: &str, steps: Vec<NewStep>| NewChain {
        email: Email::parse(email).unwrap(),
        account_id: None,
        account_type: None,
        rule: "leaver".to_owned(),
        approval: false,
        steps,
    };
    let receipt = store
        .accept_delivery(NewDelivery::signed(
            "hr",
            "after-migration",
            vec![
                chain(
                    "ann@example.com",
                    vec![step(Action::RemoveFromGroup, "group_id", "g-2")],
                ),
                chain(
                    "ann@example.com",
                    vec![step(Action::RemoveFromGroup, "group_id", "g-1")],
                ),
                chain(
                    "cus@example.com",
                    vec![step(Action::RemoveFromServiceDesk, "service_desk_id", "10")],
                ),
            ],
        ))
        .await
        .expect("accept after the migration");
    // (Postgres spends a sequence value on each insert that conflicts: the new id is past 5.)
    let ids: Vec<i64> = receipt
        .job_ids()
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{}", receipt.body());
    assert!(ids[0] > 5, "g-2 is a new job: {}", receipt.body());
    assert_eq!(ids[1..], [1, 2], "{}", receipt.body());
    match old {
        OldDb::Sqlite(c) => c.close().await.ok(),
        OldDb::Postgres(c) => c.close().await.ok(),
    };
}
both_stores!(
    existing_jobs_get_their_target_and_the_new_key_on,
    existing_jobs_get_their_target_and_the_new_key
);

/// A new action needs no migration: the action CHECK of jobs becomes a reference table,
/// `actions`, seeded from `Action::ALL` at every start. The upgrade keeps every job, with its
/// id, chain and audit trail; `jobs.action` then takes only a name the table holds, and a
/// name missing from it comes back at the next start.
async fn jobs_keep_their_actions_when_the_check_becomes_a_reference_table(db: TestDb) {
    let mut old = OldDb::before(&db, 20261208000001).await;
    let now = old.now();
    old.run(&format!(
        "INSERT INTO jobs (action, params, state, email, run_at, max_attempts, created_at, \
             updated_at, finalized_at, target) VALUES \
         ('suspend_access', '{{}}', 'cancelled', 'ann@example.com', {now}, 3, {now}, {now}, \
             {now}, ''), \
         ('remove_from_group', '{{\"group_id\":\"g-1\"}}', 'pending', 'ann@example.com', \
             {now}, 3, {now}, {now}, NULL, 'g-1'), \
         ('add_to_customer_organization', '{{\"organization_id\":\"3\"}}', 'pending', \
             'cus@example.com', {now}, 3, {now}, {now}, NULL, '3'); \
         UPDATE jobs SET depends_on = 1 WHERE id = 2; \
         INSERT INTO job_events (job_id, at, from_state, to_state, actor) VALUES \
             (1, {now}, NULL, 'pending', 'test'), (1, {now}, 'pending', 'cancelled', 'test');"
    ))
    .await;

    let store = db.store().await;

    let jobs = old
        .strings(
            "SELECT CAST(id AS TEXT) || ' ' || action || ' ' || \
                 coalesce(CAST(depends_on AS TEXT), '-') || ' ' || target \
             FROM jobs ORDER BY id",
        )
        .await;
    assert_eq!(
        jobs,
        [
            "1 suspend_access - ",
            "2 remove_from_group 1 g-1",
            "3 add_to_customer_organization - 3",
        ]
    );
    let events = old
        .strings("SELECT to_state FROM job_events WHERE job_id = 1 ORDER BY id")
        .await;
    assert_eq!(events, ["pending", "cancelled"]);
    let job = store
        .job(offboard::domain::JobId(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.action, Action::RemoveFromGroup);
    assert_eq!(job.key_target(), "g-1");

    let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        old.strings("SELECT name FROM actions ORDER BY name").await,
        names
    );
    let insert = |action: &str| {
        format!(
            "INSERT INTO jobs (action, params, state, email, run_at, max_attempts, created_at, \
                 updated_at) VALUES ('{action}', '{{}}', 'pending', 'new@example.com', {now}, 3, \
                 {now}, {now})"
        )
    };
    assert!(old.runs(&insert("deactivate_account")).await);
    assert!(!old.runs(&insert("no_such_action")).await);
    // Ids go on from the old table's counter (Postgres's sequence was never reset).
    let ids = old
        .strings("SELECT CAST(id AS TEXT) FROM jobs WHERE email = 'new@example.com'")
        .await;
    assert_eq!(ids, ["4"]);

    // The start seeds what the table lacks from the action table.
    old.run("DELETE FROM actions WHERE name = 'cancel_delete_account'")
        .await;
    store.migrate().await.expect("migrate again");
    assert_eq!(
        old.strings("SELECT name FROM actions ORDER BY name").await,
        names
    );
    match old {
        OldDb::Sqlite(c) => c.close().await.ok(),
        OldDb::Postgres(c) => c.close().await.ok(),
    };
}
both_stores!(
    jobs_keep_their_actions_when_the_check_becomes_a_reference_table_on,
    jobs_keep_their_actions_when_the_check_becomes_a_reference_table
);

/// A time `secs` after the epoch, as each backend writes it in SQL.
fn at_secs(old: &OldDb, secs: i64) -> String {
    match old {
        OldDb::Sqlite(_) => (secs * 1_000_000).to_string(),
        OldDb::Postgres(_) => format!("to_timestamp({secs})"),
    }
}

/// A person's case (README, "A person's case"): the `people` migration gives every person
/// with jobs already recorded their row, first seen when the first delivery of their jobs
/// was received (a job without a recorded delivery: when it was created), due at the earliest
/// run_at.
async fn existing_jobs_become_people(db: TestDb) {
    let mut old = OldDb::before(&db, 20261210000005).await;
    let t = |secs| at_secs(&old, secs);
    let sql = format!(
        "INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, \
             key_body_sha256, status, job_ids, response) VALUES \
         ('hr', 'd1', {t100}, '{sha}', '', 'accepted', '[]', '{{}}'), \
         ('hr', 'd2', {t300}, '{sha}', '', 'accepted', '[]', '{{}}'); \
         INSERT INTO jobs (action, state, email, run_at, max_attempts, source, delivery_id, \
             created_at, updated_at) VALUES \
         ('revoke_portal_access', 'pending', 'ann@example.com', {t200}, 3, 'hr', 'd1', {t105}, {t105}), \
         ('delete_portal_customer', 'pending', 'ann@example.com', {t150}, 3, 'hr', 'd2', {t305}, {t305}), \
         ('suspend_access', 'pending', 'bob@example.com', {t50}, 3, 'cli', 'gone', {t400}, {t400})",
        sha = "ab".repeat(32),
        t100 = t(100),
        t300 = t(300),
        t200 = t(200),
        t105 = t(105),
        t150 = t(150),
        t305 = t(305),
        t50 = t(50),
        t400 = t(400),
    );
    old.run(&sql).await;
    let store = db.store().await;
    let secs = |s| chrono::DateTime::from_timestamp(s, 0).unwrap();
    let ann = store
        .case_reads()
        .person("ann@example.com")
        .await
        .unwrap()
        .expect("ann");
    assert_eq!((ann.first_seen, ann.effective_at), (secs(100), secs(150)));
    let bob = store
        .case_reads()
        .person("bob@example.com")
        .await
        .unwrap()
        .expect("bob");
    assert_eq!((bob.first_seen, bob.effective_at), (secs(400), secs(50)));
}
both_stores!(existing_jobs_become_people_on, existing_jobs_become_people);
