//! More connections than one process can hold: the split of one run over worker processes.
//!
//! A process holds at most RLIMIT_NOFILE descriptors and one source address about 28,000
//! ephemeral ports to one target. [`plan`] works out how many worker processes the descriptor
//! limit requires (or takes `--procs`) and, for a loopback target, how many `127.0.0.x` source
//! addresses the port range requires; [`run_auto`] then runs in-process when one process will do,
//! or re-executes the `loadgen` binary once per worker (`--procs 1`, so a worker never splits
//! again) with its share of the connections and rates, each writing its JSON report to a file in
//! a private temporary directory. The parent draws the one progress line, waits for every worker
//! under a deadline (a worker still running past it is killed), and merges the reports exactly
//! with [`crate::Report::merge_with`]. The workers share one barrier: each says
//! [`CONNECTED_LINE`] on stdout when its connect phase is over and waits for a line on stdin;
//! the parent answers once every worker has connected (or ended), so the measured phases start
//! together and the merged peak really was open at once. A worker that dies or writes no report is counted: its
//! connections are attempted and failed (`connect.other`, with an example naming the worker and
//! how it ended) and `merge.workers_lost` says how many — never a hang, never a silent gap.
//!
//! Below `cli`, above the engine it runs in-process when one process will do.
//!
//! Layers it may import: `engine`, `report`, `config`, `error`.
//! Crates it may import: `humantime`, `indicatif`.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use crate::config::end_margin;
use crate::engine::start::CONNECTED_LINE;
use crate::report::hlog::IntervalLog;
use crate::report::identity;
use crate::report::Identity;
use crate::{engine::limits, Config, Error, Report};

/// Descriptors a worker needs besides its connections (kept in step with the preflight check).
const SPARE_FDS: u64 = 64;

/// Most worker processes loadgen starts on its own; past this a load is more likely a typo than a
/// plan (`--procs` can still ask for more).
pub const MAX_AUTO_PROCS: u64 = 64;

/// Time past a worker's own hard deadline before the parent kills it: the worker needs it to
/// write its report after its deadline cut outstanding work off.
const WORKER_GRACE: Duration = Duration::from_secs(10);

/// How one run is laid out over processes and source addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Worker processes (1 = run in this process).
    pub procs: usize,
    /// Source addresses to bind round-robin (the caller's, or a `127.0.0.x` spread).
    pub source_ips: Vec<IpAddr>,
}

/// Works out the [`Split`] for `config` under the descriptor limit `nofile` and the ephemeral
/// `port_range`; `procs` forces the number of processes.
pub fn plan_for(
    config: &Config,
    procs: Option<usize>,
    nofile: u64,
    port_range: Option<(u64, u64)>,
) -> Result<Split, Error> {
    let conns = config.conns as u64;
    let per_proc = nofile.saturating_sub(SPARE_FDS);
    let procs = match procs {
        Some(0) => return Err(Error::Config("--procs must be at least 1".into())),
        Some(n) => n,
        None if per_proc == 0 => {
            return Err(Error::Limit(format!(
                "the descriptor limit (RLIMIT_NOFILE) is {nofile}, too low for even one connection \
                 per process; raise it with `ulimit -n`"
            )))
        }
        None => {
            let needed = conns.div_ceil(per_proc).max(1);
            if needed > MAX_AUTO_PROCS {
                return Err(Error::Limit(format!(
                    "--conns {conns} needs about {} file descriptors but the limit \
                     (RLIMIT_NOFILE) is {nofile}: {needed} worker processes, more than the \
                     {MAX_AUTO_PROCS} loadgen starts on its own; raise it with `ulimit -n` (the \
                     hard limit too, as root), pass --procs, or use fewer --conns",
                    conns.saturating_add(SPARE_FDS)
                )));
            }
            needed as usize
        }
    };
    if procs > config.conns {
        return Err(Error::Config(format!(
            "--procs {procs} is more than --conns {}",
            config.conns
        )));
    }
    let mut source_ips = config.source_ips.clone();
    if source_ips.is_empty() && config.addr.ip().is_loopback() && config.addr.is_ipv4() {
        if let Some((lo, hi)) = port_range {
            let ports = hi - lo + 1;
            if conns > ports {
                let needed = conns.div_ceil(ports);
                if needed > 254 {
                    return Err(Error::Limit(format!(
                        "--conns {conns} needs {needed} loopback source addresses of {ports} ports \
                         each; widen net.ipv4.ip_local_port_range"
                    )));
                }
                source_ips = (1..=needed as u8)
                    .map(|x| IpAddr::V4(Ipv4Addr::new(127, 0, 0, x)))
                    .collect();
            }
        }
    }
    Ok(Split { procs, source_ips })
}

/// [`plan_for`] with this process's descriptor limit (raised to the hard limit first) and the
/// kernel's ephemeral port range.
pub fn plan(config: &Config, procs: Option<usize>) -> Result<Split, Error> {
    let (nofile, _) = limits::raise_nofile_limit();
    plan_for(config, procs, nofile, limits::ephemeral_port_range())
}

/// Checks `config` and this machine's limits as [`run_auto`] will, without connecting: a load too
/// big for one process passes when worker processes can hold it. Callers that do other work
/// before a load (the harness's checks, a sweep's smaller steps) call it first.
pub fn preflight_auto(config: &Config, procs: Option<usize>) -> Result<(), Error> {
    config.validate()?;
    plan(config, procs).map(drop)
}

/// Runs `config` in this process when one process will do, else over worker processes started
/// from `worker_exe` (the `loadgen` binary), and returns one report either way. `procs` forces
/// the number of processes (`--procs`). Call it from a plain thread, like [`crate::run`].
pub fn run_auto(
    mut config: Config,
    procs: Option<usize>,
    worker_exe: Option<&Path>,
) -> Result<Report, Error> {
    config.validate()?;
    let split = plan(&config, procs)?;
    config.source_ips = split.source_ips;
    if split.procs == 1 {
        return crate::engine::runner::run_validated(config);
    }
    if config.stages.is_some() {
        return Err(Error::Limit(format!(
            "--stages runs in one process, but --conns {} needs {} (the descriptor limit); \
             raise it with `ulimit -n`",
            config.conns, split.procs
        )));
    }
    let exe = worker_exe.ok_or_else(|| {
        Error::Limit(format!(
            "--conns {} needs {} worker processes but the loadgen binary to start them was not \
             found (put it beside this program)",
            config.conns, split.procs
        ))
    })?;
    run_workers(&config, split.procs, exe)
}

/// Where the worker processes' reports and error output go; removed when the run ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One started worker.
struct Worker {
    index: u64,
    conns: u64,
    child: Child,
    report: PathBuf,
    stderr: PathBuf,
    /// How the process ended, once it has.
    ended: Option<String>,
}

fn run_workers(config: &Config, procs: usize, exe: &Path) -> Result<Report, Error> {
    let run_id = config.run_id.clone().unwrap_or_else(identity::new_run_id);
    let dir = std::env::temp_dir().join(format!("loadgen-{}-{run_id}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::File {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    let dir = WorkDir(dir);
    let started = Instant::now();
    let wait_for_start = config
        .start_at
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .unwrap_or_default();
    // A worker's end margin is at most twice its connect phase (`end_margin`).
    let run_bound = config.deadline.unwrap_or_else(|| {
        config.connect_phase_bound()
            + config.planned_send_time().unwrap_or_default()
            + end_margin(config.connect_phase_bound())
    });
    let kill_at = started + wait_for_start + run_bound + WORKER_GRACE;
    let (mut workers, connected_rx) = start_workers(config, procs, exe, &dir.0, &run_id)?;
    let progress = WorkerProgress::new(config.progress, procs);
    supervise(&mut workers, &connected_rx, progress.as_ref(), kill_at);
    if let Some(p) = &progress {
        p.finish();
    }
    merge_reports(config, &workers, &run_id)
}

/// Starts the `procs` worker processes, each with its share of the connections, writing its
/// report into `dir`. The receiver gets a worker's position once it says it has connected.
fn start_workers(
    config: &Config,
    procs: usize,
    exe: &Path,
    dir: &Path,
    run_id: &str,
) -> Result<(Vec<Worker>, Receiver<usize>), Error> {
    let mut workers: Vec<Worker> = Vec::with_capacity(procs);
    let (connected_tx, connected_rx) = std::sync::mpsc::channel::<usize>();
    for i in 0..procs {
        let conns = (config.conns / procs + usize::from(i < config.conns % procs)) as u64;
        let index = config.worker_index * procs as u64 + i as u64;
        let report = dir.join(format!("worker-{index}.json"));
        let stderr = dir.join(format!("worker-{index}.stderr"));
        let err_file = std::fs::File::create(&stderr).map_err(|e| Error::File {
            path: stderr.clone(),
            reason: e.to_string(),
        })?;
        let child = Command::new(exe)
            .args(worker_args(config, procs, conns, run_id, index, &report))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                for w in &mut workers {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                }
                return Err(Error::File {
                    path: exe.to_path_buf(),
                    reason: format!("cannot start a worker process: {e}"),
                });
            }
        };
        let mut child = child;
        if let Some(out) = child.stdout.take() {
            let tx = connected_tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    if line == CONNECTED_LINE {
                        let _ = tx.send(i);
                    }
                }
            });
        }
        workers.push(Worker {
            index,
            conns,
            child,
            report,
            stderr,
            ended: None,
        });
    }
    Ok((workers, connected_rx))
}

/// Waits for every worker to end, opening the shared barrier once each has connected (or
/// ended), and kills those still running at `kill_at`.
fn supervise(
    workers: &mut [Worker],
    connected_rx: &Receiver<usize>,
    progress: Option<&WorkerProgress>,
    kill_at: Instant,
) {
    let procs = workers.len();
    let mut connected = vec![false; procs];
    let mut released = false;
    loop {
        while let Ok(i) = connected_rx.try_recv() {
            connected[i] = true;
        }
        let mut running = 0;
        for w in workers.iter_mut().filter(|w| w.ended.is_none()) {
            match w.child.try_wait() {
                Ok(Some(status)) => w.ended = Some(status.to_string()),
                Ok(None) => running += 1,
                Err(e) => w.ended = Some(format!("cannot be waited for: {e}")),
            }
        }
        if let Some(p) = progress {
            p.update(running, procs);
        }
        if running == 0 {
            break;
        }
        // The shared barrier: go once every worker has connected or ended. Closing stdin is the
        // go, so a worker whose parent died is released too.
        if !released
            && workers
                .iter()
                .zip(&connected)
                .all(|(w, c)| *c || w.ended.is_some())
        {
            for w in workers.iter_mut() {
                if let Some(mut stdin) = w.child.stdin.take() {
                    use std::io::Write;
                    let _ = stdin.write_all(b"go\n");
                }
            }
            released = true;
        }
        if Instant::now() >= kill_at {
            for w in workers.iter_mut().filter(|w| w.ended.is_none()) {
                let _ = w.child.kill();
                let _ = w.child.wait();
                w.ended = Some("killed by loadgen: still running past the run's deadline".into());
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One report (and, with `--hlog`, one interval log) from the workers'; a worker that wrote none
/// is counted as lost.
fn merge_reports(config: &Config, workers: &[Worker], run_id: &str) -> Result<Report, Error> {
    let procs = workers.len();
    let mut reports = Vec::new();
    let mut labels = Vec::new();
    let mut lost = Vec::new();
    for w in workers {
        match Report::read_json(&w.report) {
            Ok(r) => {
                reports.push(r);
                labels.push(format!("worker {}", w.index));
            }
            Err(_) => lost.push(w),
        }
    }
    if reports.is_empty() {
        let w = workers.first();
        return Err(Error::Limit(format!(
            "every one of {procs} worker processes failed; worker 0 {}",
            w.map(describe_loss).unwrap_or_default()
        )));
    }
    let mut merged = Report::merge_with(&reports, &labels, false)?;
    for w in lost {
        count_lost(&mut merged, w, run_id);
    }
    if let Some(path) = &config.hlog {
        // A lost worker's log is missing; its connections are counted as lost in the report.
        let logs: Vec<_> = workers.iter().map(|w| worker_hlog(&w.report)).collect();
        IntervalLog::merge_files(&logs, path)?;
    }
    Ok(merged)
}

/// Where a worker writes its `--hlog`: beside its report.
fn worker_hlog(report: &Path) -> PathBuf {
    report.with_extension("hlog")
}

/// How a worker ended and the last line it wrote to stderr.
fn describe_loss(w: &Worker) -> String {
    let last = std::fs::read_to_string(&w.stderr)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(String::from)
        })
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    format!(
        "(pid {}) ended with {} and wrote no report{last}",
        w.child.id(),
        w.ended.as_deref().unwrap_or("unknown status")
    )
}

/// Counts a worker that wrote no report into `merged`: its connections attempted and failed.
fn count_lost(merged: &mut Report, w: &Worker, run_id: &str) {
    let c = &mut merged.counters;
    c.connections_attempted += w.conns;
    c.connections_failed += w.conns;
    merged.errors.connect.other += w.conns;
    merged.parameters.conns += w.conns;
    merged.parameters.processes += 1;
    merged
        .errors
        .examples
        .entry("worker.lost".into())
        .or_insert_with(|| {
            format!(
                "worker {} {}; its {} connections count as failed",
                w.index,
                describe_loss(w),
                w.conns
            )
        });
    if let Some(m) = &mut merged.merge {
        m.workers += 1;
        m.workers_lost += 1;
        m.parts.push(Identity {
            run_id: run_id.to_string(),
            host: merged.environment.hostname.clone(),
            worker: w.index,
            measured_start_unix_secs: 0.0,
            measured_end_unix_secs: 0.0,
        });
    }
}

/// The command line of one worker: its share of the load, the run id and index, `--procs 1`
/// (a worker never splits again), no progress, and the report to a file. Every setting that
/// shapes the load is passed through from `config`; rates are divided over the workers. The test
/// `worker_args_parse_back_to_the_workers_config` in `cli` parses these flags back for a config
/// with every field set (a struct literal, so a new field does not compile until it is covered).
pub(crate) fn worker_args(
    config: &Config,
    procs: usize,
    conns: u64,
    run_id: &str,
    index: u64,
    report: &Path,
) -> Vec<String> {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let mut a: Vec<String> = vec![
        "--addr".into(),
        config.addr.to_string(),
        "--conns".into(),
        conns.to_string(),
        "--size".into(),
        config.size.to_string(),
        "--pipeline".into(),
        config.pipeline.to_string(),
        "--connect-timeout".into(),
        d(config.connect_timeout),
        "--io-timeout".into(),
        d(config.io_timeout),
        "--warmup".into(),
        d(config.warmup),
        "--percentiles".into(),
        config
            .percentiles
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "--run-id".into(),
        run_id.into(),
        "--worker-index".into(),
        index.to_string(),
        "--procs".into(),
        "1".into(),
        "--worker-barrier".into(),
        "--no-progress".into(),
        "--quiet".into(),
        // The parent judges the merged run; a worker's own verdict must not stop its report.
        "--max-error-rate".into(),
        "1".into(),
        "--max-session-failures".into(),
        "1".into(),
        "--json".into(),
        report.display().to_string(),
    ];
    a.extend(load_flags(config, procs));
    if config.hlog.is_some() {
        let hlog = worker_hlog(report).display().to_string();
        a.extend(["--hlog".into(), hlog, "--hlog-interval".into()]);
        a.push(d(config.hlog_interval));
    }
    a
}

/// The worker flags that shape the load and are only passed when set: duration or messages,
/// rates divided over the `procs` workers, source addresses, deadline, engine, threads, start time.
fn load_flags(config: &Config, procs: usize) -> Vec<String> {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let mut a: Vec<String> = Vec::new();
    match (config.duration, config.messages) {
        (Some(t), _) => a.extend(["--duration".into(), d(t)]),
        (None, Some(n)) => a.extend(["--messages".into(), n.to_string()]),
        (None, None) => {}
    }
    let share = |r: f64| (r / procs as f64).to_string();
    if let Some(r) = config.rate {
        a.extend(["--rate".into(), share(r)]);
    }
    if let Some(r) = config.connect_rate {
        a.extend(["--connect-rate".into(), share(r)]);
    }
    if !config.source_ips.is_empty() {
        let ips: Vec<String> = config.source_ips.iter().map(|ip| ip.to_string()).collect();
        a.extend(["--source-ip".into(), ips.join(",")]);
    }
    if let Some(t) = config.deadline {
        a.extend(["--deadline".into(), d(t)]);
    }
    // Resolved here, so every worker runs the engine the parent reports.
    a.extend(["--engine".into(), config.engine().name().into()]);
    if let Some(t) = config.threads {
        a.extend(["--threads".into(), t.to_string()]);
    }
    if let Some(t) = config.start_at {
        // RFC 3339 with nanoseconds: exact, where Unix seconds as an f64 were ~100 ns off.
        a.extend([
            "--start-at".into(),
            humantime::format_rfc3339_nanos(t).to_string(),
        ]);
    }
    a
}

/// The parent's one progress line while workers run (only on a terminal).
struct WorkerProgress {
    bar: indicatif::ProgressBar,
}

impl WorkerProgress {
    fn new(wanted: bool, procs: usize) -> Option<WorkerProgress> {
        if !wanted || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        let style = indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_message(format!("{procs} worker processes running"));
        Some(WorkerProgress { bar })
    }

    fn update(&self, running: usize, procs: usize) {
        self.bar
            .set_message(format!("{running} of {procs} worker processes running"));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests;
