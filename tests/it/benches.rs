//! The benchmarks in `examples/*.rs` parse their arguments as the binary does: `--help`
//! prints every flag their usage line documents and exits 0, instead of a panic.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/`, where `cargo test` builds the examples before it runs the
/// tests (this binary is `target/<profile>/deps/it-…`).
fn built_examples() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples")
}

/// Every flag the module doc's `cargo run … --example NAME -- …` lines show, continuation
/// lines included.
fn documented_flags(source: &str) -> Vec<String> {
    let mut flags: Vec<String> = source
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .map(|line| line.trim_start_matches("//!"))
        .filter_map(|text| match text.split_once(" -- ") {
            Some((command, args)) if command.contains("--example") => Some(args),
            _ => text.starts_with("     ").then_some(text),
        })
        .flat_map(|args| args.split(|c: char| c.is_whitespace() || c == '[' || c == ']'))
        .filter(|word| word.len() > 2 && word.starts_with("--"))
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_bench_prints_its_help_with_every_documented_flag() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let built = built_examples();
    for name in names {
        let bin = built.join(&name);
        if !bin.exists() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but {} is not built: cargo test builds the examples",
                    bin.display()
                );
            }
            // Written past the test harness's capture so the skip is visible.
            let _ = writeln!(
                std::io::stderr(),
                "notice: {} is not built (a plain `cargo test` builds it); skipping its --help",
                bin.display()
            );
            continue;
        }
        let output = Command::new(&bin)
            .arg("--help")
            .output()
            .expect("run the example");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name} --help: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(help.contains("Usage:"), "{name}: {help}");
        let source = std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap();
        let flags = documented_flags(&source);
        assert!(!flags.is_empty(), "{name}: no usage line in its module doc");
        for flag in flags {
            assert!(
                help.contains(&format!("{flag} ")),
                "{name}: {flag} missing from\n{help}"
            );
        }

        let output = Command::new(&bin)
            .arg("--no-such-flag")
            .output()
            .expect("run the example");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name}: an unknown flag is a usage error"
        );
    }
}
