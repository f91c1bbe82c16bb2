//! TLS termination: the listener's rustls configuration built from
//! `server.tls` (one certificate, or several chosen by SNI, the first being the
//! default), `client_ca` / `client_auth`, ALPN `h2` and `http/1.1`, TLS 1.2 and
//! 1.3 only. A configuration is built completely from the files or not at all,
//! so a broken certificate never replaces a working one; the listener loads the
//! configuration in force for each new handshake, so a reload changes the
//! certificate of new connections and leaves open ones alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::config::{ClientAuth, ServerConfig, TlsCert};

/// Why the TLS configuration could not be built. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {0}")]
    Cert(PathBuf, #[source] std::io::Error),
    #[error("the certificate file {0} holds no certificate")]
    NoCert(PathBuf),
    #[error("cannot read the private key {0}")]
    Key(PathBuf, #[source] std::io::Error),
    #[error("the private key {0} is not usable")]
    BadKey(PathBuf, #[source] rustls::Error),
    #[error("the certificate {0} does not match its private key")]
    Mismatch(PathBuf, #[source] rustls::Error),
    #[error("cannot read the client CA bundle {0}")]
    ClientCa(PathBuf, #[source] std::io::Error),
    #[error("the client CA bundle {0} holds no usable certificate")]
    NoClientCa(PathBuf),
    #[error("the client certificate verifier could not be built")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    #[error("the TLS configuration was refused")]
    Config(#[source] rustls::Error),
}

/// Builds the listener's TLS configuration; `None` when `server.tls` is absent.
pub fn server_config(server: &ServerConfig) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    if server.tls.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut resolver = SniResolver::default();
    for (i, cert) in server.tls.iter().enumerate() {
        let key = Arc::new(certified_key(cert, &provider)?);
        if i == 0 {
            resolver.default = Some(key.clone());
        }
        for name in &cert.server_names {
            match name.strip_prefix("*.") {
                Some(suffix) => resolver.wildcards.push((format!(".{suffix}"), key.clone())),
                None => {
                    resolver.exact.insert(name.clone(), key.clone());
                }
            }
        }
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?;
    let builder = match &server.client_ca {
        Some(ca) => {
            let roots = client_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match server.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(TlsError::Verifier)?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Every file the TLS configuration reads (watched for changes).
pub fn files(server: &ServerConfig) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = server
        .tls
        .iter()
        .flat_map(|c| [c.cert.clone(), c.key.clone()])
        .collect();
    out.extend(server.client_ca.clone());
    out
}

fn certified_key(
    cert: &TlsCert,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .map_err(|e| TlsError::Cert(cert.cert.clone(), io(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(cert.cert.clone(), io(e)))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&cert.key)
        .map_err(|e| TlsError::Key(cert.key.clone(), io(e)))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey(cert.key.clone(), e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Mismatch(cert.cert.clone(), e))?;
    Ok(certified)
}

fn client_roots(path: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::ClientCa(path.to_owned(), io(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::ClientCa(path.to_owned(), io(e)))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoClientCa(path.to_owned()));
    }
    Ok(Arc::new(roots))
}

fn io(e: rustls::pki_types::pem::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Chooses the certificate by SNI: an exact name, then the longest wildcard
/// suffix (`*.b.example.test` covers one more label), else the default.
#[derive(Debug, Default)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `(".b.example.test", key)` for `*.b.example.test`.
    wildcards: Vec<(String, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        let wildcard = self
            .wildcards
            .iter()
            .filter(|(suffix, _)| {
                name.strip_suffix(suffix.as_str())
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            })
            .max_by_key(|(suffix, _)| suffix.len());
        match wildcard {
            Some((_, k)) => Some(k.clone()),
            None => self.default.clone(),
        }
    }
}
