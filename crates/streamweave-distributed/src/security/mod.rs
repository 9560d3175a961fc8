//! Who may talk to whom: the shared secrets and the TLS setup one process uses on every
//! connection it opens or accepts (see `docs/security.md` for the threat model).
//!
//! ```text
//! SecurityFiles (paths from flags) --Security::load--> Security (cheap to clone, shared)
//!   dialing:   Transport  -> TCP -> TLS client (if tls) -> dial_handshake_with(secret)
//!   accepting: network::accept -> TLS server (if tls) -> accept_handshake_with(keys)
//!              -> Peer { hello, key, certificate name } -> the listener checks roles:
//!                 a worker's certificate names the worker id it may register as,
//!                 admin requests need the admin secret or the `admin` certificate.
//! ```
//!
//! Nothing configured ([`Security::none`], the default) behaves as before: no secret, no TLS.

mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tls::{node_name_of, TlsSetup, NODE_URI_PREFIX};

use crate::protocol::{KeyKind, ListenerKeys, Role, SecretKey};

/// The certificate name that carries admin rights.
pub const ADMIN_NAME: &str = "admin";

/// Why the security setup could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A secret file holds too short a secret.
    #[error("the secret in {path} is shorter than {min} bytes")]
    ShortSecret {
        /// The file.
        path: PathBuf,
        /// The minimum length.
        min: usize,
    },
    /// The TLS files do not make a usable configuration.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// The paths the command line names (`--secret-file`, `--admin-secret-file`, `--tls-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityFiles {
    /// The cluster secret, required of every connection when set.
    pub secret_file: Option<PathBuf>,
    /// The admin secret: a coordinator requires it for admin requests; a client proves it.
    pub admin_secret_file: Option<PathBuf>,
    /// This node's certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA that signs every node's certificate (PEM).
    pub tls_ca: Option<PathBuf>,
}

/// The security one process uses. Clones share it; `Debug` shows what is configured, never a
/// secret.
///
/// ```
/// use streamweave_distributed::security::Security;
///
/// let none = Security::none();
/// assert!(!none.is_enabled());
/// let secured = Security::with_secret(b"at least sixteen bytes of secret").unwrap();
/// assert!(secured.is_enabled());
/// assert!(Security::with_secret(b"short").is_err());
/// ```
#[derive(Clone, Default)]
pub struct Security {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    keys: ListenerKeys,
    tls: Option<TlsSetup>,
}

impl Security {
    /// No secret, no TLS.
    pub fn none() -> Self {
        Security::default()
    }

    /// Only a cluster secret (what `swd local` uses for its own processes).
    pub fn with_secret(secret: &[u8]) -> Result<Self, SecurityError> {
        let key = SecretKey::new(secret).ok_or_else(|| SecurityError::ShortSecret {
            path: PathBuf::from("<memory>"),
            min: SecretKey::MIN_LEN,
        })?;
        Ok(Security::from_parts(
            ListenerKeys {
                cluster: Some(key),
                admin: None,
            },
            None,
        ))
    }

    fn from_parts(keys: ListenerKeys, tls: Option<TlsSetup>) -> Self {
        if keys.cluster.is_none() && keys.admin.is_none() && tls.is_none() {
            return Security::none();
        }
        Security {
            inner: Some(Arc::new(Inner { keys, tls })),
        }
    }

    /// Reads the files named. TLS needs all three of cert, key and CA.
    pub fn load(files: &SecurityFiles) -> Result<Self, SecurityError> {
        let keys = ListenerKeys {
            cluster: files.secret_file.as_deref().map(read_secret).transpose()?,
            admin: files.admin_secret_file.as_deref().map(read_secret).transpose()?,
        };
        let tls = match (&files.tls_cert, &files.tls_key, &files.tls_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsSetup::load(cert, key, ca)?),
            _ => {
                return Err(SecurityError::Tls(
                    "--tls-cert, --tls-key and --tls-ca go together".to_string(),
                ))
            }
        };
        Ok(Security::from_parts(keys, tls))
    }

    /// Whether anything is configured.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The secrets a listener checks.
    pub(crate) fn listener_keys(&self) -> ListenerKeys {
        self.inner.as_ref().map(|i| i.keys.clone()).unwrap_or_default()
    }

    /// The secret a dialer in `role` proves: a client proves the admin secret when it has one.
    pub(crate) fn dial_secret(&self, role: Role) -> Option<(KeyKind, SecretKey)> {
        let keys = &self.inner.as_ref()?.keys;
        match (role, &keys.admin, &keys.cluster) {
            (Role::Client, Some(admin), _) => Some((KeyKind::Admin, admin.clone())),
            (_, _, Some(cluster)) => Some((KeyKind::Cluster, cluster.clone())),
            _ => None,
        }
    }

    /// TLS, when configured.
    pub fn tls(&self) -> Option<&TlsSetup> {
        self.inner.as_ref()?.tls.as_ref()
    }

    /// Whether admin requests need admin credentials here: an admin secret is configured, or
    /// TLS is (every node then has a certificate, and only the `admin` one carries the right).
    pub fn admin_required(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.keys.admin.is_some() || i.tls.is_some())
    }
}

impl PartialEq for Security {
    /// Equal when both are unconfigured or both are the same shared setup.
    fn eq(&self, other: &Self) -> bool {
        match (&self.inner, &other.inner) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Security {}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(inner) = &self.inner else {
            return f.write_str("Security(none)");
        };
        f.debug_struct("Security")
            .field("secret", &inner.keys.cluster.is_some())
            .field("admin_secret", &inner.keys.admin.is_some())
            .field(
                "tls",
                &inner.tls.as_ref().map(|t| t.name().unwrap_or("?").to_string()),
            )
            .finish()
    }
}

/// Who a listener accepted: what the handshake and TLS proved about the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The secret the peer proved, if any.
    pub key: Option<KeyKind>,
    /// The node name in the peer's certificate (TLS only).
    pub certificate_name: Option<String>,
}

impl PeerCredentials {
    /// Whether this peer may issue admin requests under `security`.
    pub fn is_admin(&self, security: &Security) -> bool {
        !security.admin_required()
            || self.key == Some(KeyKind::Admin)
            || self.certificate_name.as_deref() == Some(ADMIN_NAME)
    }

    /// Whether this peer may act as worker `id`: with TLS the certificate must name it; without
    /// TLS nothing binds a worker id to a connection (any holder of the cluster secret may claim
    /// any id; see docs/security.md).
    pub fn may_be_worker(&self, security: &Security, id: &str) -> Result<(), String> {
        if security.tls().is_none() {
            return Ok(());
        }
        match self.certificate_name.as_deref() {
            Some(name) if name == id => Ok(()),
            Some(name) => Err(format!(
                "the peer's certificate is for {name:?}, not worker {id:?}"
            )),
            None => Err(format!(
                "the peer's certificate names no node, so it cannot be worker {id:?}"
            )),
        }
    }
}

/// A fresh random secret: 32 random bytes as 64 hex digits (what `swd local` writes for its
/// processes; `openssl rand -hex 32` makes the same kind).
pub fn generate_secret() -> Result<String, SecurityError> {
    let bytes: [u8; 32] =
        random_bytes().ok_or_else(|| SecurityError::Tls("the system random source failed".to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `N` bytes from the system's random source (ring's), or `None` if it failed: secrets,
/// handshake nonces, job ids and file names that must not collide all take theirs here.
pub(crate) fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes)
}

fn read_secret(path: &Path) -> Result<SecretKey, SecurityError> {
    let bytes = std::fs::read(path).map_err(|e| SecurityError::Read {
        path: path.to_path_buf(),
        reason: crate::network::describe_io_error(&e),
    })?;
    warn_if_readable_by_others(path);
    // A trailing newline from an editor or `echo` is not part of the secret.
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    SecretKey::new(&bytes[..end]).ok_or_else(|| SecurityError::ShortSecret {
        path: path.to_path_buf(),
        min: SecretKey::MIN_LEN,
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the secret file is readable by other users (chmod 600 it)");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
pub(crate) mod test_certs;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
