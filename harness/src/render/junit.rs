//! JUnit XML for check results, the format GitHub Actions, GitLab and Jenkins read: one
//! `<testsuite>`, one `<testcase>` per case, `<failure>` or `<skipped>` carrying the detail.
//! `quick-junit` builds and escapes the document; this only maps check results onto it.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::report::check::{CheckResult, CheckStatus};

/// `None` for a negative, NaN or absurd duration, so that the attribute is left out rather than
/// the conversion panicking.
fn duration(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

fn test_case(suite: &str, result: &CheckResult) -> TestCase {
    let status = match result.status {
        CheckStatus::Pass => TestCaseStatus::success(),
        CheckStatus::Fail => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_type("check");
            if let Some(detail) = &result.detail {
                // Some consumers show the attribute, others the element's text: give both.
                status.set_message(detail.as_str());
                status.set_description(detail.as_str());
            }
            status
        }
        CheckStatus::Skip => {
            let mut status = TestCaseStatus::skipped();
            if let Some(detail) = &result.detail {
                status.set_message(detail.as_str());
            }
            status
        }
    };
    let mut case = TestCase::new(result.name.as_str(), status);
    case.set_classname(suite);
    if let Some(time) = duration(result.duration_secs) {
        case.set_time(time);
    }
    case
}

/// The XML document for `results`; `suite` names the test suite, `timestamp` is RFC 3339.
pub fn to_junit_xml(suite: &str, timestamp: &str, results: &[CheckResult]) -> String {
    let total = duration(results.iter().map(|r| r.duration_secs).sum());
    let mut test_suite = TestSuite::new(suite);
    // The harness makes `timestamp` itself; were it ever not RFC 3339, the attribute is left out.
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(timestamp) {
        test_suite.set_timestamp(at);
    }
    if let Some(total) = total {
        test_suite.set_time(total);
    }
    test_suite.add_test_cases(results.iter().map(|r| test_case(suite, r)));
    let mut report = Report::new(suite);
    if let Some(total) = total {
        report.set_time(total);
    }
    report.add_test_suite(test_suite);
    // Serializing into memory fails only on a write error, and a Vec never refuses a write.
    report
        .to_string()
        .expect("serializing a JUnit report into memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: CheckStatus, detail: Option<&str>) -> CheckResult {
        CheckResult {
            name: name.into(),
            status,
            detail: detail.map(String::from),
            duration_secs: 0.25,
        }
    }

    fn count(node: roxmltree::Node, attribute: &str) -> usize {
        node.attribute(attribute)
            .unwrap_or_else(|| panic!("{} has no {attribute}", node.tag_name().name()))
            .parse()
            .expect("a count")
    }

    fn seconds(node: roxmltree::Node) -> f64 {
        node.attribute("time")
            .expect("time")
            .parse()
            .expect("seconds")
    }

    fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
        node.children().find(|n| n.has_tag_name(tag))
    }

    /// What a CI system reads back: the counts, each case's name and outcome, the failure and skip
    /// reasons as text, even when those carry markup characters and control characters (which XML
    /// 1.0 forbids even escaped) and the suite name does too.
    #[test]
    fn junit_counts_and_escapes() {
        let suite = "harness check <&\"'>";
        let failure = "3 zombies <pids 1 & 2>\u{0}\u{1}\u{b}\u{1f} \"left\" 'over'";
        let xml = to_junit_xml(
            suite,
            "2026-11-26T18:26:08.123Z",
            &[
                result("echo_round_trip", CheckStatus::Pass, None),
                result("children_reaped", CheckStatus::Fail, Some(failure)),
                result("idle_client_ended", CheckStatus::Skip, Some("no \"flag\"")),
                result("half_close", CheckStatus::Fail, None),
            ],
        );
        let doc = roxmltree::Document::parse(&xml)
            .unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{xml}"));

        let root = doc.root_element();
        assert!(root.has_tag_name("testsuites"), "{xml}");
        let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(suites.len(), 1, "{xml}");
        let testsuite = suites[0];
        assert!(testsuite.has_tag_name("testsuite"));
        for node in [root, testsuite] {
            assert_eq!(node.attribute("name"), Some(suite));
            assert_eq!(count(node, "tests"), 4, "{xml}");
            assert_eq!(count(node, "failures"), 2, "{xml}");
            assert_eq!(count(node, "errors"), 0, "{xml}");
            assert_eq!(count(node, "skipped"), 1, "{xml}");
            assert!((seconds(node) - 1.0).abs() < 1e-9, "{xml}");
        }
        assert_eq!(
            testsuite.attribute("timestamp"),
            Some("2026-11-26T18:26:08.123+00:00")
        );

        let cases: Vec<_> = testsuite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        let names: Vec<_> = cases.iter().filter_map(|c| c.attribute("name")).collect();
        assert_eq!(
            names,
            [
                "echo_round_trip",
                "children_reaped",
                "idle_client_ended",
                "half_close"
            ]
        );
        for case in &cases {
            assert_eq!(case.attribute("classname"), Some(suite));
            assert!((seconds(*case) - 0.25).abs() < 1e-9, "{xml}");
        }
        let outcome = |case: roxmltree::Node| {
            (
                child(case, "failure").is_some(),
                child(case, "skipped").is_some(),
                child(case, "error").is_some(),
            )
        };
        let [passed, failed, skipped, failed_without_detail] = cases[..] else {
            panic!("four cases");
        };
        assert_eq!(outcome(passed), (false, false, false), "{xml}");
        assert_eq!(outcome(failed), (true, false, false), "{xml}");
        assert_eq!(outcome(skipped), (false, true, false), "{xml}");
        assert_eq!(
            outcome(failed_without_detail),
            (true, false, false),
            "{xml}"
        );

        // The reason survives as text; only the control characters are gone.
        let readable = "3 zombies <pids 1 & 2> \"left\" 'over'";
        let failure = child(failed, "failure").expect("failure");
        assert_eq!(failure.attribute("message"), Some(readable), "{xml}");
        assert_eq!(failure.text(), Some(readable), "{xml}");
        assert_eq!(failure.attribute("type"), Some("check"));
        assert_eq!(
            child(skipped, "skipped").and_then(|s| s.attribute("message")),
            Some("no \"flag\"")
        );
    }
}
