//! TLS for federation: the client side trusts the system's roots plus `federation.ca_file`;
//! the server side serves `federation.tls_cert` / `tls_key`.
//!
//! The crypto provider is named explicitly (aws-lc-rs, the one reqwest uses): several
//! providers are compiled into the binary, so rustls cannot pick a process default by itself.

use crate::config::FederationConfig;
use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What outbound federation connections verify servers against.
pub fn client_config(config: &FederationConfig) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "could not load some of the system's CA certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = &config.ca_file {
        let certificates = read_certificates(path).context("`federation.ca_file`")?;
        for certificate in certificates {
            roots
                .add(certificate)
                .with_context(|| format!("`federation.ca_file`: {} holds a bad CA", path.display()))?;
        }
    } else if added == 0 {
        tracing::warn!("no system CA certificates found: outbound federation will fail TLS verification");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The federation listener's TLS acceptor, when `federation.tls_cert` and `tls_key` are set.
pub fn acceptor(config: &FederationConfig) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let chain = read_certificates(cert_path).context("`federation.tls_cert`")?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("`federation.tls_key`: no private key in {}", key_path.display()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("`federation.tls_cert` and `federation.tls_key` do not make a usable certificate")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    if certificates.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certificates)
}
