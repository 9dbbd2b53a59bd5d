//! `harness report --format html`: a report as one self-contained HTML file to send to someone:
//! the verdict, every chart inlined as SVG, the tables of the Markdown/CSV export, the parameters,
//! the machine, and the full text report. No script, no stylesheet, font or image fetched from
//! anywhere: the style is inline and the charts are SVG elements, so it reads the same offline.

use std::fmt::Write;

use crate::render::svg::{run_timeline, sweep_svg_texts, timeline_svg_text};
use crate::render::text::{self, TableData};
use crate::report::check::CheckStatus;
use crate::report::parts::Environment;
use crate::report::AnyReport;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;\
padding:0 1em;color:#222}h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;\
padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}\
.verdict{font-size:1.2em;font-weight:bold;padding:.5em 1em;display:inline-block}\
.pass{background:#e3f6e3;color:#145214}.fail{background:#fbe3e3;color:#7a1010}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}pre{background:#f7f7f7;\
padding:1em;overflow-x:auto;font-size:.8em}";

/// The whole page for `report`.
pub fn report_html(report: &AnyReport) -> String {
    let (started_at, environment) = match report {
        AnyReport::Check(r) => (&r.started_at, &r.environment),
        AnyReport::Run(r) => (&r.started_at, &r.environment),
        AnyReport::Sweep(r) => (&r.started_at, &r.environment),
    };
    let title = format!("harness {} report, {started_at}", report.kind_name());
    let mut page = String::with_capacity(256 << 10);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let (passed, verdict) = verdict(report);
    let _ = writeln!(
        page,
        "<p class=\"verdict {}\">{}</p>",
        if passed { "pass" } else { "fail" },
        escape(&verdict)
    );
    charts(report, &mut page);
    for table in text::report_tables(report) {
        html_table(&mut page, &table);
    }
    page.push_str("<h2>Parameters</h2>\n");
    key_values(&mut page, &report.parameters_json());
    page.push_str("<h2>Machine</h2>\n");
    key_values(&mut page, &environment_json(environment));
    page.push_str("<h2>Text report</h2>\n<pre>");
    page.push_str(&escape(&text_report(report)));
    page.push_str("</pre>\n</body>\n</html>\n");
    page
}

/// Whether the report passed, and the line that says so.
fn verdict(report: &AnyReport) -> (bool, String) {
    let failed = report
        .checks()
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .count();
    match report {
        AnyReport::Sweep(r) => {
            let s = &r.summary;
            let largest = s.largest_ok_conns.map_or("none".into(), |c| c.to_string());
            (
                s.steps_failed == 0,
                format!(
                    "{} steps passed, {} failed; largest passing step: {largest} connections",
                    s.steps_ok, s.steps_failed
                ),
            )
        }
        AnyReport::Run(r) if r.summary.load_failure.is_some() => (
            false,
            format!(
                "FAILED: the load failed ({})",
                r.summary.load_failure.as_deref().unwrap_or("")
            ),
        ),
        _ if failed > 0 => (false, format!("FAILED: {failed} checks failed")),
        _ => (true, format!("PASSED: {} checks", report.checks().len())),
    }
}

/// Every chart of the report, inlined; a chart that cannot be drawn says why instead.
fn charts(report: &AnyReport, page: &mut String) {
    let drawn = match report {
        AnyReport::Check(_) => return,
        AnyReport::Run(r) => {
            timeline_svg_text(&run_timeline(r)).map(|svg| vec![("server tree timeline", svg)])
        }
        AnyReport::Sweep(r) => sweep_svg_texts(r),
    };
    page.push_str("<h2>Charts</h2>\n");
    match drawn {
        Ok(charts) => {
            for (name, svg) in charts {
                let _ = writeln!(
                    page,
                    "<figure id=\"chart-{}\">{}</figure>",
                    escape(name),
                    inline_svg(&svg)
                );
            }
        }
        Err(e) => {
            let _ = writeln!(page, "<p>No chart: {}</p>", escape(&e.to_string()));
        }
    }
}

/// An SVG document as an element of the page: without an XML declaration, and without the
/// namespace attribute, which HTML does not need (its URL is a name, but a reader checking the
/// file for external URLs should find none).
fn inline_svg(svg: &str) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    body.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
        .replace(" xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
}

fn html_table(page: &mut String, t: &TableData) {
    let _ = writeln!(page, "<h2>{}</h2>\n<table>", escape(t.title));
    page.push_str("<tr>");
    for h in &t.header {
        let _ = write!(page, "<th>{}</th>", escape(h));
    }
    page.push_str("</tr>\n");
    for row in &t.rows {
        page.push_str("<tr>");
        for c in row {
            let _ = write!(page, "<td>{}</td>", escape(c));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

/// A JSON object as a two-column table, nested keys joined with dots.
fn key_values(page: &mut String, value: &serde_json::Value) {
    let mut rows = Vec::new();
    flatten("", value, &mut rows);
    page.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(&k),
            escape(&v)
        );
    }
    page.push_str("</table>\n");
}

fn flatten(prefix: &str, value: &serde_json::Value, rows: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = match prefix.is_empty() {
                    true => k.clone(),
                    false => format!("{prefix}.{k}"),
                };
                flatten(&key, v, rows);
            }
        }
        serde_json::Value::String(s) => rows.push((prefix.to_owned(), s.clone())),
        serde_json::Value::Null => rows.push((prefix.to_owned(), "-".into())),
        other => rows.push((prefix.to_owned(), other.to_string())),
    }
}

fn environment_json(e: &Environment) -> serde_json::Value {
    serde_json::to_value(e).unwrap_or(serde_json::Value::Null)
}

fn text_report(report: &AnyReport) -> String {
    match report {
        AnyReport::Check(r) => text::check_report_text(r),
        AnyReport::Run(r) => text::run_report_text(r),
        AnyReport::Sweep(r) => text::sweep_report_text(r),
    }
}

/// Text as HTML character data or a quoted attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_svg_loses_its_declaration_and_namespace() {
        assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
        let svg = "<?xml version=\"1.0\"?>\n<svg width=\"1\" xmlns=\"http://www.w3.org/2000/svg\"><text>x</text></svg>";
        assert_eq!(inline_svg(svg), "<svg width=\"1\"><text>x</text></svg>");
        let mut rows = Vec::new();
        flatten(
            "",
            &serde_json::json!({"a": {"b": 1, "c": null}, "d": "x"}),
            &mut rows,
        );
        assert_eq!(
            rows,
            [
                ("a.b".into(), "1".into()),
                ("a.c".into(), "-".into()),
                ("d".into(), "x".into())
            ]
        );
    }
}
