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

/// Asks the kernel to timestamp what `socket` receives.
pub(crate) fn enable(socket: &impl AsFd) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// `read(2)` on `socket` (with its flags: blocking, timeout), also returning how long the bytes
/// read had been waiting in it, in microseconds: the kernel's receive timestamp (with several
/// segments read at once, the last one's) to now. `None` without a timestamp.
pub(crate) fn read(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
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
