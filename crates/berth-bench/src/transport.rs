//! The socket to the broker: plain TCP, or TLS over it (rustls on *ring*) when `--tls-ca` is
//! given.
//!
//! ```text
//!  TCP connect ─▶ TCP_NODELAY ─┬─ no --tls-ca ─▶ BrokerStream::Tcp
//!                              └─ --tls-ca ───▶ full TLS handshake ─▶ BrokerStream::Tls
//! ```
//!
//! An enum rather than a boxed `AsyncRead + AsyncWrite`: the hot loops go through one `match`
//! on a variant that never changes, with no virtual call, and the TCP variant stays the size of a
//! `TcpStream` (rustls' state, kilobytes, is boxed in the TLS one).
//!
//! Writing to a TLS stream can leave the tail of a batch in rustls' buffer: tokio-rustls'
//! `poll_write` returns once rustls has taken the plaintext, even when the socket was full. A
//! writer that then waits for the broker's answer would wait forever, so writers use
//! [`BrokerStream::write_all_flushed`].

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use anyhow::{Context as _, anyhow, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `--tls-server-name` when it is not given: the name bench/compare's certificate carries.
pub const DEFAULT_SERVER_NAME: &str = "localhost";

/// How every connection of a run speaks TLS: the CA it trusts and the name the broker's
/// certificate must carry. Clones share the rustls configuration.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// What the first completed handshake agreed, for the report. Every connection of a run
    /// uses one configuration against one broker, so the first speaks for all of them.
    negotiated: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("negotiated", &self.negotiated.get())
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts the CA certificates of the PEM file `ca`; the broker's certificate must be valid
    /// for `server_name` (a DNS name or an IP address), which is also sent as SNI.
    pub fn load(ca: &Path, server_name: &str) -> anyhow::Result<TlsClient> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            anyhow!("--tls-server-name {server_name:?}: not a DNS name or an IP address")
        })?;
        let file = ca.display();
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("--tls-ca {file}: cannot read it"))?;
        for cert in certs {
            let cert = cert.with_context(|| format!("--tls-ca {file}: not a PEM file"))?;
            roots
                .add(cert)
                .with_context(|| format!("--tls-ca {file}: not a usable CA certificate"))?;
        }
        if roots.is_empty() {
            bail!("--tls-ca {file}: no certificate in it");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every connection makes a full handshake. With resumption, connections after the first
        // would skip the certificate and its signature on brokers that issue tickets, and not on
        // the others: the handshakes/s of different brokers would measure different work.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: name,
            negotiated: Arc::new(OnceLock::new()),
        })
    }

    /// The TLS handshake over a connected socket.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<BrokerStream> {
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        self.negotiated.get_or_init(|| describe(tls.get_ref().1));
        Ok(BrokerStream::Tls(Box::new(tls)))
    }

    /// What the handshakes agreed, e.g. `TLSv1_3, TLS13_AES_256_GCM_SHA384, X25519`; `None`
    /// before the first one completes.
    pub fn negotiated(&self) -> Option<&str> {
        self.negotiated.get().map(String::as_str)
    }
}

/// Protocol version, cipher suite and key exchange group of a completed handshake.
fn describe(session: &rustls::ClientConnection) -> String {
    let version = session
        .protocol_version()
        .map_or_else(|| "?".to_owned(), |v| format!("{v:?}"));
    let suite = session
        .negotiated_cipher_suite()
        .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite()));
    let group = session
        .negotiated_key_exchange_group()
        .map_or_else(|| "?".to_owned(), |g| format!("{:?}", g.name()));
    format!("{version}, {suite}, {group}")
}

/// A connection's byte stream to the broker.
#[derive(Debug)]
pub enum BrokerStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl BrokerStream {
    /// Writes all of `buf` and, over TLS, flushes what rustls still holds, so that the broker
    /// has it all before we wait for its answer.
    pub async fn write_all_flushed(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            BrokerStream::Tcp(tcp) => tcp.write_all(buf).await,
            BrokerStream::Tls(tls) => {
                tls.write_all(buf).await?;
                tls.flush().await
            }
        }
    }
}

impl AsyncRead for BrokerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            BrokerStream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BrokerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BrokerStream::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            BrokerStream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            BrokerStream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            BrokerStream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}
