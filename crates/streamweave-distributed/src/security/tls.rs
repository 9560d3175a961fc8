//! Mutual TLS with rustls and the ring provider: both sides present a certificate signed by the
//! cluster's CA. A node's name (its worker id, `coordinator` or `admin`) is in its certificate
//! as a URI subject alternative name `urn:swd:node:NAME` (and as the common name, for humans);
//! the listener reads it from the verified chain to bind the connection to that name.
//!
//! A dialer checks the listener's certificate against the address it dialed (an IP address
//! SAN), like HTTPS does, so the certificates must list the hosts the nodes are reached at
//! (`swd cert init --hosts`).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use super::SecurityError;
use crate::network::NetStream;

/// The URI SAN prefix that carries a node's name.
pub const NODE_URI_PREFIX: &str = "urn:swd:node:";

/// The node name a certificate carries (`urn:swd:node:NAME`), if any.
pub fn node_name_of(certificate: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(certificate).ok()?;
    let name = parsed
        .valid_uri_names()
        .find_map(|uri| uri.strip_prefix(NODE_URI_PREFIX).map(str::to_string));
    name
}

/// A loaded TLS setup: the server and client configurations of this node, and its name.
#[derive(Clone)]
pub struct TlsSetup {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: Option<String>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, path: &Path, e: impl std::fmt::Display) -> SecurityError {
    SecurityError::Tls(format!("{what} {}: {e}", path.display()))
}

impl TlsSetup {
    /// Reads this node's certificate chain and key and the CA certificate (all PEM).
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self, SecurityError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls_error("cannot read", cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error("bad certificate in", cert, e))?;
        let Some(leaf) = chain.first() else {
            return Err(tls_error("no certificate in", cert, "empty"));
        };
        let name = node_name_of(leaf);
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error("cannot read the key", key, e))?;
        let mut roots = RootCertStore::empty();
        for ca_cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_error("cannot read", ca, e))? {
            let ca_cert = ca_cert.map_err(|e| tls_error("bad certificate in", ca, e))?;
            roots
                .add(ca_cert)
                .map_err(|e| tls_error("unusable CA certificate in", ca, e))?;
        }
        if roots.is_empty() {
            return Err(tls_error("no CA certificate in", ca, "empty"));
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .map_err(|e| SecurityError::Tls(format!("client verifier: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SecurityError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls_error("certificate and key do not match in", cert, e))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SecurityError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error("certificate and key do not match in", cert, e))?;
        Ok(TlsSetup {
            server: Arc::new(server),
            client: Arc::new(client),
            name,
        })
    }

    /// This node's name, from its own certificate.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Runs the client side of TLS over `tcp`, checking the listener's certificate against `ip`.
    pub(crate) async fn connect(&self, tcp: TcpStream, ip: IpAddr) -> std::io::Result<NetStream> {
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.client));
        let stream = connector.connect(ServerName::IpAddress(ip.into()), tcp).await?;
        Ok(NetStream::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))))
    }

    /// Runs the server side of TLS over `tcp`; the client must present a certificate of the CA.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> std::io::Result<NetStream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&self.server));
        let stream = acceptor.accept(tcp).await?;
        Ok(NetStream::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))))
    }
}
