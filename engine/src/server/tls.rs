//! TLS on the server's client sockets, with rustls' sans-IO connection
//! driven by the shard's own mio loop: bytes read from a socket go into
//! rustls, the plaintext it yields goes to the connection's [`Conn`], and
//! answer bytes go back through rustls to the socket. No thread is added
//! and no shard waits on a handshake.
//!
//! A plain client on a TLS port is told so in a plain error frame
//! (`ErrorCode::TlsRequired`) and closed: a TLS ClientHello starts with
//! the handshake record type, a mercato frame with its magic, so the first
//! byte tells them apart.
//!
//! [`Conn`]: crate::server::conn::Conn

//!
//! Built with the `tls` feature (part of the default `cli`); without it
//! [`TlsConfig::from_files`] says so and every port is plain.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use mercato_protocol as wire;
#[cfg(feature = "tls")]
use rustls::pki_types::pem::PemObject;
#[cfg(feature = "tls")]
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The server's certificate and key, and whom it asks for a client
/// certificate (`mercato serve --tls-cert --tls-key [--tls-client-ca]`).
#[derive(Clone, Debug)]
pub struct TlsConfig(#[cfg(feature = "tls")] Arc<rustls::ServerConfig>);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("{path}: no certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("TLS settings: {0}")]
    Settings(String),
    #[error("this build has no TLS (the engine's `tls` feature)")]
    NotBuilt,
}

#[cfg(not(feature = "tls"))]
impl TlsConfig {
    pub fn from_files(
        _cert: &Path,
        _key: &Path,
        _client_ca: Option<&Path>,
    ) -> Result<TlsConfig, TlsError> {
        Err(TlsError::NotBuilt)
    }
}

#[cfg(feature = "tls")]
/// rustls' `ring` provider, for build time (see the client's `tls.rs`);
/// the `mercato` binary's other TLS (the sink's to PostgreSQL) uses it too.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(feature = "tls")]
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |why: String| TlsError::File {
        path: path.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

#[cfg(feature = "tls")]
impl TlsConfig {
    /// A PEM certificate chain and its PEM private key; with `client_ca`,
    /// every client must show a certificate that the PEM certificates in
    /// that file signed.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<TlsConfig, TlsError> {
        let chain = certs(cert)?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
            path: key.to_path_buf(),
            why: e.to_string(),
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Settings(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(|e| TlsError::File {
                        path: ca.to_path_buf(),
                        why: e.to_string(),
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Settings(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key_der)
            .map_err(|e| TlsError::Settings(e.to_string()))?;
        Ok(TlsConfig(Arc::new(config)))
    }
}

/// The first byte of a TLS handshake record (a ClientHello's).
#[cfg(feature = "tls")]
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A client socket, plain or under TLS, read and written like a socket:
/// `Ok(0)` from `read` is the end, `WouldBlock` is "not now".
pub(crate) enum Stream {
    Plain(mio::net::TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

#[cfg(feature = "tls")]
pub(crate) struct TlsStream {
    sock: mio::net::TcpStream,
    tls: rustls::ServerConnection,
    /// The first byte was seen to start a TLS record.
    looked: bool,
}

impl Stream {
    pub(crate) fn new(
        sock: mio::net::TcpStream,
        tls: Option<&TlsConfig>,
    ) -> std::io::Result<Stream> {
        Ok(match tls {
            None => Stream::Plain(sock),
            #[cfg(feature = "tls")]
            Some(c) => Stream::Tls(Box::new(TlsStream {
                sock,
                tls: rustls::ServerConnection::new(c.0.clone())
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
                looked: false,
            })),
            #[cfg(not(feature = "tls"))]
            Some(_) => unreachable!("a TlsConfig exists only with the tls feature"),
        })
    }

    /// Plaintext from the client.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.read(buf),
        }
    }

    /// Takes plaintext for the client; `WouldBlock` while records made
    /// earlier still wait for the socket.
    pub(crate) fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write(buf),
        }
    }

    /// Sends what rustls holds for the socket, as far as it takes it.
    pub(crate) fn flush_pending(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.flush(),
        }
    }

    /// Encrypted bytes wait for the socket.
    pub(crate) fn pending(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.tls.wants_write(),
        }
    }
}

#[cfg(feature = "tls")]
impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.looked {
                let mut first = [0u8; 1];
                match self.sock.peek(&mut first)? {
                    0 => return Ok(0),
                    _ if first[0] != TLS_HANDSHAKE_RECORD => {
                        refuse_plain(&mut self.sock);
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "a plain client on a TLS port",
                        ));
                    }
                    _ => self.looked = true,
                }
            }
            if self.tls.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.tls.process_new_packets() {
                // The alert rustls queued tells the client why.
                let _ = self.flush();
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
            // A handshake's next flight, if it has one.
            self.flush()?;
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.flush()?;
        if self.tls.wants_write() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write(buf)?;
        self.flush()?;
        Ok(n)
    }

    /// Records rustls made, to the socket, as far as it takes them.
    fn flush(&mut self) -> std::io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Tells a client that sent plain frames to a TLS port what it must do.
/// Like the connection-limit refusal, one small frame to a fresh socket.
#[cfg(feature = "tls")]
fn refuse_plain(sock: &mut mio::net::TcpStream) {
    crate::server::drain_unread(sock);
    let body = wire::ErrorBody {
        code: wire::ErrorCode::TlsRequired as u16,
        message: "this port serves TLS only: connect with TLS (mercato-cli --tls-ca)".into(),
    };
    let mut out = bytes::BytesMut::new();
    wire::encode_frame(&mut out, wire::Kind::Error, 0, &wire::Body::to_body(&body));
    let _ = sock.write(&out);
}
