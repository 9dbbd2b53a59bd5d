//! Loadgen's own read delay: every socket asks the kernel for a receive timestamp
//! (`SO_TIMESTAMPNS`), and every read takes it with the bytes (`recvmsg`), so a session knows how
//! long what it just read had been waiting, fully received, for loadgen to read it. For a
//! closed-loop echo that wait is loadgen's (its thread or event loop was not running), not the
//! server's; the report keeps it beside the echo latency it is part of.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};

use crate::session::shared::micros;

/// Room for one `SCM_TIMESTAMPNS` message (`CMSG_SPACE` of a 16-byte timespec is 32 bytes) and
/// slack.
pub(crate) const CONTROL_BYTES: usize = 64;

/// The control buffer of one `recvmsg`, aligned as `struct cmsghdr` must be.
#[repr(C, align(8))]
pub(crate) struct ControlBuffer(pub [u8; CONTROL_BYTES]);

/// Asks the kernel to timestamp what `socket` receives.
pub(crate) fn enable(socket: &impl AsFd) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// `read(2)` on `socket` (with its flags: blocking, timeout), also returning how long the bytes
/// read had been waiting in it, in microseconds: the kernel's receive timestamp (with several
/// segments read at once, the last one's) to now. `None` without a timestamp.
pub(crate) fn read(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    // On the stack: a fresh heap buffer per read (`nix::cmsg_space!`) cost an allocation, a free
    // and a cache-cold write by the kernel on every echo (loadgen/BENCH.md, "per-echo costs").
    let mut cmsg = ControlBuffer([0; CONTROL_BYTES]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg.0),
        MsgFlags::empty(),
    )?;
    let mut delay_us = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmTimestampns(ts) = c {
            delay_us = since(ts.tv_sec(), ts.tv_nsec());
        }
    }
    Ok((msg.bytes, delay_us))
}

/// Microseconds from a receive timestamp to now. The timestamp is CLOCK_REALTIME; a clock step
/// backwards reads as no delay.
fn since(sec: i64, nsec: i64) -> Option<u64> {
    let arrived = Duration::new(sec.max(0) as u64, nsec.max(0) as u32);
    SystemTime::now()
        .duration_since(UNIX_EPOCH + arrived)
        .ok()
        .map(micros)
}

/// The read delay in a control buffer a `recvmsg` submitted elsewhere (io_uring) filled, its
/// first `len` bytes: the `SCM_TIMESTAMPNS` message the kernel writes first, if any. Parsed from
/// the bytes (64-bit Linux layout: an 8-byte length, the level, the type, then the timespec).
pub(crate) fn from_control(control: &ControlBuffer, len: usize) -> Option<u64> {
    let c = &control.0[..len.min(CONTROL_BYTES)];
    let word = |at: usize, n: usize| -> Option<i64> {
        let bytes = c.get(at..at + n)?;
        let mut full = [0u8; 8];
        full[..n].copy_from_slice(bytes);
        Some(i64::from_ne_bytes(full))
    };
    let cmsg_len = word(0, 8)?;
    let level = word(8, 4)? as i32;
    let kind = word(12, 4)? as i32;
    if cmsg_len < 32 || level != libc::SOL_SOCKET || kind != libc::SCM_TIMESTAMPNS {
        return None;
    }
    since(word(16, 8)?, word(24, 8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_buffer_gives_the_delay_of_its_timestamp() {
        let mut control = ControlBuffer([0; CONTROL_BYTES]);
        let earlier =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_millis(5);
        control.0[0..8].copy_from_slice(&32i64.to_ne_bytes());
        control.0[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        control.0[12..16].copy_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        control.0[16..24].copy_from_slice(&(earlier.as_secs() as i64).to_ne_bytes());
        control.0[24..32].copy_from_slice(&(earlier.subsec_nanos() as i64).to_ne_bytes());
        let delay = from_control(&control, 32).unwrap();
        assert!((5_000..1_000_000).contains(&delay), "{delay}");
        // Truncated, or another message: no delay.
        assert_eq!(from_control(&control, 16), None);
        control.0[12..16].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(from_control(&control, 32), None);
    }
}
