//! Opening a connection to an upstream: name resolution, TCP with
//! `TCP_NODELAY`, and for `https://` a rustls handshake verified against the
//! system roots plus the upstream's `ca_file`, with its `client_cert` when it has
//! one and ALPN for the protocol it speaks. Everything within `connect_timeout`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{CertPair, UpstreamProtocol};

/// A connection to an upstream, with or without TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why a connection could not be opened. The `Display` is for logs.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no connection within the connect timeout")]
    Timeout,
    #[error("cannot resolve the upstream's host")]
    Resolve(#[source] io::Error),
    #[error("cannot connect")]
    Tcp(#[source] io::Error),
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
    #[error("the upstream did not agree to HTTP/2 (ALPN)")]
    NoH2,
}

/// Why an upstream's TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the CA file {0}")]
    CaFile(std::path::PathBuf, #[source] io::Error),
    #[error("the CA file {0} holds no usable certificate")]
    NoCa(std::path::PathBuf),
    #[error("cannot read the client certificate {0}")]
    ClientCert(std::path::PathBuf, #[source] io::Error),
    #[error("cannot read the client key {0}")]
    ClientKey(std::path::PathBuf, #[source] io::Error),
    #[error("the client certificate and key do not form a usable pair")]
    Pair(#[source] rustls::Error),
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS configuration refused")]
    Config(#[source] rustls::Error),
}

/// How to open TLS to one upstream.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Tls {
    /// TLS for `host`: system roots plus `ca_file`, `client_cert` for mTLS,
    /// ALPN for `protocol`.
    pub fn new(
        host: &str,
        ca_file: Option<&Path>,
        client_cert: Option<&CertPair>,
        protocol: UpstreamProtocol,
    ) -> Result<Tls, TlsSetupError> {
        let mut roots = crate::tls::native_roots();
        if let Some(path) = ca_file {
            let extra = read_certs(path).map_err(|e| TlsSetupError::CaFile(path.to_owned(), e))?;
            let store = Arc::make_mut(&mut roots);
            let (added, _) = store.add_parsable_certificates(extra);
            if added == 0 {
                return Err(TlsSetupError::NoCa(path.to_owned()));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Config)?
            .with_root_certificates(roots);
        let mut config = match client_cert {
            Some(pair) => {
                let chain = read_certs(&pair.cert)
                    .map_err(|e| TlsSetupError::ClientCert(pair.cert.clone(), e))?;
                let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| {
                    TlsSetupError::ClientKey(pair.key.clone(), io::Error::other(e.to_string()))
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsSetupError::Pair)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::H2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsSetupError::ServerName(host.to_owned()))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| io::Error::other(e.to_string()))?
        .map(|c| c.map_err(|e| io::Error::other(e.to_string())))
        .collect()
}

/// Opens a connection to `host:port` (TLS when `tls` is set) within `timeout`.
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&Tls>,
    protocol: UpstreamProtocol,
    timeout: Duration,
) -> Result<Stream, ConnectError> {
    let work = async {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(ConnectError::Resolve)?;
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(ConnectError::Tcp(e)),
            (None, None) => {
                return Err(ConnectError::Resolve(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no address",
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let stream = tls
            .connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(ConnectError::Tls)?;
        if protocol == UpstreamProtocol::H2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectError::NoH2);
        }
        Ok(Stream::Tls(Box::new(stream)))
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
