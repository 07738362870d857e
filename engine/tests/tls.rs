//! TLS against a real `mercato serve --tls-cert --tls-key`, with
//! certificates made here by `rcgen`: the client and `mercato-cli` work
//! over it; a plain client is refused with `TlsRequired` while TLS clients
//! go on; a client that does not trust the server's authority, or a TLS
//! client on a plain port, gets a clear `Tls` error; and with
//! `--tls-client-ca` only clients showing a certificate get in.

mod util;

use std::path::{Path, PathBuf};

use mercato_client::{Client, ClientConfig, ClientError, TlsSettings, wire};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use util::{Server, TempDir};

/// PEM files: an authority, a server certificate it signed for
/// 127.0.0.1, and a client certificate it signed.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki(dir: &Path, ca_name: &str) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let ca = authority(ca_name);
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["a-client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

fn tls_config(ca: &Path, client: Option<(&Path, &Path)>) -> ClientConfig {
    ClientConfig {
        tls: Some(TlsSettings::from_files(ca, "127.0.0.1", client).unwrap()),
        ..ClientConfig::default()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A server with `p`'s certificate, and `extra` flags.
fn tls_server(p: &Pki, shards: u16, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        s(&p.server_cert),
        "--tls-key",
        s(&p.server_key),
    ];
    args.extend_from_slice(extra);
    Server::start(shards, &args)
}

fn works(c: &Client) {
    c.put_sku(1, 250, 0).unwrap().unwrap();
    c.restock(1, 3).unwrap().unwrap();
    c.deposit(7, 1_000).unwrap().unwrap();
    let line = wire::LineRequest {
        sku: 1,
        qty: 2,
        expected_unit_price: None,
    };
    let o = (c.place_order(1, 7, vec![line], wire::Payment::Immediate))
        .unwrap()
        .unwrap();
    assert_eq!(o.total, 500);
    assert_eq!(c.get_sku(1).unwrap().unwrap().available, 1);
}

#[test]
fn clients_work_over_tls_and_a_plain_client_is_refused_clearly() {
    let dir = TempDir::new("tls");
    let p = pki(&dir.0, "mercato test authority");
    let server = tls_server(&p, 2, &[]);
    let c = Client::connect(server.main, tls_config(&p.ca, None)).unwrap();
    works(&c);

    // A plain client: told to use TLS, in a frame it can read.
    match Client::connect(server.main, ClientConfig::default()) {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, wire::ErrorCode::TlsRequired);
            assert!(message.contains("TLS"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A client that trusts another authority: the handshake fails.
    let other = pki(&dir.0.join("other"), "someone else");
    match Client::connect(server.main, tls_config(&other.ca, None)) {
        Err(ClientError::Tls { what }) => {
            assert!(what.to_lowercase().contains("certificate"), "{what}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // The TLS client served on through both.
    assert_eq!(c.get_sku(1).unwrap().unwrap().available, 1);

    // mercato-cli over TLS.
    let out = std::process::Command::new(util::mercato_cli())
        .args([
            "--server",
            &server.main.to_string(),
            "--tls-ca",
            s(&p.ca),
            "sku",
            "get",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("available"), "{text}");
}

#[test]
fn a_tls_client_on_a_plain_port_is_told_the_server_has_no_tls() {
    let dir = TempDir::new("tls-plain");
    let p = pki(&dir.0, "mercato test authority");
    let server = Server::start(1, &[]);
    match Client::connect(server.main, tls_config(&p.ca, None)) {
        Err(ClientError::Tls { what }) => assert!(what.contains("does not serve TLS"), "{what}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn with_a_client_authority_only_clients_with_a_certificate_get_in() {
    let dir = TempDir::new("tls-mutual");
    let p = pki(&dir.0, "mercato test authority");
    let server = tls_server(&p, 1, &["--tls-client-ca", s(&p.ca)]);
    // Without a certificate: TLS 1.3 finishes the client's side of the
    // handshake before the server checks, so the refusal may come as the
    // handshake's alert or as the connection closing before Welcome.
    match Client::connect(server.main, tls_config(&p.ca, None)) {
        Err(ClientError::Tls { .. } | ClientError::Connect { .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    let c = Client::connect(
        server.main,
        tls_config(&p.ca, Some((&p.client_cert, &p.client_key))),
    )
    .unwrap();
    works(&c);
}

#[test]
fn a_full_tls_shard_says_so_rather_than_seem_plain() {
    let dir = TempDir::new("tls-full");
    let p = pki(&dir.0, "mercato test authority");
    let server = tls_server(&p, 1, &["--conns-max", "1"]);
    let first = Client::connect(server.main, tls_config(&p.ca, None)).unwrap();
    // The refusal comes before any TLS, as a plain error frame; the client
    // passes it on instead of calling the port plain.
    match Client::connect(server.main, tls_config(&p.ca, None)) {
        Err(ClientError::Refused { code, .. }) => {
            assert_eq!(code, wire::ErrorCode::TooManyConnections);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(
        first.get_sku(1).unwrap().is_err(),
        "no SKU 1 yet, and still served"
    );
}

#[test]
fn sighup_loads_a_new_certificate_for_new_connections() {
    let dir = TempDir::new("tls-reload");
    let p = pki(&dir.0, "first authority");
    let server = tls_server(&p, 1, &[]);
    let old = Client::connect(server.main, tls_config(&p.ca, None)).unwrap();
    // A new certificate from another authority, in the same files.
    let next = pki(&dir.0.join("next"), "second authority");
    std::fs::copy(&next.server_cert, &p.server_cert).unwrap();
    std::fs::copy(&next.server_key, &p.server_key).unwrap();
    // SAFETY: kill(2) on our own child's pid, with a valid signal.
    let rc = unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    assert_eq!(rc, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let new = loop {
        match Client::connect(server.main, tls_config(&next.ca, None)) {
            Ok(c) => break c,
            Err(ClientError::Tls { .. }) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the new certificate never served"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    works(&new);
    // Trusting only the first authority no longer gets in; the connection
    // made before goes on.
    assert!(matches!(
        Client::connect(server.main, tls_config(&p.ca, None)),
        Err(ClientError::Tls { .. })
    ));
    assert_eq!(old.get_sku(1).unwrap().unwrap().available, 1);
}
