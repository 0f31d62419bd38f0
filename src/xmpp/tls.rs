//! The XMPP listeners' certificate: `xmpp.tls_cert`/`tls_key`, or a self-signed one for the XMPP
//! domain generated into `data_dir` on first start and reused after (clients pin it, or the
//! operator replaces it with a real one).

use crate::config::{Config, XmppConfig};
use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const GENERATED_CERT: &str = "xmpp-tls.crt";
const GENERATED_KEY: &str = "xmpp-tls.key";

/// The acceptor both kinds of XMPP listener use.
pub(crate) fn acceptor(config: &Config) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let (cert_path, key_path) = match (&config.xmpp.tls_cert, &config.xmpp.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => generated(&config.data_dir, XmppConfig::domain_of(&config.server_name))?,
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("`xmpp.tls_cert`: reading {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("`xmpp.tls_cert`: {} is not PEM", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("`xmpp.tls_key`: no private key in {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("`xmpp.tls_cert` and `xmpp.tls_key` do not make a usable certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// The generated certificate's files, made now if they do not exist yet.
fn generated(data_dir: &Path, domain: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert_path = data_dir.join(GENERATED_CERT);
    let key_path = data_dir.join(GENERATED_KEY);
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let names = vec![domain.to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).context("generating the XMPP certificate")?;
    write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, certified.cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    tracing::info!(path = %cert_path.display(), %domain, "generated a self-signed XMPP certificate");
    Ok((cert_path, key_path))
}

/// Writes a secret readable by the owner only.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))
}
