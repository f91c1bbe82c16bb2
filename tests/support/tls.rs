//! TLS for tests: a private CA made with rcgen in a temporary directory, server
//! and client certificates it signs, a TLS client that reports what was
//! negotiated, and rustls server configurations for HTTPS test upstreams.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate and its key as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A private CA and the files it issued, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
    name: String,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            dir,
            ca,
            ca_file,
            name: name.to_owned(),
        }
    }

    fn leaf(&self, stem: &str, names: &[&str], eku: ExtendedKeyUsagePurpose) -> CertFiles {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        params.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let files = CertFiles {
            cert: self.dir.path().join(format!("{}-{stem}.pem", self.name)),
            key: self.dir.path().join(format!("{}-{stem}.key", self.name)),
        };
        // The chain as a server sends it: the leaf, then the CA.
        std::fs::write(&files.cert, format!("{}{}", cert.pem(), self.ca.pem())).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, stem: &str, names: &[&str]) -> CertFiles {
        self.leaf(stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, cn: &str) -> CertFiles {
        self.leaf(cn, &[cn], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

/// Every certificate of a PEM file.
pub fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
}

/// A rustls server configuration for a test upstream: `files`, ALPN `alpn`,
/// and client certificates required from `client_ca` when given.
pub fn server_config(
    files: &CertFiles,
    alpn: &[&[u8]],
    client_ca: Option<&Path>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca) {
                roots.add(c).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let mut config = builder.with_single_cert(certs(&files.cert), key).unwrap();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(config)
}

/// What a TLS client asks for.
#[derive(Clone)]
pub struct ClientOpts<'a> {
    pub sni: &'a str,
    pub roots: &'a [CertificateDer<'static>],
    pub alpn: &'a [&'a [u8]],
    pub client: Option<&'a CertFiles>,
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
}

/// TLS 1.3 and 1.2, what the gateway accepts.
pub static MODERN: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

impl<'a> ClientOpts<'a> {
    pub fn new(sni: &'a str, roots: &'a [CertificateDer<'static>]) -> ClientOpts<'a> {
        ClientOpts {
            sni,
            roots,
            alpn: &[b"h2", b"http/1.1"],
            client: None,
            versions: &MODERN,
        }
    }
}

/// Connects with TLS as `opts` says.
pub async fn connect(
    addr: SocketAddr,
    opts: &ClientOpts<'_>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in opts.roots {
        roots.add(c.clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(opts.versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match opts.client {
        Some(files) => builder
            .with_client_auth_cert(
                certs(&files.cert),
                PrivateKeyDer::from_pem_file(&files.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from(opts.sni.to_owned()).unwrap(), tcp)
        .await
}

/// The negotiated ALPN protocol of a client stream.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// The common name the server's leaf certificate was issued to, as the test
/// PKI writes it (the first SAN), read back from the DER by substring.
pub fn served_for(stream: &TlsStream<TcpStream>, name: &str) -> bool {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .is_some_and(|leaf| {
            leaf.as_ref()
                .windows(name.len())
                .any(|w| w == name.as_bytes())
        })
}
