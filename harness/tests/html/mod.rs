//! `harness report --format html`: one self-contained page for a sweep and for a run, checked by
//! an HTML5 parser (html5ever, through scraper) in every run and by a real headless Chromium
//! when /usr/bin/chromium is installed (skipped with one line when it is not).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{fork_lock, harness};

/// The page `harness report --format html` prints for `report`.
fn html_of(report: &Path) -> String {
    let out = harness()
        .args(["report", "--format", "html"])
        .arg(report)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).expect("utf-8")
}

/// Parses `page` as HTML5: no parse error, no external resource, and `charts` inline SVGs.
fn assert_self_contained(page: &str, charts: usize) -> scraper::Html {
    let doc = scraper::Html::parse_document(page);
    assert!(doc.errors.is_empty(), "parse errors: {:?}", doc.errors);
    for needle in [
        "http://", "https://", "<script", "<link", " src=", "url(", "@import",
    ] {
        assert!(!page.contains(needle), "{needle} in the page");
    }
    let count = |css: &str| doc.select(&scraper::Selector::parse(css).unwrap()).count();
    assert_eq!(count("figure > svg"), charts);
    assert_eq!(count("head > title"), 1);
    assert_eq!(count("p.verdict"), 1);
    assert!(count("table") >= 3, "tables, parameters and machine");
    assert!(count("pre") == 1, "the text report");
    doc
}

/// Loads `page` in headless Chromium (when installed) and returns the DOM it built.
fn chromium_dom(page: &Path) -> Option<String> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        eprintln!("skipped: no /usr/bin/chromium for the browser check of the HTML report");
        return None;
    }
    let profile = tempfile::tempdir().expect("profile dir");
    // To a file, not a pipe: a DOM larger than the pipe's buffer would block chromium while
    // nobody reads until it exits.
    let dom = profile.path().join("dom.html");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&dom).expect("dom file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(std::fs::read_to_string(&dom).expect("the dumped DOM"))
}

fn check_in_browser(page: &str, charts: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.html");
    std::fs::write(&file, page).expect("write");
    if let Some(dom) = chromium_dom(&file) {
        assert_eq!(dom.matches("<svg").count(), charts, "{dom}");
        assert!(dom.contains("class=\"verdict"), "{dom}");
    }
}

#[test]
fn a_sweep_report_is_one_page_with_its_six_charts_inline() {
    let sweep = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../results/baseline/sweep-20261127T101338.645Z.json");
    let page = html_of(&sweep);
    // The four sweep charts, then the USL and CPU charts.
    let doc = assert_self_contained(&page, 6);
    let text: String = doc.root_element().text().collect();
    assert!(text.contains("steps passed"), "the verdict");
    assert!(
        text.contains("Machine") && text.contains("kernel"),
        "the machine"
    );
    assert!(text.contains("Echo latency by load"), "the charts' titles");
    assert!(text.contains("Throughput and the USL"), "the USL chart");
    check_in_browser(&page, 6);
}

#[test]
fn a_run_report_is_one_page_with_its_timeline_inline() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = crate::tokio_run_report(dir.path());
    let page = html_of(&path);
    let doc = assert_self_contained(&page, 1);
    let text: String = doc.root_element().text().collect();
    assert!(text.contains("PASSED"), "the verdict: {text}");
    assert!(text.contains("Server children"), "the timeline chart");
    check_in_browser(&page, 1);
}
