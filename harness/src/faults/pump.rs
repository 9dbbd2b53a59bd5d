//! One direction of one proxied connection: a reader that takes chunks off the source socket
//! with the time they were read, and a writer that applies the direction's toxics and writes
//! them to the destination. Two stages joined by a bounded channel, so that a latency toxic delays
//! every chunk from the moment it was read (as Toxiproxy's does) instead of also delaying the
//! reading of the next one; the channel's bound keeps a slow writer from buffering without limit.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::counts::Counters;
use super::plan::{CutAction, Direction, DirectionToxics, Draws};

/// Largest read.
const READ_BUFFER: usize = 16 * 1024;
/// Chunks read but not yet written, at most.
const CHUNKS_IN_FLIGHT: usize = 64;

/// How a direction ended.
#[derive(Debug)]
pub enum PumpEnd {
    /// The source closed; FIN was passed on to the destination.
    Eof,
    /// A toxic cut the direction after its byte budget.
    Cut(CutAction),
    /// A read or write failed (a peer reset, or went away).
    Failed(io::Error),
}

enum Chunk {
    Data(Instant, Vec<u8>),
    End(io::Result<()>),
}

/// What a pump needs besides its two sockets.
pub struct PumpSetup<'a> {
    pub direction: Direction,
    pub toxics: DirectionToxics,
    pub draws: Draws,
    pub counts: &'a Counters,
}

/// Forwards `src` to `dst` under `setup`'s toxics until the source closes, an I/O error, or a
/// cut toxic ends it.
pub async fn pump<R, W>(mut src: R, mut dst: W, setup: PumpSetup<'_>) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let chunk = match src.read(&mut buf).await {
                Ok(0) => Chunk::End(Ok(())),
                Ok(n) => Chunk::Data(Instant::now(), buf[..n].to_vec()),
                Err(e) => Chunk::End(Err(e)),
            };
            let last = matches!(chunk, Chunk::End(_));
            if tx.send(chunk).await.is_err() || last {
                return;
            }
        }
    };
    let writer = write_out(&mut dst, rx, setup);
    tokio::pin!(writer);
    // The writer decides how the direction ends; the reader only stops on its own at the end of
    // its source, and is dropped (mid-read or blocked on a full channel) when the writer is done.
    tokio::select! {
        biased;
        end = &mut writer => return end,
        () = reader => {}
    }
    writer.await
}

async fn write_out<W: AsyncWrite + Unpin>(
    dst: &mut W,
    mut rx: mpsc::Receiver<Chunk>,
    mut setup: PumpSetup<'_>,
) -> PumpEnd {
    let toxics = setup.toxics;
    let mut forwarded: u64 = 0;
    // Delivery times only move forward, so jitter never reorders bytes.
    let mut last_delivery = Instant::now();
    let mut pacer = toxics.bandwidth.map(Pacer::new);
    while let Some(chunk) = rx.recv().await {
        let (read_at, bytes) = match chunk {
            Chunk::Data(at, bytes) => (at, bytes),
            Chunk::End(Ok(())) => {
                return match dst.shutdown().await {
                    Ok(()) => PumpEnd::Eof,
                    Err(e) => PumpEnd::Failed(e),
                }
            }
            Chunk::End(Err(e)) => return PumpEnd::Failed(e),
        };
        if let Some((delay, jitter)) = toxics.latency {
            let at = (read_at + setup.draws.jittered(delay, jitter)).max(last_delivery);
            last_delivery = at;
            setup.counts.chunk_delayed();
            tokio::time::sleep_until(at).await;
        }
        // The cut's budget: how much of this chunk still goes out before the toxic acts.
        let (send, cut) = match toxics.cut {
            Some((action, after)) if forwarded + bytes.len() as u64 >= after => {
                ((after - forwarded.min(after)) as usize, Some(action))
            }
            _ => (bytes.len(), None),
        };
        if let Err(e) = write_paced(dst, &bytes[..send], &setup, pacer.as_mut()).await {
            return PumpEnd::Failed(e);
        }
        forwarded += send as u64;
        if let Some(action) = cut {
            setup.counts.cut(action);
            return PumpEnd::Cut(action);
        }
    }
    // The reader is gone without saying why: only when it was dropped, which the caller does not
    // do while it awaits the writer.
    PumpEnd::Failed(io::Error::other("proxy reader stopped"))
}

/// Writes `data` in slices (the slice toxic's size, or the bandwidth pacer's), pacing and pausing
/// as the toxics say.
async fn write_paced<W: AsyncWrite + Unpin>(
    dst: &mut W,
    data: &[u8],
    setup: &PumpSetup<'_>,
    mut pacer: Option<&mut Pacer>,
) -> io::Result<()> {
    let slice = setup.toxics.slice;
    let piece = slice
        .map_or(usize::MAX, |(n, _)| n)
        .min(pacer.as_ref().map_or(usize::MAX, |p| p.piece));
    for part in data.chunks(piece.max(1)) {
        if let Some(p) = pacer.as_deref_mut() {
            p.wait_for(part.len()).await;
        }
        dst.write_all(part).await?;
        setup.counts.forwarded(setup.direction, part.len());
        if let Some((_, pause)) = slice {
            setup.counts.slice_written();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    Ok(())
}

/// A bandwidth limit as a virtual clock: each piece may leave once the pieces before it have
/// had their time at the limit's rate. Idle time is not saved up beyond one piece.
struct Pacer {
    bytes_per_sec: f64,
    /// Pieces of about 10 ms at the limit, so the rate holds at that grain.
    piece: usize,
    next: Instant,
}

impl Pacer {
    fn new(bytes_per_sec: u64) -> Pacer {
        Pacer {
            bytes_per_sec: bytes_per_sec as f64,
            piece: (bytes_per_sec / 100).clamp(1, READ_BUFFER as u64) as usize,
            next: Instant::now(),
        }
    }

    async fn wait_for(&mut self, bytes: usize) {
        let now = Instant::now();
        if self.next < now {
            self.next = now;
        }
        tokio::time::sleep_until(self.next).await;
        self.next += Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::plan::Profile;

    fn toxics(spec: &str) -> DirectionToxics {
        Profile::parse(spec).expect("parse").up
    }

    /// Pumps `input` through a duplex pair under `spec` and returns what came out, how it ended,
    /// the counts, and how long it took (tokio's clock is paused, so time is exact).
    async fn through(spec: &str, input: &[u8]) -> (Vec<u8>, PumpEnd, Counters, Duration) {
        let counts = Counters::new(0);
        let (mut client, src) = tokio::io::duplex(1 << 20);
        let (dst, mut sink) = tokio::io::duplex(1 << 20);
        client.write_all(input).await.expect("write");
        drop(client);
        let started = Instant::now();
        let setup = PumpSetup {
            direction: Direction::Up,
            toxics: toxics(spec),
            draws: Draws::new(1, 2),
            counts: &counts,
        };
        let end = pump(src, dst, setup).await;
        let elapsed = started.elapsed();
        let mut out = Vec::new();
        let _ = sink.read_to_end(&mut out).await;
        (out, end, counts, elapsed)
    }

    #[tokio::test(start_paused = true)]
    async fn slices_are_counted_and_paused_and_the_bytes_arrive_whole() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let (out, end, counts, elapsed) = through("up:slice=7:1ms", &input).await;
        assert_eq!(out, input);
        assert!(matches!(end, PumpEnd::Eof), "{end:?}");
        let c = counts.snapshot();
        // 1000 bytes in one read: 143 slices of at most 7 bytes, 1 ms after each.
        assert_eq!((c.slices, c.bytes_up), (143, 1000));
        assert_eq!(elapsed, Duration::from_millis(143));
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_forward_exactly_their_budget_then_act() {
        let input = vec![b'x'; 5000];
        for (spec, action) in [
            ("up:reset-after=1234", CutAction::Reset),
            ("up:stall-after=1234", CutAction::Stall),
            ("up:close-after=1234", CutAction::Close),
        ] {
            let (out, end, counts, _) = through(spec, &input).await;
            assert_eq!(out.len(), 1234, "{spec}");
            assert!(
                matches!(end, PumpEnd::Cut(a) if a == action),
                "{spec}: {end:?}"
            );
            let c = counts.snapshot();
            assert_eq!(c.resets + c.stalls + c.closes, 1, "{spec}");
        }
        // A budget the stream never reaches: everything goes through and the end is a FIN.
        let (out, end, counts, _) = through("up:reset-after=9000", &input).await;
        assert_eq!(out.len(), 5000);
        assert!(matches!(end, PumpEnd::Eof));
        assert_eq!(counts.snapshot().resets, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_each_chunk_and_bandwidth_holds_the_rate() {
        let (out, _, counts, elapsed) = through("up:latency=50ms", b"hello").await;
        assert_eq!(out, b"hello");
        assert_eq!(counts.snapshot().delayed_chunks, 1);
        assert_eq!(elapsed, Duration::from_millis(50));

        let input = vec![7u8; 64 * 1024];
        let (out, _, _, elapsed) = through("up:bandwidth=256KiB", &input).await;
        assert_eq!(out, input);
        // 64 KiB at 256 KiB/s: a quarter second, less the first piece's share (sent at once).
        let secs = elapsed.as_secs_f64();
        assert!((0.24..=0.26).contains(&secs), "{secs}");
    }
}
