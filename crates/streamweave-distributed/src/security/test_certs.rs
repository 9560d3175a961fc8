//! Test certificates: a CA and node certificates for 127.0.0.1, made like `swd cert init`.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use super::{Security, SecurityFiles, NODE_URI_PREFIX};

/// Writes `DIR/ca.pem` and, per name, `DIR/NAME.pem` and `DIR/NAME-key.pem`.
pub(crate) fn make(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    for name in names {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            format!("{NODE_URI_PREFIX}{name}").try_into().unwrap(),
        ));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

/// The security of node `name` with the certificates in `dir` (and no secret).
pub(crate) fn node(dir: &Path, name: &str) -> Security {
    let file = |f: String| -> Option<PathBuf> { Some(dir.join(f)) };
    Security::load(&SecurityFiles {
        tls_cert: file(format!("{name}.pem")),
        tls_key: file(format!("{name}-key.pem")),
        tls_ca: file("ca.pem".to_string()),
        ..Default::default()
    })
    .unwrap()
}
