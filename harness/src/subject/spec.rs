//! Which server to start and how: the built-in fork echo server, a binary given with `--server`, or
//! any echo server given as `--server-cmd`; its argv and flags, whether it takes a flag, and the
//! `--max-children` it will run with.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use super::error::ServerError;

/// Which server to start and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSpec {
    /// A program that speaks the fork echo server's contract: it takes the server flags, prints
    /// `listening on IP:PORT` as its first stdout line, and a JSON stats line on stderr on SIGUSR1
    /// and at exit.
    Contract {
        program: PathBuf,
        /// Arguments before the server flags (`__serve --` for the built-in server).
        pre_args: Vec<OsString>,
        /// Server flags, as passed after `--` plus whatever the harness set (`--port 0`).
        flags: Vec<String>,
        /// Whether this is the workspace's own server, whose flags are known without asking.
        builtin: bool,
    },
    /// Any other echo server: argv with `{port}` filled with a free port; ready when a connect succeeds.
    Command { argv: Vec<String> },
}

impl ServerSpec {
    /// The workspace's fork echo server, run as `harness __serve -- FLAGS` from this very binary.
    pub fn builtin(flags: &[String]) -> Result<ServerSpec, ServerError> {
        let exe = std::env::current_exe().map_err(|e| ServerError::Spawn {
            program: "harness".into(),
            source: e,
        })?;
        Ok(ServerSpec::Contract {
            program: exe,
            pre_args: vec!["__serve".into(), "--".into()],
            flags: with_default_port(flags),
            builtin: true,
        })
    }

    /// A binary speaking the contract.
    pub fn binary(path: &Path, flags: &[String]) -> Result<ServerSpec, ServerError> {
        let meta = std::fs::metadata(path).map_err(|_| ServerError::NotFound(path.into()))?;
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(ServerError::NotExecutable(path.into()));
        }
        Ok(ServerSpec::Contract {
            program: path.into(),
            pre_args: Vec::new(),
            flags: with_default_port(flags),
            builtin: false,
        })
    }

    /// `--server-cmd`: split on whitespace (no shell, no quoting), `{port}` required.
    pub fn command(template: &str) -> Result<ServerSpec, ServerError> {
        let argv: Vec<String> = template.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            return Err(ServerError::EmptyCommand);
        }
        if !argv.iter().any(|a| a.contains("{port}")) {
            return Err(ServerError::NoPortPlaceholder(template.into()));
        }
        Ok(ServerSpec::Command { argv })
    }

    pub fn speaks_contract(&self) -> bool {
        matches!(self, ServerSpec::Contract { .. })
    }

    /// A short description for reports and messages.
    pub fn describe(&self) -> String {
        match self {
            ServerSpec::Contract {
                program,
                flags,
                builtin,
                ..
            } => {
                let name = if *builtin {
                    "fork-echo-server (built in)".to_string()
                } else {
                    program.display().to_string()
                };
                if flags.is_empty() {
                    name
                } else {
                    format!("{name} {}", flags.join(" "))
                }
            }
            ServerSpec::Command { argv } => argv.join(" "),
        }
    }

    /// Whether the server takes `flag` (e.g. `--idle-timeout`): known for the built-in server,
    /// asked of other contract binaries through their `--help`, never for `--server-cmd`.
    pub fn supports_flag(&self, flag: &str) -> bool {
        match self {
            ServerSpec::Contract { builtin: true, .. } => true,
            ServerSpec::Contract {
                program, pre_args, ..
            } => help_text(program, pre_args).is_some_and(|help| help.contains(flag)),
            ServerSpec::Command { .. } => false,
        }
    }

    /// The same server with `flag` set to `value`, replacing any value the user gave. Only for
    /// contract servers; a `--server-cmd` is returned unchanged.
    pub fn with_flag(&self, flag: &str, value: &str) -> ServerSpec {
        let mut spec = self.clone();
        if let ServerSpec::Contract { flags, .. } = &mut spec {
            *flags = set_flag(flags, flag, value);
        }
        spec
    }
}

/// The harness listens on a free port unless the user chose one.
fn with_default_port(flags: &[String]) -> Vec<String> {
    if flags
        .iter()
        .any(|f| f == "--port" || f.starts_with("--port="))
    {
        flags.to_vec()
    } else {
        let mut out = flags.to_vec();
        out.extend(["--port".to_string(), "0".to_string()]);
        out
    }
}

/// Removes every `--flag V` / `--flag=V` from `flags` and appends `--flag value`.
pub fn set_flag(flags: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for f in flags {
        if skip_next {
            skip_next = false;
            continue;
        }
        if f == flag {
            skip_next = true;
            continue;
        }
        if f.starts_with(&format!("{flag}=")) {
            continue;
        }
        out.push(f.clone());
    }
    out.extend([flag.to_string(), value.to_string()]);
    out
}

/// The output of `PROGRAM --help`, bounded to five seconds (a program that ignores `--help` and
/// starts serving is killed).
fn help_text(program: &Path, pre_args: &[OsString]) -> Option<String> {
    let mut child = Command::new(program)
        .args(pre_args)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                return None;
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The server's `--max-children`: exactly as the built-in server parses its flags; for another
/// contract binary only when given explicitly; unknown for `--server-cmd`.
pub fn server_max_children(spec: &ServerSpec) -> Option<u64> {
    match spec {
        ServerSpec::Contract {
            flags,
            builtin: true,
            ..
        } => {
            let argv = std::iter::once("fork-echo-server".to_string()).chain(flags.iter().cloned());
            fork_echo_server::Config::from_args(argv)
                .ok()
                .map(|config| config.max_children as u64)
        }
        ServerSpec::Contract { flags, .. } => explicit_flag(flags, "--max-children"),
        ServerSpec::Command { .. } => None,
    }
}

fn explicit_flag(flags: &[String], flag: &str) -> Option<u64> {
    let mut value = None;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == flag {
            value = it.next().and_then(|v| v.parse().ok());
        } else if let Some(v) = f.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            value = v.parse().ok();
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_replaced_not_duplicated() {
        let flags: Vec<String> = ["--idle-timeout", "60", "-v", "--port=9", "--backlog", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            set_flag(&flags, "--idle-timeout", "1"),
            ["-v", "--port=9", "--backlog", "5", "--idle-timeout", "1"]
        );
        assert_eq!(
            set_flag(&flags, "--port", "0"),
            [
                "--idle-timeout",
                "60",
                "-v",
                "--backlog",
                "5",
                "--port",
                "0"
            ]
        );
        assert_eq!(with_default_port(&flags), flags);
        assert_eq!(with_default_port(&[]), ["--port", "0"]);
    }

    #[test]
    fn command_needs_a_port_placeholder() {
        assert!(matches!(
            ServerSpec::command("socat TCP-LISTEN:1 PIPE"),
            Err(ServerError::NoPortPlaceholder(_))
        ));
        assert!(matches!(
            ServerSpec::command("  "),
            Err(ServerError::EmptyCommand)
        ));
        assert!(matches!(
            ServerSpec::binary(Path::new("/nonexistent/server"), &[]),
            Err(ServerError::NotFound(_))
        ));
    }

    #[test]
    fn max_children_comes_from_the_flags_the_server_gets() {
        let builtin = ServerSpec::builtin(&[]).unwrap();
        assert_eq!(
            server_max_children(&builtin),
            Some(4096),
            "the server's default"
        );
        let limited = ServerSpec::builtin(&["--max-children".into(), "64".into()]).unwrap();
        assert_eq!(server_max_children(&limited), Some(64));
        let eq = ServerSpec::builtin(&["--max-children=32".into()]).unwrap();
        assert_eq!(server_max_children(&eq), Some(32));
        let other = ServerSpec::command("socat TCP-LISTEN:{port},fork PIPE").unwrap();
        assert_eq!(server_max_children(&other), None);
        assert_eq!(
            explicit_flag(&["--max-children".into(), "9".into()], "--max-children"),
            Some(9)
        );
        assert_eq!(
            explicit_flag(&["--backlog".into(), "9".into()], "--max-children"),
            None
        );
    }
}
