//! The proxy itself: a loopback listener on a thread of its own (a single-threaded tokio runtime,
//! so the blocking checks and loadgen's own runtime in the same process are unaffected), one task
//! per client connection that connects to the server and runs both directions' pumps, and the end
//! of a connection as its toxics decided it: RST, FIN, or the peers' own close.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::counts::{Counters, ProxyCounts};
use super::plan::{CutAction, Direction, DirectionToxics, Draws, FaultPlan};
use super::pump::{pump, PumpEnd, PumpSetup};

/// After a `close-after` FIN, how long the proxy waits for both peers to close before it drops
/// the sockets anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// A running fault proxy. Dropping it (or [`FaultProxy::stop`]) closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    counts: Arc<Counters>,
    /// Sending (or dropping) this ends the runtime, which closes every socket it holds.
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0: any free port) and forwards each connection to `upstream`
    /// under `plan`. Both addresses must be on loopback.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        plan: FaultPlan,
    ) -> io::Result<FaultProxy> {
        for (what, addr) in [("listen", listen), ("upstream", upstream)] {
            if !addr.ip().is_loopback() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the fault proxy runs on loopback only; {what} address {addr} is not"),
                ));
            }
        }
        let listener = StdListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counters::new(plan.profiles.len()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task_counts = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, upstream, Arc::new(plan), task_counts) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here cancels every connection task and closes its sockets.
            })?;
        Ok(FaultProxy {
            addr,
            upstream,
            counts,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// What the proxy has done so far.
    pub fn counts(&self) -> ProxyCounts {
        self.counts.snapshot()
    }

    /// Closes every connection and the listener; returns the final counts.
    pub fn stop(mut self) -> ProxyCounts {
        self.shut_down();
        self.counts.snapshot()
    }

    fn shut_down(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shut_down();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    plan: Arc<FaultPlan>,
    counts: Arc<Counters>,
) {
    let mut index: u64 = 0;
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // Out of descriptors or a connection reset before accept: the listener is fine.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let profile = plan.profile_of(index);
        counts.accepted(profile);
        let toxics = profile.map_or_else(Default::default, |p| {
            (plan.profiles[p].up, plan.profiles[p].down)
        });
        let (seed, counts) = (plan.seed, Arc::clone(&counts));
        tokio::spawn(async move {
            let connection = Connection {
                index,
                seed,
                toxics,
                counts: &counts,
            };
            connection.serve(client, upstream).await;
            counts.connection_closed();
        });
        index += 1;
    }
}

struct Connection<'a> {
    index: u64,
    seed: u64,
    /// Up, down.
    toxics: (DirectionToxics, DirectionToxics),
    counts: &'a Counters,
}

/// How the whole connection ended.
enum End {
    /// Both sides closed (or one failed after the other closed).
    Peers,
    Cut(CutAction),
    Failed,
}

impl Connection<'_> {
    async fn serve(&self, mut client: TcpStream, upstream: SocketAddr) {
        let mut server = match TcpStream::connect(upstream).await {
            Ok(server) => server,
            Err(_) => {
                self.counts.upstream_connect_failed();
                return;
            }
        };
        // Slices must leave as the segments they were cut into, not wait for Nagle.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let end = self.forward(&mut client, &mut server).await;
        match end {
            // The pump counted the cut when it fired; here it is carried out.
            End::Cut(CutAction::Reset) => {
                reset(&client);
                reset(&server);
            }
            End::Cut(CutAction::Close) => close_with_fin(client, server).await,
            End::Failed => self.counts.peer_error(),
            End::Cut(CutAction::Stall) | End::Peers => {}
        }
    }

    /// Runs both directions until the connection's end is decided. A direction that reached EOF
    /// leaves the other running (half-close passes through); a stalled one waits for the other to
    /// end, and when nothing is left to wait for the connection stays open until the proxy stops
    /// (a stall keeps its sockets open); a reset, a close or an error ends both.
    async fn forward(&self, client: &mut TcpStream, server: &mut TcpStream) -> End {
        let (client_rd, client_wr) = client.split();
        let (server_rd, server_wr) = server.split();
        let up = pump(client_rd, server_wr, self.setup(Direction::Up));
        let down = pump(server_rd, client_wr, self.setup(Direction::Down));
        tokio::pin!(up, down);
        let (first, rest) = tokio::select! {
            end = &mut up => (end, down),
            end = &mut down => (end, up),
        };
        match first {
            PumpEnd::Eof | PumpEnd::Cut(CutAction::Stall) => {}
            PumpEnd::Cut(action) => return End::Cut(action),
            PumpEnd::Failed(_) => return End::Failed,
        }
        let stalled = matches!(first, PumpEnd::Cut(CutAction::Stall));
        match rest.await {
            PumpEnd::Cut(CutAction::Stall) => std::future::pending().await,
            PumpEnd::Eof if stalled => End::Cut(CutAction::Stall),
            PumpEnd::Eof => End::Peers,
            PumpEnd::Cut(action) => End::Cut(action),
            PumpEnd::Failed(_) => End::Failed,
        }
    }

    fn setup(&self, direction: Direction) -> PumpSetup<'_> {
        let toxics = match direction {
            Direction::Up => self.toxics.0,
            Direction::Down => self.toxics.1,
        };
        PumpSetup {
            direction,
            toxics,
            draws: Draws::for_connection(self.seed, self.index, direction),
            counts: self.counts,
        }
    }
}

/// SO_LINGER 0: the close that follows sends RST and drops whatever is unsent.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// FIN to both peers, then read (and drop) what they still send until both have closed, so that
/// the proxy's own close never turns into a RST over unread bytes.
async fn close_with_fin(mut client: TcpStream, mut server: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = client.shutdown().await;
    let _ = server.shutdown().await;
    let drain = |mut stream: TcpStream| async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        tokio::join!(drain(client), drain(server));
    })
    .await;
}
