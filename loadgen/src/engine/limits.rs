//! Process and system limits checked before connecting: the descriptor limit (raised to the
//! hard limit first) and the ephemeral port range per source address. A load that cannot fit is
//! refused up front with the limit and the fix named, instead of failing half-way.

use crate::Error;

/// Descriptors needed besides one per connection (runtime, stdio, epoll, output files).
const SPARE_FDS: u64 = 64;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit, once per process (the run, the worker
/// split and the preflight all ask); returns the (soft, hard) now in force.
pub(crate) fn raise_nofile_limit() -> (u64, u64) {
    static RAISED: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *RAISED.get_or_init(raise_nofile_limit_now)
}

fn raise_nofile_limit_now() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (u64::MAX, u64::MAX);
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    // rlim_t is u64 on 64-bit Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    (lim.rlim_cur as u64, lim.rlim_max as u64)
}

/// The kernel's ephemeral port range, if it can be read.
pub(crate) fn ephemeral_port_range() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|t| t.parse::<u64>());
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if hi >= lo => Some((lo, hi)),
        _ => None,
    }
}

/// Checks that `conns` connections fit the descriptor limit `nofile` and, per source address,
/// the ephemeral `port_range`. `source_ips` is the number of `--source-ip` addresses (0 = none).
pub(crate) fn preflight(
    conns: u64,
    source_ips: u64,
    nofile: u64,
    port_range: Option<(u64, u64)>,
) -> Result<(), Error> {
    let needed = conns.saturating_add(SPARE_FDS);
    if needed > nofile {
        return Err(Error::Limit(format!(
            "--conns {conns} needs about {needed} file descriptors but the limit (RLIMIT_NOFILE) \
             is {nofile}; raise it with `ulimit -n {needed}` (the hard limit too, as root) or use \
             fewer --conns"
        )));
    }
    if let Some((lo, hi)) = port_range {
        let ports = hi - lo + 1;
        let sources = source_ips.max(1);
        if conns > ports.saturating_mul(sources) {
            let more = conns.div_ceil(ports);
            return Err(Error::Limit(format!(
                "--conns {conns} needs more local ports than the ephemeral range {lo}-{hi} gives \
                 {sources} source address(es) ({ports} each, to one target); spread them with \
                 --source-ip over at least {more} addresses, e.g. --source-ip 127.0.0.2,127.0.0.3 \
                 on loopback, or widen net.ipv4.ip_local_port_range"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_limit_names_ulimit() {
        let e = preflight(5000, 0, 1024, Some((32768, 60999))).unwrap_err();
        assert!(e.to_string().contains("ulimit -n 5064"), "{e}");
    }

    #[test]
    fn port_range_names_source_ip() {
        let e = preflight(40_000, 0, 1 << 20, Some((32768, 60999))).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("--source-ip") && msg.contains("32768-60999"),
            "{msg}"
        );
        // Two source addresses double the room.
        assert!(preflight(40_000, 2, 1 << 20, Some((32768, 60999))).is_ok());
        assert!(preflight(1000, 0, 2048, Some((32768, 60999))).is_ok());
    }

    #[test]
    fn raising_nofile_reaches_the_hard_limit() {
        let (soft, hard) = raise_nofile_limit();
        assert_eq!(soft, hard);
    }
}
