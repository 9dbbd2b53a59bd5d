//! The capacity model of a sweep: what one connection costs in memory (least-squares fits of the
//! server's share of the `MemAvailable` drop and of each component of it, and of total PSS, the user
//! space alone, against live connections), where echo latency turns (the knee), and how many concurrent
//! connections this machine can hold, naming the limit that binds first and the knob that raises it.
//!
//! Everything here is a pure function of its inputs, so the arithmetic is tested with fake
//! numbers. The one reader of this machine's limits, [`Limits::read_from_system`], lives in
//! `sys::limits`: readers of the machine are `sys`'s job.
//!
//! [`fit`] (least squares, hold-out check, knee), [`limits`] (each limit as a connection count),
//! [`memory`] (the total per connection, its breakdown and checks), [`usl`] (throughput against
//! concurrency), [`cpu`] (CPU per connection and per message, cores needed) and [`model`] (what a
//! sweep report stores).
//!
//! The bottom layer: it imports nothing of the harness, which is why `report` may embed it and
//! `sys` may fill its `Limits` in.
//!
//! Layers it may import: none.
//! Crates it may import: `serde`.

pub mod cpu;
pub mod fit;
pub mod limits;
pub mod memory;
pub mod model;
pub mod usl;

pub use fit::{check_prediction, fit_line, latency_knee, HoldOutCheck, LinearFit};
pub use limits::{
    memory_connections, predict_max, LimitCandidate, LimitInputs, LimitKind, Limits, MemoryFits,
    Prediction,
};
pub use memory::{StepMemory, TotalMemoryModel, ValidationFigures};
pub use model::{CapacityModel, ModelStep};

#[cfg(test)]
mod tests {
    #[test]
    fn per_connection_text_signs_the_intercept() {
        let fit = |intercept| super::LinearFit {
            slope: 2.0,
            intercept,
            r_squared: 1.0,
            n: 2,
        };
        let plain = |v: f64| format!("{v}");
        assert_eq!(fit(3.0).per_connection_text(plain), "2 per connection + 3");
        assert_eq!(fit(-3.0).per_connection_text(plain), "2 per connection - 3");
    }

    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn fit_recovers_known_slope_and_intercept() {
        // 150 KiB per connection over a 2 MiB server, the size of a real fork child.
        let points: Vec<(f64, f64)> = [1u32, 10, 50, 100, 1000, 4000]
            .iter()
            .map(|&c| (f64::from(c), 2_097_152.0 + 153_600.0 * f64::from(c)))
            .collect();
        let fit = fit_line(&points).expect("fit");
        assert!(close(fit.slope, 153_600.0, 1e-9), "{fit:?}");
        assert!(close(fit.intercept, 2_097_152.0, 1e-9), "{fit:?}");
        assert!(close(fit.r_squared, 1.0, 1e-12), "{fit:?}");
        assert_eq!(fit.n, 6);
    }

    #[test]
    fn fit_of_noisy_points_has_r_squared_below_one() {
        let points = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 5.0)];
        let fit = fit_line(&points).expect("fit");
        // Hand-computed: slope 1.1, intercept 0, SS_res 2.7, SS_tot 8.75.
        assert!(close(fit.slope, 1.1, 1e-12), "{fit:?}");
        assert!(fit.intercept.abs() < 1e-12, "{fit:?}");
        assert!(close(fit.r_squared, 1.0 - 2.7 / 8.75, 1e-12), "{fit:?}");
    }

    #[test]
    fn fit_refuses_what_cannot_be_fitted() {
        assert_eq!(fit_line(&[]), None);
        assert_eq!(fit_line(&[(1.0, 2.0)]), None);
        assert_eq!(fit_line(&[(5.0, 2.0), (5.0, 9.0)]), None);
        assert_eq!(fit_line(&[(1.0, 2.0), (f64::NAN, 3.0)]), None);
    }

    #[test]
    fn flat_points_fit_exactly() {
        let fit = fit_line(&[(1.0, 7.0), (2.0, 7.0), (3.0, 7.0)]).expect("fit");
        assert_eq!((fit.slope, fit.intercept, fit.r_squared), (0.0, 7.0, 1.0));
    }

    #[test]
    fn knee_is_first_step_over_twice_the_smallest() {
        let steps = [
            (1000, 250.0),
            (1, 100.0),
            (10, 150.0),
            (100, 201.0),
            (4000, 900.0),
        ];
        assert_eq!(latency_knee(&steps), Some(100));
        // Exactly twice is not over.
        assert_eq!(latency_knee(&[(1, 100.0), (10, 200.0)]), None);
        assert_eq!(latency_knee(&[(1, 100.0)]), None);
        assert_eq!(latency_knee(&[]), None);
        // A failed step (NaN) neither becomes the base nor the knee.
        assert_eq!(
            latency_knee(&[(1, f64::NAN), (10, 100.0), (50, 150.0), (100, 250.0)]),
            Some(100)
        );
    }

    #[test]
    fn hold_out_check_predicts_the_largest_step() {
        // Linear up to 100, then the largest step measures 10% under the line.
        let mut points: Vec<(f64, f64)> = [1.0, 10.0, 50.0, 100.0]
            .iter()
            .map(|&c| (c, 1_000_000.0 + 100_000.0 * c))
            .collect();
        let on_line = 1_000_000.0 + 100_000.0 * 1000.0;
        points.insert(0, (1000.0, on_line / 1.1));
        let check = check_prediction(&points).expect("check");
        assert_eq!(check.held_out_x, 1000.0);
        assert_eq!(check.fit.n, 4);
        assert!(close(check.predicted_y, on_line, 1e-9), "{check:?}");
        assert!(close(check.error_percent, 10.0, 1e-9), "{check:?}");
        assert_eq!(check_prediction(&points[..2]), None);
    }

    /// Limits where nothing binds below 1_000_000 connections, so a test can lower one.
    fn roomy() -> Limits {
        Limits {
            memory_budget_bytes: Some(1 << 50),
            mem_available_bytes: Some(1 << 50),
            rlimit_nproc_soft: Some(10_000_000),
            nproc_used: Some(10),
            nproc_enforced: true,
            cgroup_pids_headroom: Some(10_000_000),
            pid_max: Some(4_194_304),
            threads_max: Some(10_000_000),
            tasks_used: Some(200),
            server_max_children: Some(5_000_000),
            loadgen_nofile_soft: Some(10_000_000),
            loadgen_nofile_hard: Some(10_000_000),
            loadgen_fds_used: Some(9),
            file_max: Some(100_000_000),
            files_used: Some(1000),
            ephemeral_ports_per_ip: Some(28_232),
            source_ips: 100,
        }
    }

    /// 100,000 bytes per connection on a base of 1,000,000 (PSS only, as schema 1 measured).
    fn pss_fits(slope: f64) -> MemoryFits {
        MemoryFits {
            total: None,
            pss: Some(LinearFit {
                slope,
                intercept: 1_000_000.0,
                r_squared: 1.0,
                n: 4,
            }),
        }
    }

    fn binding(limits: &Limits) -> (LimitKind, u64, String) {
        let p = predict_max(limits, &pss_fits(100_000.0)).expect("prediction");
        (p.binding, p.max_connections, p.knob)
    }

    #[test]
    fn each_limit_can_bind() {
        let (kind, _, _) = binding(&roomy());
        assert_eq!(kind, LimitKind::EphemeralPorts, "roomy baseline");

        let mut l = roomy();
        l.memory_budget_bytes = Some(1_000_000 + 100_000 * 500 + 99_999);
        assert_eq!(binding(&l).0, LimitKind::MemoryBudget);
        assert_eq!(binding(&l).1, 500);
        assert_eq!(binding(&l).2, "--memory-budget / add RAM");

        let mut l = roomy();
        l.mem_available_bytes = Some(1_000_000 + 100_000 * 700);
        assert_eq!(binding(&l).0, LimitKind::AvailableMemory);
        assert_eq!(binding(&l).1, 700);

        let mut l = roomy();
        l.rlimit_nproc_soft = Some(4096);
        assert_eq!(
            binding(&l),
            (LimitKind::RlimitNproc, 4085, "ulimit -u".into())
        );

        let mut l = roomy();
        l.cgroup_pids_headroom = Some(3000);
        assert_eq!(binding(&l).0, LimitKind::CgroupPids);
        assert_eq!(binding(&l).1, 2999);

        let mut l = roomy();
        l.pid_max = Some(32_768);
        assert_eq!(
            binding(&l),
            (
                LimitKind::PidMax,
                32_768 - 301 - 200 - 1,
                "sysctl kernel.pid_max".into()
            )
        );

        let mut l = roomy();
        l.threads_max = Some(20_000);
        assert_eq!(
            binding(&l),
            (
                LimitKind::ThreadsMax,
                20_000 - 200 - 1,
                "sysctl kernel.threads-max".into()
            )
        );

        let mut l = roomy();
        l.server_max_children = Some(64);
        assert_eq!(
            binding(&l),
            (LimitKind::MaxChildren, 64, "--max-children".into())
        );

        let mut l = roomy();
        l.loadgen_nofile_soft = Some(1024);
        l.loadgen_nofile_hard = Some(524_288);
        let (kind, max, knob) = binding(&l);
        assert_eq!((kind, max), (LimitKind::LoadgenNofile, 1024 - 9));
        assert!(
            knob.starts_with("ulimit -n") && knob.contains("524288"),
            "{knob}"
        );

        let mut l = roomy();
        l.file_max = Some(20_000);
        assert_eq!(binding(&l).0, LimitKind::SystemFileMax);
        assert_eq!(binding(&l).1, (20_000 - 1000) / 2);

        let mut l = roomy();
        l.source_ips = 1;
        let (kind, max, knob) = binding(&l);
        assert_eq!((kind, max), (LimitKind::EphemeralPorts, 28_232));
        assert!(knob.contains("--source-ip"), "{knob}");
    }

    #[test]
    fn candidates_are_sorted_and_complete() {
        let p = predict_max(&roomy(), &pss_fits(100_000.0)).expect("prediction");
        assert_eq!(p.candidates.len(), 10);
        assert!(p
            .candidates
            .windows(2)
            .all(|w| w[0].max_connections <= w[1].max_connections));
        assert_eq!(p.candidates[0].kind, p.binding);
        assert_eq!(p.candidates[0].max_connections, p.max_connections);
    }

    #[test]
    fn limits_that_do_not_apply_are_left_out() {
        let mut l = roomy();
        l.rlimit_nproc_soft = Some(1);
        l.nproc_enforced = false; // root: the kernel does not count
        l.source_ips = 0; // taken as one
        let noise = pss_fits(-5.0); // a falling fit is noise, not a cost
        let p = predict_max(&l, &noise).expect("prediction");
        let kinds: Vec<LimitKind> = p.candidates.iter().map(|c| c.kind).collect();
        assert!(!kinds.contains(&LimitKind::RlimitNproc));
        assert!(!kinds.contains(&LimitKind::MemoryBudget));
        assert!(!kinds.contains(&LimitKind::AvailableMemory));
        assert_eq!(p.binding, LimitKind::EphemeralPorts);
        assert_eq!(p.max_connections, 28_232);
        assert_eq!(
            predict_max(&Limits::default(), &MemoryFits::default()),
            None
        );
    }

    #[test]
    fn model_from_steps_fits_memory_on_live_children_and_predicts() {
        let step = |conns: u64, live: u64, p99: f64| ModelStep {
            conns,
            live_children: live,
            total_pss_bytes: 1_000_000.0 + 100_000.0 * live as f64,
            echo_p99_us: p99,
            memory: None,
            throughput: None,
            cpu: None,
        };
        let mut failed = step(8000, 0, f64::NAN);
        failed.total_pss_bytes = f64::NAN;
        // The 4000 step only got 3000 children; its PSS is that of 3000.
        let steps = [
            step(1, 1, 80.0),
            step(10, 10, 90.0),
            step(100, 100, 150.0),
            step(4000, 3000, 400.0),
            failed,
        ];
        let mut limits = roomy();
        limits.memory_budget_bytes = Some(1_000_000 + 100_000 * 2000);
        let model = CapacityModel::from_steps(&steps, limits);
        let fit = model.memory_fit.expect("fit");
        assert!(close(fit.slope, 100_000.0, 1e-9), "{fit:?}");
        assert_eq!(fit.n, 4);
        // The prediction divided by this fit, the one stored in the model.
        assert_eq!(model.memory_fits().pss, Some(fit));
        let check = model.memory_check.expect("check");
        assert!(check.error_percent.abs() < 1e-6, "{check:?}");
        assert_eq!(model.latency_knee_conns, Some(4000));
        let prediction = model.prediction.expect("prediction");
        assert_eq!(prediction.binding, LimitKind::MemoryBudget);
        assert_eq!(prediction.max_connections, 2000);
        assert_eq!(
            prediction.to_string(),
            "2000 connections, bound by memory budget (raise with: --memory-budget / add RAM)"
        );
    }

    #[test]
    fn memory_below_the_base_cost_allows_nothing() {
        assert_eq!(memory_connections(500, 1000.0, 10.0), 0);
        assert_eq!(memory_connections(1_010, 1000.0, 10.0), 1);
    }

    #[test]
    fn prediction_serializes_with_snake_case_kinds() {
        let p = predict_max(&roomy(), &pss_fits(100_000.0)).expect("prediction");
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["binding"], "ephemeral_ports");
        let back: Prediction = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, p);
        // The fitted slope is stored once, in the model's fits, not copied into the limits.
        let limits = serde_json::to_value(roomy()).expect("json");
        assert!(limits.get("pss_slope_bytes_per_conn").is_none(), "{limits}");
        assert!(
            limits.get("total_slope_bytes_per_conn").is_none(),
            "{limits}"
        );
    }
}
