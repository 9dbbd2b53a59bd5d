//! A minimal tokio echo server: the reference the loadgen is benchmarked against
//! (`ci/bench-loadgen.sh`) and a second, non-forking server for the harness tests. One task per
//! connection copies bytes back until the client closes; a half-close is honoured (everything
//! already sent comes back, then EOF).
//!
//! A leaf: nothing of the load generator.
//!
//! Layers it may import: none.
//! Crates it may import: `tokio`.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Accepts and echoes forever. Accept errors (EMFILE and friends) pause accepting briefly
/// instead of spinning or ending the server.
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Echoes one connection until EOF or an error, then closes the write side.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.split();
    if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
        let _ = wr.shutdown().await;
    }
}
