//! `wss://` for the load generator: a test certificate made with Debian's
//! openssl (as tests/browser/tls.test.js makes its own), and a rustls client
//! that trusts exactly that certificate, pinned by its bytes, the way the
//! browser test pins it by its public key. Signatures are still verified,
//! so the handshake does all the work a browser's would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// A self-signed P-256 certificate for 127.0.0.1 and localhost.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    der: CertificateDer<'static>,
}

impl TestCert {
    pub fn make(dir: &Path) -> Result<TestCert> {
        let cert = dir.join("proxy.crt");
        let key = dir.join("proxy.key");
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=loadgen"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running openssl (apt-get install openssl)")?;
        if !status.success() {
            bail!("openssl could not make the test certificate ({status})");
        }
        let pem = std::fs::read(&cert)?;
        let der = rustls_pemfile_cert(&pem)?;
        Ok(TestCert { cert, key, der })
    }

    /// The proxy's configuration lines for this certificate.
    pub fn config(&self) -> String {
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// From now on, `wss://` connections of this process trust this
    /// certificate (and only it).
    pub fn trust(&self) -> Result<()> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Pinned {
            der: self.der.clone(),
            provider: provider.clone(),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        CLIENT
            .set(Arc::new(config))
            .map_err(|_| anyhow::anyhow!("a test certificate is already trusted"))
    }
}

/// The first certificate of a PEM file, as DER.
fn rustls_pemfile_cert(pem: &[u8]) -> Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem).context("reading the test certificate")
}

static CLIENT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// The client configuration [`TestCert::trust`] set up.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>> {
    CLIENT
        .get()
        .cloned()
        .context("wss:// without a trusted test certificate")
}

/// Accepts the one pinned certificate; checks the handshake's signatures
/// with the provider's algorithms.
#[derive(Debug)]
struct Pinned {
    der: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
