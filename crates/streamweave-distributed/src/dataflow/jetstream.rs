//! What the JetStream source and sink share: `nats://HOST:PORT/NAME` URLs, one client
//! connection per server per process, and the bridge from their blocking threads to the async
//! client.
//!
//! ```text
//! source/sink (blocking thread) --storage::block_on(fut)--> storage runtime --> async_nats::Client
//!                                                           (its connection task lives here too,
//!                                                            and reconnects when the server returns)
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::DataflowError;

/// How long connecting to a server may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed `nats://HOST:PORT/NAME`: a server and a stream (source) or subject (sink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NatsUrl {
    /// `HOST:PORT`.
    pub(crate) server: String,
    /// The stream or subject.
    pub(crate) name: String,
}

impl NatsUrl {
    /// Parses `nats://HOST:PORT/NAME`; `None` if `path` is not a `nats://` URL at all, an
    /// error if it is one without a server or name.
    pub(crate) fn parse(path: &Path) -> Result<Option<NatsUrl>, DataflowError> {
        let Some(rest) = path.to_str().and_then(|s| s.strip_prefix("nats://")) else {
            return Ok(None);
        };
        let invalid = |why: &str| DataflowError::InvalidJob(format!("{}: {why}", path.display()));
        let (server, name) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected nats://HOST:PORT/NAME"))?;
        if server.is_empty() {
            return Err(invalid("no server"));
        }
        if name.is_empty() || name.contains(['/', ' ', '\t']) {
            return Err(invalid("the name must be one non-empty stream or subject name"));
        }
        Ok(Some(NatsUrl {
            server: server.to_string(),
            name: name.to_string(),
        }))
    }

    /// The URL as the user wrote it, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("nats://{}/{}", self.server, self.name)
    }

    /// An error of a request about this URL.
    pub(crate) fn error(&self, what: &str, e: impl std::fmt::Display) -> DataflowError {
        DataflowError::Nats {
            url: self.describe(),
            message: format!("{what}: {e}"),
        }
    }

    /// The process's client for this server, connecting the first time. The client reconnects
    /// by itself when the connection drops, so it is shared by every source and sink partition.
    pub(crate) fn client(&self) -> Result<async_nats::Client, DataflowError> {
        static CLIENTS: OnceLock<Mutex<HashMap<String, async_nats::Client>>> = OnceLock::new();
        let clients = CLIENTS.get_or_init(Default::default);
        // The lock only guards the map; connecting happens outside it.
        if let Some(client) = clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.server)
        {
            return Ok(client.clone());
        }
        let server = self.server.clone();
        let client = run(async move {
            async_nats::ConnectOptions::new()
                .connection_timeout(CONNECT_TIMEOUT)
                .connect(server)
                .await
        })
        .map_err(|e| self.error("connecting", e))?;
        let mut clients = clients.lock().unwrap_or_else(|e| e.into_inner());
        Ok(clients.entry(self.server.clone()).or_insert(client).clone())
    }
}

/// A JetStream context over `client`; call it inside [`run`] (it spawns its acknowledgement
/// task on the current runtime).
pub(crate) fn jetstream(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(client)
}

/// Runs a future of the client on the runtime its connections live on, from a blocking thread.
pub(crate) fn run<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    crate::storage::block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_and_name() {
        let url = NatsUrl::parse(Path::new("nats://127.0.0.1:4222/ORDERS")).expect("valid");
        assert_eq!(
            url,
            Some(NatsUrl {
                server: "127.0.0.1:4222".to_string(),
                name: "ORDERS".to_string()
            })
        );
        assert_eq!(NatsUrl::parse(Path::new("data/in")).expect("a path"), None);
        assert_eq!(NatsUrl::parse(Path::new("s3://b/p")).expect("not nats"), None);
        for bad in ["nats://host:1", "nats:///S", "nats://h:1/", "nats://h:1/a/b"] {
            assert!(NatsUrl::parse(Path::new(bad)).is_err(), "{bad}");
        }
    }
}

/// Tier-2 test helpers: a real `nats-server` (from `SWD_TEST_NATS_URL`, or one a test starts
/// and restarts itself).
#[cfg(test)]
pub(crate) mod tier2 {
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use async_nats::jetstream::message::PublishMessage;

    use super::*;

    /// The server `scripts/tier2.sh` started; panics (fails the test) without one.
    pub(crate) fn server() -> String {
        match std::env::var("SWD_TEST_NATS_URL") {
            Ok(url) => url.trim_start_matches("nats://").to_string(),
            Err(_) => panic!("SWD_TEST_NATS_URL is not set: run the tier-2 tests through scripts/tier2.sh"),
        }
    }

    /// A `nats-server -js` this test owns, on its own port and store directory, so it can be
    /// stopped and started again on the same port with the same data.
    pub(crate) struct OwnServer {
        pub(crate) port: u16,
        store: tempfile::TempDir,
        child: Option<Child>,
    }

    impl OwnServer {
        /// Starts one on a free port and waits until it answers.
        pub(crate) fn start() -> OwnServer {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let mut server = OwnServer {
                port,
                store: tempfile::tempdir().expect("a store directory"),
                child: None,
            };
            server.restart();
            server
        }

        /// `HOST:PORT`.
        pub(crate) fn addr(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        /// Kills the server (SIGKILL: no goodbye to the clients).
        pub(crate) fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Starts it (again), same port and store, and waits until it accepts connections.
        pub(crate) fn restart(&mut self) {
            self.kill();
            let child = Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
                .arg(self.store.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server runs (scripts/lib/nats.sh installs it)");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(self.addr()).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "nats-server did not listen within 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// A fresh stream `name` (an older one of that name is deleted) capturing `name.>`.
    pub(crate) fn create_stream(server: &str, name: &str) {
        let client = client(server);
        let name = name.to_string();
        run(async move {
            let js = jetstream(client);
            let _ = js.delete_stream(&name).await;
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await
            .expect("create stream");
        });
    }

    fn client(server: &str) -> async_nats::Client {
        let url = NatsUrl {
            server: server.to_string(),
            name: "-".to_string(),
        };
        url.client().expect("connect")
    }

    /// Publishes `lines` to `subject`, each with itself as message id (a publish retried after
    /// a lost ack is stored once), and waits for the acks.
    pub(crate) fn publish_lines(server: &str, subject: &str, lines: Vec<String>) {
        let (client, subject) = (client(server), subject.to_string());
        run(async move {
            let js = jetstream(client);
            let mut acks = Vec::new();
            for line in lines {
                let message = PublishMessage::build().message_id(&line).payload(line.into());
                acks.push(js.send_publish(subject.clone(), message).await.expect("publish"));
            }
            for ack in acks {
                ack.await.expect("ack");
            }
        });
    }

    /// Every message of stream `name`, in order, as text.
    pub(crate) fn read_stream(server: &str, name: &str) -> Vec<String> {
        let (client, name) = (client(server), name.to_string());
        run(async move {
            let js = jetstream(client);
            let stream = js.get_stream(&name).await.expect("the stream");
            let last = stream.get_info().await.expect("info").state.last_sequence;
            let mut lines = Vec::new();
            for seq in 1..=last {
                if let Ok(message) = stream.get_raw_message(seq).await {
                    lines.push(String::from_utf8_lossy(&message.payload).into_owned());
                }
            }
            lines
        })
    }

    impl Drop for OwnServer {
        fn drop(&mut self) {
            self.kill();
        }
    }
}
