//! The cluster secret `swd local` shares with the processes it starts: the one given with
//! `--secret-file` (or `SWD_SECRET_FILE`), or a fresh random one written for the run to a file
//! only this user can read (removed when `swd local` ends; a SIGKILLed run leaves it in the
//! temporary directory). The path goes to the children as `--secret-file`; the secret itself
//! is never on a command line. One per process: `swd local` runs one cluster.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use streamweave_distributed::security::{generate_secret, Security, SecurityFiles};
use streamweave_distributed::{Client, ClientError};

use super::local::CLUSTER;

struct LocalSecret {
    path: PathBuf,
    security: Security,
    generated: bool,
}

static SECRET: OnceLock<LocalSecret> = OnceLock::new();

/// Loads the given secret file, or writes a fresh one; returns its path.
pub(super) fn prepare(given: Option<&Path>) -> anyhow::Result<&'static Path> {
    let (path, generated) = match given {
        Some(path) => (path.to_path_buf(), false),
        None => {
            let path = std::env::temp_dir().join(format!("swd-local-{}.secret", std::process::id()));
            write_private(&path, &generate_secret()?)?;
            (path, true)
        }
    };
    let security = Security::load(&SecurityFiles {
        secret_file: Some(path.clone()),
        ..Default::default()
    })?;
    let secret = SECRET.get_or_init(|| LocalSecret {
        path,
        security,
        generated,
    });
    Ok(&secret.path)
}

/// Removes a generated secret file.
pub(super) fn cleanup() {
    if let Some(secret) = SECRET.get().filter(|s| s.generated) {
        let _ = std::fs::remove_file(&secret.path);
    }
}

/// Connects to the local cluster's coordinator with its secret.
pub(super) async fn connect(addr: std::net::SocketAddr) -> Result<Client, ClientError> {
    let security = SECRET.get().map(|s| s.security.clone()).unwrap_or_default();
    Client::connect_with(addr, CLUSTER, Duration::from_secs(5), &security).await
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write the cluster secret to {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .with_context(|| format!("cannot write the cluster secret to {}", path.display()))
}
