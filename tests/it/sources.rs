//! Every source key cited in brackets in a comment (`[AX286]`, `[JS-admin status.ts]`,
//! `[UM, TUT]`) is listed in `tests/support/SOURCES.md`, so that a clone can follow it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The keys in the first column of SOURCES.md's tables.
fn listed_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|row| row.split_once(" |"))
        .map(|(key, _)| key.trim().to_owned())
        .filter(|key| key != "key" && !key.starts_with('-'))
        .collect()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// A citation is a bracket group after a space (not an index such as `jobs[3]`), in a
/// comment, possibly running over the comment's next line; each comma-separated part starts
/// with its key (upper-case or digits), then optionally a file of that source.
fn cited_keys(source: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut block = String::new();
    for line in source.lines().chain([""]) {
        let trimmed = line.trim_start();
        if let Some(comment) = trimmed.strip_prefix("//") {
            block.push(' ');
            block.push_str(comment.trim_start_matches(['/', '!']));
            continue;
        }
        let mut rest = block.as_str();
        while let Some(open) = rest.find('[') {
            let after_space = rest[..open].ends_with(char::is_whitespace);
            let Some(close) = rest[open..].find(']') else {
                break;
            };
            let inside = &rest[open + 1..open + close];
            if after_space && !inside.contains('[') {
                for part in inside.split(',') {
                    let key = part.split_whitespace().next().unwrap_or_default();
                    let looks_like_key = key
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if looks_like_key {
                        keys.push(key.to_owned());
                    }
                }
            }
            rest = &rest[open + 1..];
        }
        block.clear();
    }
    keys
}

#[test]
fn every_cited_source_key_is_listed_in_sources_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = listed_keys(
        &std::fs::read_to_string(root.join("tests/support/SOURCES.md")).expect("SOURCES.md"),
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests/support"), &mut files);
    let mut cited: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for key in cited_keys(&text) {
            let shown = file
                .strip_prefix(root)
                .unwrap_or(file)
                .display()
                .to_string();
            cited.entry(key).or_default().insert(shown);
        }
    }
    // The fake cites these; finding none would mean the scan, not the sources, is broken.
    for key in ["AX286", "UM", "KB-rev", "JS-admin"] {
        assert!(
            cited.contains_key(key),
            "the scan found no [{key}]: {cited:?}"
        );
    }
    let missing: Vec<String> = cited
        .iter()
        .filter(|(key, _)| !listed.contains(*key))
        .map(|(key, files)| format!("[{key}] in {files:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "cited but not listed in tests/support/SOURCES.md: {missing:#?}"
    );
}

#[test]
fn citations_are_read_from_comments_only() {
    let source = "// one [AX286] and [UM, TUT]\n\
                  /// a [JS-admin status.ts,\n\
                  /// membershipStatus.ts] over two lines\n\
                  let x = a[I0]; // jobs[3] and `[atlassian]` and options[NAME]\n\
                  //! [69262]\n";
    assert_eq!(
        cited_keys(source),
        ["AX286", "UM", "TUT", "JS-admin", "69262"]
    );
}
