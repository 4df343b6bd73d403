//! What a command reads from the terminal besides its arguments: a value on stdin, and Ctrl-C,
//! which ends the streaming commands (exit 0).

use std::future::Future;
use std::io::Read;
use std::pin::Pin;

use bytes::Bytes;

use crate::failure::Failure;

/// Resolves on Ctrl-C (SIGINT). If the handler cannot be installed, never: the command then
/// runs until it ends by itself or the process is killed.
pub(crate) async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A streaming command's Ctrl-C: one listener for the whole loop, so a Ctrl-C that comes between
/// two updates is not missed (a fresh [`ctrl_c`] per update could drop it).
pub(crate) struct Interrupt(Pin<Box<dyn Future<Output = ()>>>);

impl Interrupt {
    pub(crate) fn listen() -> Self {
        Interrupt(Box::pin(ctrl_c()))
    }

    /// What `next` resolves to, or `None` once Ctrl-C was pressed.
    pub(crate) async fn or<T>(&mut self, next: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            update = next => Some(update),
            _ = &mut self.0 => None,
        }
    }
}

/// All of stdin as raw bytes, for a value given as `-`.
pub(crate) fn read_stdin() -> Result<Bytes, Failure> {
    let mut buf = Vec::new();
    std::io::stdin().lock().read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}
