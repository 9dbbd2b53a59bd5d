//! JUnit XML for check results, the format GitHub Actions, GitLab and Jenkins read: one
//! `<testsuite>`, one `<testcase>` per case, `<failure>` or `<skipped>` carrying the detail.
//!
//! Written by hand rather than with `quick-junit`: that crate writes its attributes in another order
//! (`tests skipped failures errors`, `name` before `classname`) and drops control characters where
//! this writes `?`, and the tests pin this exact layout.

use crate::report::check::{CheckResult, CheckStatus};

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The XML document for `results`; `suite` names the test suite, `timestamp` is RFC 3339.
pub fn to_junit_xml(suite: &str, timestamp: &str, results: &[CheckResult]) -> String {
    let failures = results
        .iter()
        .filter(|r| r.status == CheckStatus::Fail)
        .count();
    let skipped = results
        .iter()
        .filter(|r| r.status == CheckStatus::Skip)
        .count();
    let total: f64 = results.iter().map(|r| r.duration_secs).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"{s}\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        s = escape(suite),
        n = results.len()
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"{s}\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\" timestamp=\"{t}\">\n",
        s = escape(suite),
        n = results.len(),
        t = escape(timestamp)
    ));
    for r in results {
        let open = format!(
            "    <testcase classname=\"{s}\" name=\"{name}\" time=\"{time:.3}\"",
            s = escape(suite),
            name = escape(&r.name),
            time = r.duration_secs
        );
        let detail = escape(r.detail.as_deref().unwrap_or(""));
        match r.status {
            CheckStatus::Pass => xml.push_str(&format!("{open}/>\n")),
            CheckStatus::Fail => xml.push_str(&format!(
                "{open}>\n      <failure message=\"{detail}\" type=\"check\">{detail}</failure>\n    </testcase>\n"
            )),
            CheckStatus::Skip => xml.push_str(&format!(
                "{open}>\n      <skipped message=\"{detail}\"/>\n    </testcase>\n"
            )),
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
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

    #[test]
    fn junit_counts_and_escapes() {
        let xml = to_junit_xml(
            "harness check",
            "2026-11-26T18:26:08.123Z",
            &[
                result("echo_round_trip", CheckStatus::Pass, None),
                result(
                    "children_reaped",
                    CheckStatus::Fail,
                    Some("3 zombies <pids 1 & 2>\u{1}"),
                ),
                result("idle_client_ended", CheckStatus::Skip, Some("no \"flag\"")),
            ],
        );
        assert!(xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""));
        assert!(xml.contains("<failure message=\"3 zombies &lt;pids 1 &amp; 2&gt;?\""));
        assert!(xml.contains("<skipped message=\"no &quot;flag&quot;\"/>"));
        assert!(xml.contains(
            "<testcase classname=\"harness check\" name=\"echo_round_trip\" time=\"0.250\"/>"
        ));
        assert_eq!(xml.matches("<testcase ").count(), 3);
    }
}
