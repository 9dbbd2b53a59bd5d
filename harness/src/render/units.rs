//! Numbers for people: every unit the harness prints (tables, the compare table, chart legends and
//! axes) is formatted here, so one figure reads the same wherever it appears.

/// `830 us`, `1.25 ms`, `2.00 s`; `-` when not measured.
pub fn micros(us: Option<f64>) -> String {
    match us {
        None => "-".into(),
        Some(us) if us >= 1_000_000.0 => format!("{:.2} s", us / 1_000_000.0),
        Some(us) if us >= 1_000.0 => format!("{:.2} ms", us / 1_000.0),
        Some(us) => format!("{us:.0} us"),
    }
}

/// `150.0 KiB`; `-` when not measured.
pub fn kib(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} KiB"))
}

/// A count or a rate as a whole number (`41870`); `-` when not measured.
pub fn whole(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

pub const KIB: f64 = 1024.0;
pub const MIB: f64 = 1024.0 * KIB;
pub const GIB: f64 = 1024.0 * MIB;

/// Bytes for the sweep's table and capacity lines: `1.50 MiB` from one MiB up, else `150.0 KiB`.
pub fn mib_or_kib(bytes: f64) -> String {
    if bytes.abs() >= MIB {
        format!("{:.2} MiB", bytes / MIB)
    } else {
        format!("{:.1} KiB", bytes / KIB)
    }
}

/// Bytes for chart legends: `1.50 GiB`, `150.0 MiB`, `150.0 KiB`, `12 B`.
pub fn fmt_bytes(bytes: f64) -> String {
    let abs = bytes.abs();
    if abs >= GIB {
        format!("{:.2} GiB", bytes / GIB)
    } else if abs >= MIB {
        format!("{:.1} MiB", bytes / MIB)
    } else if abs >= KIB {
        format!("{:.1} KiB", bytes / KIB)
    } else {
        format!("{bytes:.0} B")
    }
}

/// Binary unit for a byte axis: (name, bytes per unit), chosen from the largest value.
pub fn bytes_unit(values: impl Iterator<Item = f64>) -> (&'static str, f64) {
    let max = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    if max >= GIB {
        ("GiB", GIB)
    } else if max >= 4.0 * MIB {
        ("MiB", MIB)
    } else {
        ("KiB", KIB)
    }
}
