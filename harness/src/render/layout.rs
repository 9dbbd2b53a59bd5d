//! Plain-text layout shared by the text renderers: aligned tables and wrapping to the width the
//! reports keep to. A leaf: [`super::text`] and [`super::memory`] both build on it.

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The widest line the text reports print (issue 13: a sweep's output fits 120 columns).
pub const TEXT_WIDTH: usize = 120;

/// Breaks every line of `text` longer than `width` at its last space that fits; continuation
/// lines are indented to where a `  label` line's figure starts (26 columns) or by 4 otherwise.
/// Spacing inside a line is kept (tables stay aligned); a word longer than the room stays whole.
pub fn wrap_lines(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let labelled = line.starts_with("  ") && line.get(24..26) == Some("  ");
        let indent = " ".repeat(if labelled { 26 } else { 4 });
        let mut rest = line.to_owned();
        let mut first = true;
        while rest.len() > width && rest.is_ascii() {
            let lead = if first { 2 } else { indent.len() };
            let Some(cut) = rest[..=width]
                .rfind(' ')
                .filter(|&cut| cut > lead && !rest[lead..cut].trim().is_empty())
            else {
                break;
            };
            out.push_str(rest[..cut].trim_end());
            out.push('\n');
            rest = format!("{indent}{}", rest[cut..].trim_start());
            first = false;
        }
        out.push_str(&rest);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod wrap_tests {
    use super::wrap_lines;

    #[test]
    fn long_lines_break_at_spaces_and_keep_their_spacing() {
        let text = format!(
            "  label{}{}\nshort  line\n",
            " ".repeat(19),
            "word ".repeat(40)
        );
        let wrapped = wrap_lines(&text, 60);
        assert!(wrapped.lines().all(|l| l.len() <= 60), "{wrapped}");
        assert!(
            wrapped.starts_with("  label                   word word"),
            "{wrapped}"
        );
        assert!(wrapped.lines().nth(1).unwrap().starts_with(&" ".repeat(26)));
        assert!(wrapped.ends_with("\nshort  line\n"), "{wrapped}");
        assert_eq!(
            wrapped.split_whitespace().filter(|w| *w == "word").count(),
            40
        );
    }
}
