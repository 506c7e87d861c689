//! `offboard jobs import FILE`: a CSV file of people, every row checked before anything is
//! enqueued (README, "Manual and bulk jobs"). A header row names the columns: `email` is
//! required; `action` (else the command's `--action`), `account_id`, `at`, a hand-over's
//! `successor` and the actions' parameters (`Param::name`) are taken; `display_name`, `active` and
//! `service_desks` (what `customers list --csv` adds) are ignored; any other column is an
//! error, since a misspelt `acount_id` must not be silently dropped.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::Entry;
use crate::config::Config;
use crate::domain::{NewChain, Param};

/// The columns an import reads besides the actions' parameters (`Param`).
const OWN: [&str; 5] = ["email", "action", "account_id", "at", "successor"];
/// The columns an import ignores.
const IGNORED: [&str; 3] = ["display_name", "active", "service_desks"];

/// The columns an import reads: its own, then one per parameter an action takes.
fn taken() -> impl Iterator<Item = &'static str> {
    OWN.into_iter().chain(Param::ALL.map(Param::name))
}

/// The key that names an import: the same file with the same options is the same request,
/// whether the command line or the console sends it, so importing it again creates nothing.
/// Vouching for the account ids (`--trust-account-id`) makes another request: the file
/// imported again with it enqueues the jobs that failed `account_unverifiable`.
pub fn key(file: &[u8], action: Option<&str>, approval: bool, trust_account_id: bool) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(file);
    hash.update(format!("\0{action:?}\0{approval}"));
    // Appended only when set, so that the keys of earlier imports stay what they were.
    if trust_account_id {
        hash.update("\0trust_account_id");
    }
    format!("import:{}", hex::encode(hash.finalize()))
}

/// A row that cannot be enqueued: its line in the file (1 is the header) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// One row of the file, checked: its line, the entry it reads as (when it parses), and the
/// chain it becomes or why it cannot.
#[derive(Clone, Debug)]
pub struct CheckedRow {
    pub line: u64,
    pub entry: Option<Entry>,
    pub result: Result<NewChain, String>,
}

/// Every row of the file as a chain, or every bad row. `action` is the action of rows that
/// have none; `progress` is told each row checked.
pub fn check(
    config: &Config,
    file: &[u8],
    action: Option<&str>,
    approval: bool,
    now: DateTime<Utc>,
    progress: impl FnMut(u64),
) -> Result<Vec<NewChain>, Vec<BadRow>> {
    let rows = check_rows(config, file, action, approval, now, progress)?;
    let mut chains = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for row in rows {
        match row.result {
            Ok(chain) => chains.push(chain),
            Err(reason) => bad.push(BadRow {
                line: row.line,
                reason,
            }),
        }
    }
    if bad.is_empty() { Ok(chains) } else { Err(bad) }
}

/// Every row checked, good and bad (for a page that shows them all); `Err` when the file as
/// a whole cannot be read: its header, or no rows at all.
pub fn check_rows(
    config: &Config,
    file: &[u8],
    action: Option<&str>,
    approval: bool,
    now: DateTime<Utc>,
    mut progress: impl FnMut(u64),
) -> Result<Vec<CheckedRow>, Vec<BadRow>> {
    let file = file.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(file);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(file);
    let header = header(&mut reader, action)?;
    // csv counts lines as it reads records, skipping blank ones: a file's own line numbers
    // come from where each record starts.
    let newlines: Vec<usize> = file
        .iter()
        .enumerate()
        .filter_map(|(at, b)| (*b == b'\n').then_some(at))
        .collect();
    // A record's position is where csv began reading it, before any blank lines it skipped.
    let line_at = |byte: u64| {
        let mut at = usize::try_from(byte).unwrap_or(usize::MAX).min(file.len());
        while matches!(file.get(at), Some(b'\n' | b'\r')) {
            at += 1;
        }
        1 + newlines.partition_point(|&newline| newline < at) as u64
    };
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = line_at(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, |p| line_at(p.byte()));
                if rows.len() == super::MAX_ENTRIES {
                    // Checked before a row is recorded: a longer import fails at the store's
                    // deadline after saying every row is valid.
                    return Err(vec![BadRow {
                        line,
                        reason: format!(
                            "more than {} rows: an import takes at most {}; split the file",
                            super::MAX_ENTRIES,
                            super::MAX_ENTRIES
                        ),
                    }]);
                }
                let entry = entry(&header, &record, action);
                let result = entry
                    .clone()
                    .and_then(|entry| super::chain(config, &entry, approval, now));
                rows.push(CheckedRow {
                    line,
                    entry: entry.ok(),
                    result,
                });
                progress(line);
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| line_at(p.byte()));
                rows.push(CheckedRow {
                    line,
                    entry: None,
                    result: Err(csv_error(&e)),
                });
                // A row that does not parse may have desynchronised the rest (an open quote).
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    break;
                }
            }
        }
    }
    if rows.is_empty() {
        return Err(vec![BadRow {
            line: 1,
            reason: "the file has a header but no rows".into(),
        }]);
    }
    Ok(rows)
}

/// Where each taken column is, checked: `email` present, nothing unknown or repeated, and an
/// action for every row.
fn header(
    reader: &mut csv::Reader<&[u8]>,
    action: Option<&str>,
) -> Result<Vec<(usize, &'static str)>, Vec<BadRow>> {
    let at_header = |reason: String| vec![BadRow { line: 1, reason }];
    let names = reader
        .headers()
        .map_err(|e| at_header(csv_error(&e)))?
        .clone();
    let mut columns: Vec<(usize, &'static str)> = Vec::new();
    let mut problems = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let name = name.to_ascii_lowercase();
        if let Some(taken) = taken().find(|t| *t == name) {
            if columns.iter().any(|(_, c)| *c == taken) {
                problems.push(format!("column `{taken}` appears twice"));
            }
            columns.push((index, taken));
        } else if !IGNORED.contains(&name.as_str()) {
            problems.push(format!(
                "unknown column `{}` (columns: {}; ignored: {})",
                shown(&name),
                taken().collect::<Vec<_>>().join(", "),
                IGNORED.join(", ")
            ));
        }
    }
    if !columns.iter().any(|(_, c)| *c == "email") {
        problems.push("no `email` column".into());
    }
    if action.is_none() && !columns.iter().any(|(_, c)| *c == "action") {
        problems.push("no `action` column, and no --action".into());
    }
    if problems.is_empty() {
        Ok(columns)
    } else {
        Err(at_header(problems.join("; ")))
    }
}

/// One row as an entry; a row's own `action` wins over the command's.
fn entry(
    header: &[(usize, &'static str)],
    record: &csv::StringRecord,
    action: Option<&str>,
) -> Result<Entry, String> {
    let mut entry = Entry::default();
    let mut params = Map::new();
    for (index, column) in header {
        // What offboard neutralised when it wrote the file (`customers list --csv`) is read
        // back as it was.
        let value = crate::cell::from_csv(record.get(*index).unwrap_or_default());
        if value.is_empty() {
            continue;
        }
        match *column {
            "email" => entry.email = value.to_owned(),
            "action" => entry.action = value.to_owned(),
            "account_id" => entry.account_id = Some(value.to_owned()),
            "at" => entry.at = Some(Value::String(value.to_owned())),
            "successor" => entry.successor = Some(value.to_owned()),
            param if Param::ALL.iter().any(|p| p.name() == param) => {
                params.insert(param.to_owned(), Value::String(value.to_owned()));
            }
            _ => {}
        }
    }
    if entry.email.is_empty() {
        return Err("no email".into());
    }
    if entry.action.is_empty() {
        entry.action = action.ok_or("no action, and no --action")?.to_owned();
    }
    entry.params = params;
    Ok(entry)
}

fn csv_error(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        _ => "not valid CSV".into(),
    }
}

/// A column name as the error repeats it: it is the file's text, so it is cut short.
fn shown(name: &str) -> String {
    name.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn config() -> Config {
        Config::from_toml("", crate::config::ConfigOrigin::Defaults, &|_| None).unwrap()
    }

    fn check_text(text: &str, action: Option<&str>) -> Result<Vec<NewChain>, Vec<BadRow>> {
        check(&config(), text.as_bytes(), action, false, now(), |_| {})
    }

    #[test]
    fn an_import_takes_at_most_ten_thousand_rows() {
        let rows = |n: usize| {
            let mut text = String::from("email\n");
            for i in 0..n {
                text.push_str(&format!("p{i}@example.com\n"));
            }
            text
        };
        let full = check_text(&rows(crate::manual::MAX_ENTRIES), Some("suspend_access"));
        assert_eq!(full.unwrap().len(), crate::manual::MAX_ENTRIES);
        let over = check_text(
            &rows(crate::manual::MAX_ENTRIES + 1),
            Some("suspend_access"),
        );
        let bad = over.unwrap_err();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 10_002);
        assert!(bad[0].reason.contains("at most 10000"), "{}", bad[0]);
    }

    #[test]
    fn takes_what_customers_list_writes_with_an_action() {
        let text = "account_id,email,display_name,active,service_desks\n\
                    qm:1,Ann@Example.com,Ann,false,1;2\n\
                    qm:2,bob@example.com,\"Bob, Jr.\",true,1\n";
        let chains = check_text(text, Some("delete_portal_customer")).unwrap();
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0].email.as_str(), "ann@example.com");
        assert_eq!(chains[0].account_id.as_deref(), Some("qm:1"));
        assert_eq!(chains[1].steps[0].run_at, now());
        assert_eq!(chains[0].rule, "manual");
    }

    /// A hand-over row names its successor, by email or account id; another action's row
    /// may not (README, "Hand-over before removal").
    #[test]
    fn a_hand_over_row_names_its_successor() {
        let text = "email,action,successor\n\
                    a@example.com,transfer_filters,boss@example.com\n\
                    b@example.com,reassign_open_issues,557058:boss\n\
                    c@example.com,transfer_dashboards,\n";
        let chains = check_text(text, None).unwrap();
        let params = |i: usize| serde_json::Value::Object(chains[i].steps[0].params.clone());
        assert_eq!(
            params(0),
            serde_json::json!({ "successor_email": "boss@example.com" })
        );
        assert_eq!(
            params(1),
            serde_json::json!({ "successor_account_id": "557058:boss" })
        );
        assert_eq!(
            params(2),
            serde_json::json!({}),
            "[handover] fallback_successor then"
        );
        let text = "email,action,successor\n\
                    a@example.com,suspend_access,boss@example.com\n\
                    b@example.com,transfer_filters,not an@email\n";
        let bad = check_text(text, None).unwrap_err();
        assert!(bad[0].reason.contains("takes no successor"), "{}", bad[0]);
        assert!(bad[1].reason.contains("invalid successor"), "{}", bad[1]);
    }

    #[test]
    fn every_bad_row_is_named_by_its_line() {
        let text = "email,action,group_id,at\n\
                    ok@example.com,suspend_access,,\n\
                    not-an-email,suspend_access,,\n\
                    x@example.com,fly_away,,\n\
                    \n\
                    y@example.com,remove_from_group,,\n\
                    z@example.com,suspend_access,g-1,\n\
                    w@example.com,suspend_access,,yesterday\n\
                    v@example.com,suspend_access\n";
        let bad = check_text(text, None).unwrap_err();
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 6, 7, 8, 9], "{bad:?}");
        assert!(bad[0].reason.contains("invalid email"), "{bad:?}");
        assert!(bad[1].reason.contains("unknown action"), "{bad:?}");
        assert!(bad[2].reason.contains("needs `group_id`"), "{bad:?}");
        assert!(bad[3].reason.contains("takes no parameter"), "{bad:?}");
        assert!(bad[4].reason.contains("invalid at"), "{bad:?}");
        assert!(bad[5].reason.contains("2 fields"), "{bad:?}");
    }

    #[test]
    fn the_header_is_checked_first() {
        for (text, why) in [
            (
                "mail,action\nx@example.com,suspend_access\n",
                "unknown column `mail`",
            ),
            ("email\nx@example.com\n", "no `action` column"),
            ("action\nsuspend_access\n", "no `email` column"),
            (
                "email,email\nx@example.com,y@example.com\n",
                "appears twice",
            ),
            ("email,action\n", "no rows"),
            ("", "no `email` column"),
        ] {
            let bad = check_text(text, None).unwrap_err();
            assert_eq!(bad[0].line, 1, "{text:?}");
            assert!(bad[0].reason.contains(why), "{text:?}: {bad:?}");
        }
    }

    #[test]
    fn hostile_and_look_alike_input_is_refused_not_reinterpreted() {
        // A Kelvin sign is not a `k`; a BOM is skipped; an open quote stops the check.
        let bad = check_text(
            "email,action\n\u{212A}im@example.com,suspend_access\n",
            None,
        )
        .unwrap_err();
        assert_eq!(bad[0].line, 2);
        let ok = check_text(
            "\u{FEFF}email,action\nkim@example.com,suspend_access\n",
            None,
        );
        assert_eq!(ok.unwrap().len(), 1);
        let bad = check(
            &config(),
            b"email,action\n\"open@example.com,suspend_access\n",
            None,
            false,
            now(),
            |_| {},
        )
        .unwrap_err();
        assert!(!bad.is_empty());
        let bad = check(
            &config(),
            b"email,action\nx@ex\xFFample.com,suspend_access\n",
            None,
            false,
            now(),
            |_| {},
        )
        .unwrap_err();
        assert!(bad[0].reason.contains("UTF-8"), "{bad:?}");
        let long = format!("email,{}\n", "z".repeat(5000));
        let bad = check_text(&long, Some("suspend_access")).unwrap_err();
        assert!(
            bad[0].reason.len() < 400,
            "the error repeats at most 40 characters of a column"
        );
    }

    #[test]
    fn a_row_cannot_write_through_all_directories() {
        let text = "[atlassian]\nadmin_api_key = \"k\"\norg_id = \"o\"\ndirectory_id = \"-\"\n";
        let config =
            Config::from_toml(text, crate::config::ConfigOrigin::Defaults, &|_| None).unwrap();
        let file = "email,action\na@example.com,deactivate_account\nb@example.com,suspend_access\n";
        let bad = check(&config, file.as_bytes(), None, false, now(), |_| {}).unwrap_err();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].line, 3);
        assert!(
            bad[0]
                .reason
                .starts_with("suspend_access writes to the directory, but directory_id is `-`"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_rows_action_wins_and_params_are_taken() {
        let text = "email,action,group_id,service_desk_id\n\
                    a@example.com,remove_from_group,g-7,\n\
                    b@example.com,,,10\n";
        let chains = check_text(text, Some("remove_from_service_desk")).unwrap();
        assert_eq!(chains[0].steps[0].params["group_id"], "g-7");
        assert_eq!(
            chains[1].steps[0].action,
            crate::domain::Action::RemoveFromServiceDesk
        );
        assert_eq!(chains[1].steps[0].params["service_desk_id"], "10");
    }
}
