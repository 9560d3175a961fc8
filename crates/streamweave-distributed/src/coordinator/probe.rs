//! Probing the data port of a worker whose connection to the coordinator closed. A refused
//! dial means that nothing listens there: the worker's host answered and its process is gone,
//! so the engine fails it at once instead of at the heartbeat timeout. A timeout, a name that
//! does not resolve or an accepted connection tell nothing (a partition, a paused process, a
//! live worker whose connection broke), and the heartbeat timeout decides as before.
//!
//! ```text
//! Action::ProbeWorker --> spawned: connect(address), all within PROBE_TIMEOUT
//!     refused       --> Command::Input(Input::PortRefused{worker, incarnation}) to the actor
//!     accepted      --> wait for it to end (reset by an exiting process), then dial again
//!     anything else --> nothing
//! ```

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::commands::Command;
use super::engine::Input;
use crate::types::WorkerId;

/// How long a probe may take to be answered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause before dialing again after an accepted connection ended.
const REDIAL_PAUSE: Duration = Duration::from_millis(5);

/// Whether `address` (`HOST:PORT`) refuses a TCP connection within `within`.
///
/// A process being killed closes its sockets one by one, so its connection to the coordinator
/// may close while its listener still takes connections into the backlog: a dial is then
/// accepted, and reset a moment later as the listener closes. So an accepted dial waits for
/// its connection to end and dials again; a live worker says nothing to a dialer that has not
/// begun the handshake (for seconds), and the probe ends at `within` telling nothing.
pub(crate) async fn refuses(address: &str, within: Duration) -> bool {
    let probe = async {
        let Some(addr) = tokio::net::lookup_host(address)
            .await
            .ok()
            .and_then(|mut a| a.next())
        else {
            return false;
        };
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) => return e.kind() == ErrorKind::ConnectionRefused,
                Ok(mut stream) => {
                    let mut byte = [0u8; 1];
                    let _ = stream.read(&mut byte).await;
                    // Ended (reset, closed, or something said): look again, not in a spin.
                    tokio::time::sleep(REDIAL_PAUSE).await;
                }
            }
        }
    };
    tokio::time::timeout(within, probe).await.unwrap_or(false)
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
        // Accepted (into the backlog) and never ended: nothing certain within the time given.
        assert!(!refuses(&live, Duration::from_millis(300)).await);
        // An address that is no address tells nothing.
        assert!(!refuses("not an address", PROBE_TIMEOUT).await);
    }

    #[tokio::test]
    async fn a_listener_that_closes_after_accepting_the_dial_is_found_gone() {
        // A process being killed: its listener takes the dial into the backlog, then closes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let probe = tokio::spawn(async move { refuses(&address, Duration::from_secs(10)).await });
        // Once the dial sits in the backlog, the listener goes (resetting it).
        let (accepted, _) = listener.accept().await.expect("the probe's dial");
        drop(listener);
        drop(accepted);
        assert!(probe.await.expect("probe task"));
    }
}
