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
const CONTROL_BYTES: usize = 64;

/// The control buffer of one `recvmsg`, aligned as `struct cmsghdr` must be.
#[repr(C, align(8))]
struct ControlBuffer([u8; CONTROL_BYTES]);

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
            let arrived = Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec().max(0) as u32);
            // The timestamp is CLOCK_REALTIME; a clock step backwards reads as no delay.
            delay_us = SystemTime::now()
                .duration_since(UNIX_EPOCH + arrived)
                .ok()
                .map(micros);
        }
    }
    Ok((msg.bytes, delay_us))
}
