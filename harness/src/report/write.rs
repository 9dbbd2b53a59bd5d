//! Writing reports: every file the harness writes (JSON reports, JUnit, SVG charts) goes through
//! [`write_atomic`], loadgen's one temp-file-and-rename write, so a crash never leaves half a file;
//! and the `<kind>-<UTC time>.json` names reports are written under.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

/// The current time as RFC 3339 UTC with milliseconds, for `started_at`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `2026-11-26T18:26:08.123Z` -> `20261126T182608.123Z`, for file names.
pub fn file_stamp(rfc3339: &str) -> String {
    rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so readers
/// see either no file or the whole file; creates the directory first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    loadgen::output::write_file_atomically(path, bytes)
}

/// Serializes `report` as pretty JSON to `dir/<prefix>-<stamp>.json`; returns the path.
pub fn write_report<T: Serialize>(
    dir: &Path,
    prefix: &str,
    started_at: &str,
    report: &T,
) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{prefix}-{}.json", file_stamp(started_at)));
    let mut json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_file_friendly() {
        assert_eq!(
            file_stamp("2026-11-26T18:26:08.123Z"),
            "20261126T182608.123Z"
        );
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && now.len() == 24, "{now}");
    }

    #[test]
    fn atomic_write_leaves_only_the_file() {
        let dir = std::env::temp_dir().join(format!("harness-atomic-{}", std::process::id()));
        let path = dir.join("sub").join("r.json");
        write_atomic(&path, b"{}\n").expect("write");
        write_atomic(&path, b"{\"a\":1}\n").expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"a\":1}\n");
        let names: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
        // A directory in the way makes the write fail without leaving a temp file behind.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("x")).expect("mkdir");
        assert!(write_atomic(&blocked, b"x").is_err());
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
