//! What one loopback TCP socket costs the kernel in slab, measured on this machine: the load
//! generator runs in the harness on the same host, so each of its connections adds one socket's
//! slab objects (socket, inode, dentry, file) to the system-wide `Slab` the sweep reads. A sweep
//! measures this once, then takes `established connections x this` out of each step's slab rise.
//!
//! Measured by opening socket pairs inside the harness (a plain listener that accepts and holds,
//! no fork), reading `Slab` before and after, in a few rounds (the median, since other processes
//! move the counter too).

use std::net::{Ipv4Addr, TcpListener, TcpStream};

use crate::sys::memory;

/// Connection pairs per round: large enough that a few MiB of slab noise is a few per cent.
pub const PAIRS: usize = 2000;
const ROUNDS: usize = 5;

/// A socket's slab objects take a few KiB; a median outside this is the machine's noise.
const PLAUSIBLE: std::ops::Range<f64> = 256.0..65_536.0;

/// Slab bytes per socket (median over rounds of `Slab` rise / (2 x pairs)); `None` when the
/// counters cannot be read, no socket could be opened (descriptors short), or other processes
/// moved the slab so much that the median is not a plausible socket size (then the sweep says the
/// load generator's sockets were not subtracted).
pub fn socket_slab_bytes(pairs: usize) -> Option<f64> {
    plausible_median((0..ROUNDS).filter_map(|_| one_round(pairs)).collect())
}

fn plausible_median(mut per_socket: Vec<f64>) -> Option<f64> {
    per_socket.sort_by(f64::total_cmp);
    per_socket
        .get(per_socket.len() / 2)
        .copied()
        .filter(|b| PLAUSIBLE.contains(b))
}

fn one_round(pairs: usize) -> Option<f64> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    let addr = listener.local_addr().ok()?;
    let before = memory::read()?;
    let mut held: Vec<(TcpStream, TcpStream)> = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        // The listen queue holds at least one: connect, then accept it at once.
        let Ok(client) = TcpStream::connect(addr) else {
            break;
        };
        let Ok((server, _)) = listener.accept() else {
            break;
        };
        held.push((client, server));
    }
    let after = memory::read()?;
    let sockets = 2 * held.len();
    drop(held);
    if sockets == 0 {
        return None;
    }
    let rise_kib = after.slab_kib as f64 - before.slab_kib as f64;
    Some(rise_kib * 1024.0 / sockets as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_round_counts_and_noise_is_refused() {
        assert_eq!(
            plausible_median(vec![9000.0, 3100.0, -500.0, 3300.0, 2900.0]),
            Some(3100.0)
        );
        assert_eq!(plausible_median(vec![-77.0, -20.0, 3000.0]), None);
        assert_eq!(plausible_median(Vec::new()), None);
    }

    #[test]
    fn a_socket_measures_a_plausible_amount_of_slab_or_nothing() {
        // On a quiet machine a few KiB; on a busy one the median may be refused as noise, but
        // never turned into a negative or absurd share.
        if let Some(bytes) = socket_slab_bytes(200) {
            assert!(PLAUSIBLE.contains(&bytes), "{bytes} B");
        }
    }
}
