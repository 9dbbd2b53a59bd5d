//! Helpers for the harness's integration tests: the binaries under test (the harness itself, the
//! broken fixture server, loadgen's tokio echo server), the lock that keeps forking tests apart,
//! and report reading plus schema validation.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// Tests that start servers whose children the harness counts must not overlap: another test's
/// forks would change the counts.
static FORKING: Mutex<()> = Mutex::new(());

pub fn fork_lock() -> MutexGuard<'static, ()> {
    FORKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn harness() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("harness").expect("harness binary")
}

/// `target/<profile>`, from this test executable's path (`target/<profile>/deps/integration-*`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// A binary of this workspace, built with cargo if it is not there yet.
fn workspace_binary(path: PathBuf, cargo_args: &[&str]) -> PathBuf {
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .arg("build")
            .args(cargo_args)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build {cargo_args:?} failed");
    }
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// The deliberately broken fork server (`tests/fixtures/broken_echo_server.rs`).
pub fn broken_server() -> PathBuf {
    workspace_binary(
        target_dir().join("examples").join("broken_echo_server"),
        &["-p", "harness", "--example", "broken_echo_server"],
    )
}

/// loadgen's minimal tokio echo server: a second, non-forking echo server for `--server-cmd`.
pub fn tokio_echo() -> PathBuf {
    workspace_binary(
        target_dir().join("tokio-echo"),
        &["-p", "loadgen", "--bin", "tokio-echo"],
    )
}

/// The one report with `prefix` in `dir`, parsed.
pub fn only_report(dir: &Path, prefix: &str) -> (PathBuf, serde_json::Value) {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("results dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {prefix} report in {dir:?}: {found:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("results dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    let text = std::fs::read_to_string(&found[0]).expect("read report");
    let value = serde_json::from_str(&text).expect("report is JSON");
    (found[0].clone(), value)
}

/// Schema violations of `report` against `harness/schema.json`; empty when valid.
pub fn schema_errors(report: &serde_json::Value) -> Vec<String> {
    errors_against(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.json"),
        report,
    )
}

/// Schema violations of an embedded loadgen report against `loadgen/schema.json`.
pub fn loadgen_schema_errors(report: &serde_json::Value) -> Vec<String> {
    errors_against(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadgen/schema.json"),
        report,
    )
}

fn errors_against(schema_path: &Path, report: &serde_json::Value) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("read schema"))
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The check named `name` of a report.
pub fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

pub fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("serialize")).expect("write json");
}

/// `harness SUBCOMMAND --results-dir DIR`, for a test to add its own flags to.
pub fn harness_into(subcommand: &str, dir: &Path) -> assert_cmd::Command {
    let mut cmd = harness();
    cmd.arg(subcommand).arg("--results-dir").arg(dir);
    cmd
}

/// The one report with `prefix` in `dir` (see `only_report`), which must validate against the
/// schema.
pub fn valid_report(dir: &Path, prefix: &str) -> (PathBuf, serde_json::Value) {
    let (path, report) = only_report(dir, prefix);
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    (path, report)
}

/// What a CI system reads from a `--junit` file, after checking that it parses as XML.
#[derive(Debug, PartialEq)]
pub struct Junit {
    /// The `<testsuite>`'s `tests`, `failures`, `errors` and `skipped`.
    pub counts: [usize; 4],
    /// Each `<testcase>`'s name in order.
    pub cases: Vec<String>,
    /// The failed cases by name, each with its `<failure>`'s message.
    pub failures: std::collections::BTreeMap<String, String>,
    /// The names of the cases with `<skipped>`.
    pub skipped: std::collections::BTreeSet<String>,
}

pub fn read_junit(path: &Path) -> Junit {
    let text = std::fs::read_to_string(path).expect("read junit");
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}\n{text}", path.display()));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap_or_else(|| panic!("no <testsuite> in {text}"));
    let counts = ["tests", "failures", "errors", "skipped"].map(|attribute| {
        suite
            .attribute(attribute)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count {attribute} in {text}"))
    });
    let mut junit = Junit {
        counts,
        cases: Vec::new(),
        failures: Default::default(),
        skipped: Default::default(),
    };
    for case in suite.children().filter(|n| n.has_tag_name("testcase")) {
        let name = case.attribute("name").expect("testcase name").to_string();
        if let Some(failure) = case.children().find(|n| n.has_tag_name("failure")) {
            let message = failure.attribute("message").unwrap_or_default();
            junit.failures.insert(name.clone(), message.to_string());
        }
        if case.children().any(|n| n.has_tag_name("skipped")) {
            junit.skipped.insert(name.clone());
        }
        junit.cases.push(name);
    }
    junit
}
