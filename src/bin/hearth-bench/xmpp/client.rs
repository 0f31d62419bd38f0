//! Just enough of an XMPP client to measure a server: STARTTLS (any certificate: the servers
//! measured are local, often with self-signed certificates), SASL PLAIN, resource binding,
//! then holding the connection idle. It reads by looking for the markers each step ends with,
//! which is all a measurement needs, and works the same against Hearth and Prosody.

use anyhow::{Context, Result, bail};
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A step that takes longer than this failed (a server that stopped answering).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and as whom to log in.
#[derive(Clone, Debug)]
pub struct Account {
    pub address: String,
    pub domain: String,
    pub user: String,
    pub password: String,
}

/// A logged-in, bound connection, held open while it lives.
pub struct XmppConnection {
    stream: TlsStream<TcpStream>,
    /// What was read after the last marker found.
    seen: String,
}

impl XmppConnection {
    pub async fn send(&mut self, text: &str) -> Result<()> {
        self.stream.write_all(text.as_bytes()).await.context("writing to the XMPP server failed")
    }

    /// Reads until `marker` arrives (what came before it is skipped).
    pub async fn wait_for(&mut self, marker: &str) -> Result<()> {
        let markers = [marker];
        let read = read_until(&mut self.stream, &mut self.seen, &markers);
        tokio::time::timeout(STEP_TIMEOUT, read).await.with_context(|| format!("`{marker}` never arrived"))??;
        Ok(())
    }
}

/// A TLS client that accepts any certificate (see the module comment).
pub fn connector() -> Result<TlsConnector> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='{domain}' version='1.0'>"
    )
}

/// Connects, upgrades to TLS, authenticates and binds `resource`.
pub async fn log_in(account: &Account, resource: &str, tls: &TlsConnector) -> Result<XmppConnection> {
    let step = async {
        let mut tcp = TcpStream::connect(&account.address)
            .await
            .with_context(|| format!("cannot connect to {}", account.address))?;
        let _ = tcp.set_nodelay(true);
        let mut seen = String::new();
        tcp.write_all(header(&account.domain).as_bytes()).await?;
        read_until(&mut tcp, &mut seen, &["</stream:features>"]).await?;
        tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
        read_until(&mut tcp, &mut seen, &["<proceed"]).await?;
        let name = ServerName::try_from(account.domain.clone()).context("the XMPP domain is no server name")?;
        let mut tls = tls.connect(name, tcp).await.context("the TLS handshake failed")?;
        let mut seen = String::new();
        tls.write_all(header(&account.domain).as_bytes()).await?;
        read_until(&mut tls, &mut seen, &["</stream:features>"]).await?;
        let credentials = format!("\0{}\0{}", account.user, account.password);
        let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
        let auth = format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>");
        tls.write_all(auth.as_bytes()).await?;
        if read_until(&mut tls, &mut seen, &["<success", "<failure"]).await?.0 == 1 {
            bail!("{}@{} was refused: wrong password, or no such account", account.user, account.domain);
        }
        tls.write_all(header(&account.domain).as_bytes()).await?;
        read_until(&mut tls, &mut seen, &["</stream:features>"]).await?;
        let bind = format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource>\
             </bind></iq>"
        );
        tls.write_all(bind.as_bytes()).await?;
        let (_, answer) = read_until(&mut tls, &mut seen, &["</iq>"]).await?;
        if !answer.contains("result") {
            bail!("binding a resource failed: {answer}");
        }
        Ok(XmppConnection { stream: tls, seen })
    };
    tokio::time::timeout(STEP_TIMEOUT, step).await.context("the server stopped answering")?
}

/// Reads until one of `markers` shows up in what was read since the last marker: its index,
/// and the text up to and including it.
async fn read_until<R: AsyncRead + Unpin>(io: &mut R, seen: &mut String, markers: &[&str]) -> Result<(usize, String)> {
    let mut buffer = [0u8; 8192];
    loop {
        let found = markers.iter().enumerate().filter_map(|(i, m)| seen.find(m).map(|at| (at, i, m.len()))).min();
        if let Some((at, index, length)) = found {
            return Ok((index, seen.drain(..at + length).collect()));
        }
        let read = io.read(&mut buffer).await?;
        if read == 0 {
            bail!("the server closed the connection; it had sent: {seen}");
        }
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
}

/// Accepts any certificate but still checks the handshake signatures against it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
