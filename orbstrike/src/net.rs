//! Networking details shared by the game server and the orchestrator.

use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

/// Accepted connections with Nagle's algorithm off. Player inputs and tick updates are small
/// and latency-bound: with Nagle on, a 30 Hz update could wait for the peer's delayed ACK
/// (measured: bot input-to-update p50 17.7 ms with it, 10.9 ms without, on loopback).
pub fn nodelay_incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
            }
        }
        conn
    })
}
