//! TLS to a server started with `--tls-cert` and `--tls-key`, with rustls.
//!
//! A connection's rustls state is shared by its writer (any caller's
//! thread) and its reader thread. The writer encrypts under the state's
//! lock and writes the records after letting it go, holding only the
//! writer's own lock, which keeps records in the order they were made; the
//! reader reads raw bytes without any lock and takes the state's lock only
//! to decrypt them. So a writer blocked on a full socket never stops the
//! reader from draining answers, which is what lets the server go on
//! reading.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::ClientError;

/// rustls' `ring` provider: it builds in seconds, where `aws-lc-rs` (with
/// post-quantum key exchange, and rustls' default) compiles a C library
/// for minutes. rustls marks `ring` deprecated for lacking post-quantum
/// algorithms; the server uses the same provider (ARCHITECTURE.md, TLS).
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// How a client checks the server, and proves itself if asked.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

fn tls_error(what: impl std::fmt::Display) -> ClientError {
    ClientError::Tls {
        what: what.to_string(),
    }
}

impl TlsSettings {
    /// Trust the certificates in the PEM file `ca` (the server's own, or
    /// the authority that signed it) and expect the server's certificate
    /// to name `server_name` (a DNS name or an IP address). With
    /// `client_cert`, a PEM certificate chain and its key, for a server
    /// that asks for client certificates.
    pub fn from_files(
        ca: &Path,
        server_name: &str,
        client_cert: Option<(&Path, &Path)>,
    ) -> Result<TlsSettings, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| tls_error(format!("{}: {e}", ca.display())))?
        {
            let cert = cert.map_err(|e| tls_error(format!("{}: {e}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| tls_error(format!("{}: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(tls_error(format!("{}: no certificate", ca.display())));
        }
        let provider = Arc::new(provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| tls_error(format!("{}: {e}", cert.display())))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| tls_error(format!("{}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(tls_error)?
            }
        };
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| tls_error(format!("server name {server_name:?}: {e}")))?;
        Ok(TlsSettings {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// The first bytes of a plain mercato frame (`wire::MAGIC`): what a TLS
/// client reads from a server that does not speak TLS.
const PLAIN_FRAME_START: &[u8] = b"MRCT";

/// A connection's sending side.
pub(crate) enum Writer {
    Plain(TcpStream),
    Tls {
        sock: TcpStream,
        tls: Arc<Mutex<rustls::ClientConnection>>,
    },
}

impl Writer {
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Plain(s) => s.write_all(bytes),
            Writer::Tls { sock, tls } => {
                let mut records = Vec::with_capacity(bytes.len() + 64);
                {
                    let mut t = tls.lock().unwrap();
                    t.writer().write_all(bytes)?;
                    while t.wants_write() {
                        t.write_tls(&mut records)?;
                    }
                }
                sock.write_all(&records)
            }
        }
    }

    pub(crate) fn shutdown(&self) {
        let s = match self {
            Writer::Plain(s) | Writer::Tls { sock: s, .. } => s,
        };
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// A connection's receiving side: plain bytes, decrypted when under TLS.
pub(crate) enum Reader {
    Plain(TcpStream),
    Tls {
        sock: TcpStream,
        tls: Arc<Mutex<rustls::ClientConnection>>,
        /// Bytes read from the socket; `raw[at..end]` is not yet taken
        /// by rustls.
        raw: Box<[u8]>,
        at: usize,
        end: usize,
    },
}

/// Raw bytes read from the socket at a time.
const RAW_READ_BYTES: usize = 64 << 10;

impl Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let (sock, tls, raw, at, end) = match self {
            Reader::Plain(s) => return s.read(out),
            Reader::Tls {
                sock,
                tls,
                raw,
                at,
                end,
            } => (sock, tls, raw, at, end),
        };
        loop {
            {
                let mut t = tls.lock().unwrap();
                match t.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if *at < *end {
                    let mut rest = &raw[*at..*end];
                    let taken = t.read_tls(&mut rest)?;
                    *at += taken;
                    t.process_new_packets()
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    continue;
                }
            }
            let n = sock.read(raw)?;
            (*at, *end) = (0, n);
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

/// What a plain frame in place of a ServerHello means: a server that
/// refused the connection before any TLS (`TooManyConnections` on a full
/// shard) says so in an error frame, which is passed on; a plain port's
/// answer to a ClientHello (`BadMagic`) means it does not serve TLS.
fn plain_answer(mut sock: &TcpStream, start: &[u8]) -> ClientError {
    use mercato_protocol::{ErrorCode, FrameDecoder, Kind};
    let not_tls = || {
        tls_error("the server answered in plain mercato frames: it does not serve TLS on this port")
    };
    let mut buf = bytes::BytesMut::from(start);
    let mut chunk = [0u8; 4096];
    let frame = loop {
        match FrameDecoder::default().decode(&mut buf) {
            Ok(Some(f)) => break f,
            Ok(None) => {}
            Err(_) => return not_tls(),
        }
        match sock.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return not_tls(),
        }
    };
    if frame.kind != Kind::Error {
        return not_tls();
    }
    match crate::shard_conn::refused(&frame.body) {
        ClientError::Refused {
            code: ErrorCode::BadMagic,
            ..
        } => not_tls(),
        refusal => refusal,
    }
}

/// Shakes hands over `sock`; the two halves of the connection after it.
pub(crate) fn handshake(
    sock: TcpStream,
    settings: &TlsSettings,
) -> Result<(Writer, Reader), ClientError> {
    let conn = rustls::ClientConnection::new(settings.config.clone(), settings.server_name.clone())
        .map_err(tls_error)?;
    let mut conn = conn;
    let mut s = &sock;
    let mut first = true;
    let mut raw = vec![0u8; RAW_READ_BYTES];
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(&mut s).map_err(tls_error)?;
        }
        if !conn.is_handshaking() {
            break;
        }
        let n = s.read(&mut raw).map_err(tls_error)?;
        if n == 0 {
            return Err(tls_error(
                "the server closed the connection during the TLS handshake",
            ));
        }
        if first && raw[..n].starts_with(PLAIN_FRAME_START) {
            return Err(plain_answer(&sock, &raw[..n]));
        }
        first = false;
        let mut rest = &raw[..n];
        while !rest.is_empty() {
            conn.read_tls(&mut rest).map_err(tls_error)?;
            if let Err(e) = conn.process_new_packets() {
                // Tell the server why, as TLS does, before giving up.
                let _ = conn.write_tls(&mut s);
                return Err(tls_error(e));
            }
        }
    }
    while conn.wants_write() {
        conn.write_tls(&mut s).map_err(tls_error)?;
    }
    // The writer drains every record it makes at once; a limit would only
    // make a large frame's write come up short.
    conn.set_buffer_limit(None);
    let tls = Arc::new(Mutex::new(conn));
    let write_sock = sock.try_clone().map_err(tls_error)?;
    Ok((
        Writer::Tls {
            sock: write_sock,
            tls: tls.clone(),
        },
        Reader::Tls {
            sock,
            tls,
            raw: vec![0; RAW_READ_BYTES].into_boxed_slice(),
            at: 0,
            end: 0,
        },
    ))
}
