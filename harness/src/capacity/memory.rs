//! What a connection costs in memory, counted from the kernel's side as well as user space: the
//! per-step figures (deltas of `/proc/meminfo` and `/proc/net/sockstat` against a baseline read
//! around the step's server, with the load generator's own share taken out), one straight line per
//! component against live connections, and the checks of the total against the measured
//! `MemAvailable` drop.
//!
//! PSS alone (the model of schema 1) counts user-space pages only; a fork child also costs its page
//! tables, a kernel stack, its task, file and socket objects in the slab, and socket buffers. The
//! **total** is the sum of those named counters (the server's private user-space pages, page
//! tables, kernel stacks, slab, socket buffers). It is not `MemAvailable`'s fall itself: on a
//! machine shared with builds, `MemAvailable` moves by hundreds of MiB within a step, while the
//! named counters move with the server. The `MemAvailable` drop is the cross-check instead: each
//! step's predicted drop (total + the load generator's share) against the measured one, and the
//! difference, per connection, as "rest". Pure arithmetic: the readers live in `sys::memory` and
//! the sampler.

use serde::{Deserialize, Serialize};

use super::fit::{check_prediction, fit_line, HoldOutCheck, LinearFit};

/// The memory one step's connections cost, at the step's peak (median over the samples taken at the
/// peak child count), relative to the mean of the counters read just before the step's server
/// started and just after it was gone. Bytes.
///
/// The `/proc/meminfo` and sockstat figures are system-wide: anything else running on the machine
/// moves them as well (builds beside a sweep show up as noise here, not in the PSS figures).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMemory {
    /// Fall of `MemAvailable`: everything, the load generator's share included.
    pub mem_available_drop_bytes: f64,
    pub kernel_stack_bytes: f64,
    pub page_tables_bytes: f64,
    /// Rise of `Slab`, the load generator's sockets included (see `loadgen_socket_slab_bytes`).
    pub slab_bytes: f64,
    /// Rise of `SUnreclaim` (part of `slab_bytes`).
    pub sunreclaim_bytes: f64,
    /// Rise of `SReclaimable` (the rest of `slab_bytes`): socket inodes and dentries live here.
    /// The kernel counts it as reclaimable and `MemAvailable` counts part of it as available,
    /// but it cannot be reclaimed while the connections are open. Absent before schema 3.
    #[serde(default)]
    pub sreclaimable_bytes: Option<f64>,
    /// Fall of `MemFree`: the pages taken, whatever `MemAvailable` thinks could be given back.
    /// Absent before schema 3.
    #[serde(default)]
    pub mem_free_drop_bytes: Option<f64>,
    /// Rise of sockstat's TCP `mem`: socket buffers of **both** ends (server and load generator);
    /// not split, since idle echo connections hold almost none.
    pub tcp_mem_bytes: f64,
    /// The server's user space: the parent's PSS plus every child's private (unshared) memory, the
    /// pages a new child really adds (PSS also counts a share of pages that existed before it).
    pub user_private_bytes: f64,
    /// Growth of the harness's own RSS: the load generator runs in it.
    pub loadgen_rss_bytes: f64,
    /// Growth of every other process's RSS (builds beside the sweep) over the same baseline: how
    /// noisy the machine was. Not subtracted: RSS also moves with file pages that cost no
    /// `MemAvailable`, so it is a gauge of noise, not a correction.
    #[serde(default)]
    pub others_rss_bytes: f64,
    /// The load generator's sockets (its established connections).
    pub loadgen_sockets: u64,
    /// `loadgen_sockets` x the measured slab cost of one loopback TCP socket.
    pub loadgen_socket_slab_bytes: f64,
    /// Samples the medians were taken over.
    pub samples: usize,
}

impl StepMemory {
    /// What the load generator added to the `MemAvailable` drop.
    pub fn loadgen_share_bytes(&self) -> f64 {
        self.loadgen_rss_bytes + self.loadgen_socket_slab_bytes
    }

    /// The server's part of the `MemAvailable` drop (the load generator's share taken out).
    pub fn server_drop_bytes(&self) -> f64 {
        self.mem_available_drop_bytes - self.loadgen_share_bytes()
    }

    /// The total the model fits: the server's named counters, user space and kernel.
    pub fn server_total_bytes(&self) -> f64 {
        self.user_private_bytes
            + self.page_tables_bytes
            + self.kernel_stack_bytes
            + self.server_slab_bytes()
            + self.tcp_mem_bytes
    }

    /// The slab rise less the load generator's sockets.
    pub fn server_slab_bytes(&self) -> f64 {
        self.slab_bytes - self.loadgen_socket_slab_bytes
    }

    /// The server's `MemAvailable` drop beyond the named counters. Not part of the total: it is
    /// mostly the machine's noise (other processes), and it can be negative (`MemAvailable` also
    /// counts part of the reclaimable slab as available).
    pub fn rest_bytes(&self) -> f64 {
        self.server_drop_bytes() - self.server_total_bytes()
    }
}

/// The components of the total, each as bytes per connection and a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    UserPrivate,
    PageTables,
    KernelStack,
    Slab,
    SocketBuffers,
    Rest,
}

impl Component {
    /// The components that add up to the total; [`Component::Rest`] is the cross-check's residue.
    pub fn in_total(self) -> bool {
        self != Component::Rest
    }

    pub const ALL: [Component; 6] = [
        Component::UserPrivate,
        Component::PageTables,
        Component::KernelStack,
        Component::Slab,
        Component::SocketBuffers,
        Component::Rest,
    ];

    /// The component's bytes at one step.
    pub fn of(self, m: &StepMemory) -> f64 {
        match self {
            Component::UserPrivate => m.user_private_bytes,
            Component::PageTables => m.page_tables_bytes,
            Component::KernelStack => m.kernel_stack_bytes,
            Component::Slab => m.server_slab_bytes(),
            Component::SocketBuffers => m.tcp_mem_bytes,
            Component::Rest => m.rest_bytes(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Component::UserPrivate => "user space (private)",
            Component::PageTables => "page tables",
            Component::KernelStack => "kernel stacks",
            Component::Slab => "slab (task, files, sockets)",
            Component::SocketBuffers => "socket buffers",
            Component::Rest => "rest (MemAvail drop beyond)",
        }
    }
}

/// One component's fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComponentFit {
    pub component: Component,
    pub fit: LinearFit,
}

/// The model's prediction of one step's `MemAvailable` drop against the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DropCheck {
    pub conns: u64,
    pub live_children: u64,
    /// The total fit at `live_children` plus the step's measured load-generator share.
    pub predicted_drop_bytes: f64,
    pub measured_drop_bytes: f64,
    /// `(predicted - measured) / measured * 100`; `null` when nothing was measured (a drop of 0).
    pub error_percent: Option<f64>,
}

impl DropCheck {
    fn new(conns: u64, live: u64, fit: &LinearFit, m: &StepMemory) -> DropCheck {
        let predicted = fit.predict(live as f64) + m.loadgen_share_bytes();
        DropCheck {
            conns,
            live_children: live,
            predicted_drop_bytes: predicted,
            measured_drop_bytes: m.mem_available_drop_bytes,
            error_percent: percent_error(predicted, m.mem_available_drop_bytes),
        }
    }
}

fn percent_error(predicted: f64, measured: f64) -> Option<f64> {
    (measured != 0.0 && measured.is_finite()).then(|| (predicted - measured) / measured * 100.0)
}

/// The memory model on the total: its fit, the breakdown, and the checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalMemoryModel {
    /// The server's named counters against live children: bytes per connection.
    pub total_fit: LinearFit,
    /// One fit per component, in [`Component::ALL`] order; the slopes of those in the total add up
    /// to the total's.
    pub components: Vec<ComponentFit>,
    /// The total fitted without the largest step, checked against it.
    pub hold_out: Option<HoldOutCheck>,
    /// The hold-out fit's `MemAvailable` drop at the largest step against the measured drop.
    pub hold_out_drop: Option<DropCheck>,
    /// Every step's predicted `MemAvailable` drop (from the fit over all steps) against its
    /// measurement.
    pub drop_checks: Vec<DropCheck>,
}

/// One step as the total model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryStep {
    pub conns: u64,
    pub live_children: u64,
    pub memory: StepMemory,
}

impl TotalMemoryModel {
    /// `None` when fewer than two steps measured the kernel's counters (a report of schema 1, or a
    /// machine without them).
    pub fn fit(steps: &[MemoryStep]) -> Option<TotalMemoryModel> {
        let usable: Vec<&MemoryStep> = steps
            .iter()
            .filter(|s| s.memory.server_total_bytes().is_finite())
            .collect();
        let points = |f: &dyn Fn(&StepMemory) -> f64| -> Vec<(f64, f64)> {
            usable
                .iter()
                .map(|s| (s.live_children as f64, f(&s.memory)))
                .collect()
        };
        let total_points = points(&|m| m.server_total_bytes());
        let total_fit = fit_line(&total_points)?;
        let components = Component::ALL
            .iter()
            .filter_map(|&c| {
                fit_line(&points(&|m| c.of(m))).map(|fit| ComponentFit { component: c, fit })
            })
            .collect();
        let hold_out = check_prediction(&total_points);
        let hold_out_drop = hold_out.and_then(|h| {
            let largest = usable
                .iter()
                .find(|s| s.live_children as f64 == h.held_out_x)?;
            Some(DropCheck::new(
                largest.conns,
                largest.live_children,
                &h.fit,
                &largest.memory,
            ))
        });
        let drop_checks = usable
            .iter()
            .map(|s| DropCheck::new(s.conns, s.live_children, &total_fit, &s.memory))
            .collect();
        Some(TotalMemoryModel {
            total_fit,
            components,
            hold_out,
            hold_out_drop,
            drop_checks,
        })
    }
}

/// The model checked beyond its ladder: one more step, not fitted, at `conns` connections.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationFigures {
    pub live_children: u64,
    /// The total fit at `live_children`, against the step's measured server total (named counters).
    pub predicted_total_bytes: f64,
    pub measured_total_bytes: f64,
    pub total_error_percent: Option<f64>,
    /// The same as a `MemAvailable` drop (load generator's share added to the prediction).
    pub drop: DropCheck,
    /// What the user-space-only PSS fit predicted there, for comparison; `null` without one.
    pub predicted_pss_bytes: Option<f64>,
    pub measured_pss_bytes: Option<f64>,
}

impl ValidationFigures {
    pub fn of(
        model: &TotalMemoryModel,
        pss_fit: Option<&LinearFit>,
        conns: u64,
        live_children: u64,
        memory: &StepMemory,
        measured_pss_bytes: Option<f64>,
    ) -> ValidationFigures {
        let predicted = model.total_fit.predict(live_children as f64);
        let measured = memory.server_total_bytes();
        ValidationFigures {
            live_children,
            predicted_total_bytes: predicted,
            measured_total_bytes: measured,
            total_error_percent: percent_error(predicted, measured),
            drop: DropCheck::new(conns, live_children, &model.total_fit, memory),
            predicted_pss_bytes: pss_fit.map(|f| f.predict(live_children as f64)),
            measured_pss_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;

    /// A step on a known line: per connection 30 KiB private, 52 KiB page tables, 16 KiB stack,
    /// 27 KiB server slab, 1 KiB buffers and 4 KiB rest; the load generator adds 3 KiB of socket
    /// slab and 2 KiB of its own RSS per connection.
    fn synthetic(conns: u64, noise: f64) -> MemoryStep {
        let n = conns as f64;
        let loadgen_socket = 3.0 * KIB * n;
        let loadgen_rss = 2.0 * KIB * n + 500.0 * KIB;
        let user = 1500.0 * KIB + 30.0 * KIB * n;
        let pt = 200.0 * KIB + 52.0 * KIB * n;
        let stack = 16.0 * KIB + 16.0 * KIB * n;
        let slab = 27.0 * KIB * n + loadgen_socket;
        let tcp = 1.0 * KIB * n;
        let rest = 4.0 * KIB * n;
        let server = user + pt + stack + (slab - loadgen_socket) + tcp + rest;
        MemoryStep {
            conns,
            live_children: conns,
            memory: StepMemory {
                mem_available_drop_bytes: (server + loadgen_rss + loadgen_socket) * noise,
                kernel_stack_bytes: stack,
                page_tables_bytes: pt,
                slab_bytes: slab,
                sunreclaim_bytes: slab * 0.6,
                sreclaimable_bytes: Some(slab * 0.4),
                mem_free_drop_bytes: None,
                tcp_mem_bytes: tcp,
                user_private_bytes: user,
                loadgen_rss_bytes: loadgen_rss,
                others_rss_bytes: 0.0,
                loadgen_sockets: conns,
                loadgen_socket_slab_bytes: loadgen_socket,
                samples: 5,
            },
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn breakdown_fits_each_component_and_adds_up_to_the_total() {
        let steps: Vec<MemoryStep> = [1, 10, 100, 1000, 4000]
            .iter()
            .map(|&c| synthetic(c, 1.0))
            .collect();
        let model = TotalMemoryModel::fit(&steps).expect("model");
        assert!(
            close(model.total_fit.slope, 126.0 * KIB, 1e-9),
            "{:?}",
            model.total_fit
        );
        let slope = |c: Component| {
            model
                .components
                .iter()
                .find(|f| f.component == c)
                .map(|f| f.fit.slope / KIB)
                .expect("component")
        };
        assert!(close(slope(Component::UserPrivate), 30.0, 1e-9));
        assert!(close(slope(Component::PageTables), 52.0, 1e-9));
        assert!(close(slope(Component::KernelStack), 16.0, 1e-9));
        // The load generator's 3 KiB of socket slab per connection is taken out.
        assert!(close(slope(Component::Slab), 27.0, 1e-9));
        assert!(close(slope(Component::SocketBuffers), 1.0, 1e-9));
        assert!(close(slope(Component::Rest), 4.0, 1e-6));
        let sum: f64 = model
            .components
            .iter()
            .filter(|c| c.component.in_total())
            .map(|c| c.fit.slope)
            .sum();
        assert!(close(sum, model.total_fit.slope, 1e-9));
        // Each step's predicted drop (total + the load generator's share) falls short of the
        // measured one by exactly the rest, 4 KiB a connection.
        assert_eq!(model.drop_checks.len(), 5);
        for d in &model.drop_checks {
            let gap = d.measured_drop_bytes - d.predicted_drop_bytes;
            assert!(
                close(gap, 4.0 * KIB * d.live_children as f64, 1e-6),
                "{d:?}"
            );
        }
        let h = model.hold_out.expect("hold-out");
        assert_eq!(h.held_out_x, 4000.0);
        assert!(h.error_percent.abs() < 1e-6);
    }

    #[test]
    fn hold_out_reports_a_largest_step_that_cost_more() {
        let mut steps: Vec<MemoryStep> = [1, 10, 100, 1000]
            .iter()
            .map(|&c| synthetic(c, 1.0))
            .collect();
        // The largest step's page tables cost 10% of the total more than the line says, and
        // MemAvailable fell by as much more.
        let mut big = synthetic(4000, 1.0);
        let on_line_total = big.memory.server_total_bytes();
        let on_line_drop = big.memory.mem_available_drop_bytes;
        let extra = 0.1 * on_line_total;
        big.memory.page_tables_bytes += extra;
        big.memory.mem_available_drop_bytes += extra;
        steps.push(big);
        let model = TotalMemoryModel::fit(&steps).expect("model");
        let h = model.hold_out.expect("hold-out");
        assert!(
            close(h.error_percent, (1.0 / 1.1 - 1.0) * 100.0, 1e-9),
            "{h:?}"
        );
        let drop = model.hold_out_drop.expect("drop check");
        assert_eq!(drop.conns, 4000);
        let rest = 4.0 * KIB * 4000.0;
        let want = ((on_line_drop - rest) / (on_line_drop + extra) - 1.0) * 100.0;
        assert!(
            close(drop.error_percent.expect("error"), want, 1e-9),
            "{drop:?}"
        );
    }

    #[test]
    fn validation_compares_the_fit_with_a_step_beyond_the_ladder() {
        let steps: Vec<MemoryStep> = [1, 10, 100, 1000]
            .iter()
            .map(|&c| synthetic(c, 1.0))
            .collect();
        let model = TotalMemoryModel::fit(&steps).expect("model");
        let far = synthetic(10_000, 1.0);
        let v = ValidationFigures::of(&model, None, 10_000, 10_000, &far.memory, None);
        assert!(v.total_error_percent.expect("error").abs() < 1e-6, "{v:?}");
        let rest = 4.0 * KIB * 10_000.0;
        let drop = far.memory.mem_available_drop_bytes;
        assert!(
            close(
                v.drop.error_percent.expect("error"),
                -rest / drop * 100.0,
                1e-6
            ),
            "{v:?}"
        );
        assert_eq!(v.predicted_pss_bytes, None);
        // MemAvailable fell 20% further than the named counters say: the total still matches,
        // the drop check shows the gap.
        let off = synthetic(10_000, 1.2);
        let v = ValidationFigures::of(&model, None, 10_000, 10_000, &off.memory, None);
        assert!(v.total_error_percent.expect("error").abs() < 1e-6, "{v:?}");
        let want = ((drop - rest) / (drop * 1.2) - 1.0) * 100.0;
        assert!(
            close(v.drop.error_percent.expect("error"), want, 1e-6),
            "{v:?}"
        );
    }

    #[test]
    fn too_few_steps_give_no_model() {
        assert_eq!(TotalMemoryModel::fit(&[synthetic(10, 1.0)]), None);
        assert_eq!(TotalMemoryModel::fit(&[]), None);
    }
}
