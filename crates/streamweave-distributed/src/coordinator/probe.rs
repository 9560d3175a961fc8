//! Probing the data port of a worker whose connection to the coordinator closed. A refused
//! dial means that nothing listens there: the worker's host answered and its process is gone,
//! so the engine fails it at once instead of at the heartbeat timeout. A timeout, a name that
//! does not resolve or an accepted connection tell nothing (a partition, a paused process, a
//! live worker whose connection broke), and the heartbeat timeout decides as before.
//!
//! ```text
//! Action::ProbeWorker --> spawned: connect(address) within PROBE_TIMEOUT
//!     refused       --> Command::Input(Input::PortRefused{worker, incarnation}) to the actor
//!     anything else --> nothing (an accepted connection is closed at once)
//! ```

use std::io::ErrorKind;
use std::time::Duration;

use tokio::sync::mpsc;

use super::commands::Command;
use super::engine::Input;
use crate::types::WorkerId;

/// How long a probe may take to be answered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `address` (`HOST:PORT`) refuses a TCP connection within `within`.
pub(crate) async fn refuses(address: &str, within: Duration) -> bool {
    let dial = async {
        let addr = tokio::net::lookup_host(address).await.ok()?.next()?;
        Some(tokio::net::TcpStream::connect(addr).await)
    };
    matches!(
        tokio::time::timeout(within, dial).await,
        Ok(Some(Err(e))) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// Probes run `incarnation` of `worker` at `address` in the background; a refusal reaches the
/// actor through `commands`.
pub(crate) fn spawn(commands: mpsc::Sender<Command>, worker: WorkerId, incarnation: u64, address: String) {
    tokio::spawn(async move {
        if refuses(&address, PROBE_TIMEOUT).await {
            let refused = Input::PortRefused { worker, incarnation };
            let _ = commands.send(Command::Input(refused)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_nobody_listens_on_refuses_and_a_listening_one_does_not() {
        let listening = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live = listening.local_addr().expect("addr").to_string();
        let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gone = free.local_addr().expect("addr").to_string();
        drop(free);
        assert!(refuses(&gone, PROBE_TIMEOUT).await);
        assert!(!refuses(&live, PROBE_TIMEOUT).await);
        // An address that is no address tells nothing.
        assert!(!refuses("not an address", PROBE_TIMEOUT).await);
    }
}
