//! `swd cert init DIR --names coordinator,w1,w2,admin [--hosts ...]`: a development CA and one
//! certificate per node name, so mutual TLS can be tried in a minute (docs/security.md).
//!
//! Each node certificate carries its name as a URI subject alternative name
//! `urn:swd:node:NAME` (what the listener checks: a worker's name must be its `--id`; `admin`
//! may issue admin requests) and as the common name, and lists `--hosts` as DNS or IP SANs (what
//! a dialer checks against the address it dialed). Keys are ECDSA P-256, written 0600.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use streamweave_distributed::security::NODE_URI_PREFIX;

use crate::cli::{CertCommand, CertInitArgs};

pub async fn run(command: CertCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertCommand::Init(args) => init(&args),
    }
}

fn init(args: &CertInitArgs) -> anyhow::Result<ExitCode> {
    for name in &args.names {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        anyhow::ensure!(ok, "bad name {name:?}: use letters, digits, '-', '_' and '.'");
        anyhow::ensure!(
            name != "ca",
            "\"ca\" is the CA's own file name; pick another node name"
        );
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "streamweave-distributed development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write(&args.dir, "ca.pem", &ca_cert.pem(), false)?;
    write(&args.dir, "ca-key.pem", &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    for name in &args.names {
        let mut params = CertificateParams::new(args.hosts.clone())
            .with_context(|| format!("bad --hosts {:?}", args.hosts))?;
        params
            .subject_alt_names
            .push(SanType::URI(format!("{NODE_URI_PREFIX}{name}").try_into()?));
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(&args.dir, &format!("{name}.pem"), &cert.pem(), false)?;
        write(&args.dir, &format!("{name}-key.pem"), &key.serialize_pem(), true)?;
    }
    outln!(
        "wrote a development CA and certificates for {} to {} (hosts {})",
        args.names.join(", "),
        args.dir.display(),
        args.hosts.join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &Path, name: &str, contents: &str, private: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
