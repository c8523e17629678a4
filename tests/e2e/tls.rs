use crate::support::{Apps, Edge, get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A test CA, and leaf certificates it signs.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir` for `host`; returns the certificate's DER.
    fn leaf(&self, dir: &Path, name: &str, host: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// Connects with SNI `sni` and returns the TLS stream, the certificate the server showed,
/// and the protocol ALPN chose.
async fn handshake(
    edge: &Edge,
    ca: &Ca,
    sni: &str,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<TcpStream>,
    Vec<u8>,
    Option<Vec<u8>>,
) {
    let tcp = TcpStream::connect(edge.tls.expect("a TLS listener"))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = ca.client(alpn).connect(name, tcp).await.unwrap();
    let (_, session) = tls.get_ref();
    let cert = session.peer_certificates().unwrap()[0].to_vec();
    let proto = session.alpn_protocol().map(<[u8]>::to_vec);
    (tls, cert, proto)
}

async fn get_h1(stream: tokio_rustls::client::TlsStream<TcpStream>, host: &str) -> (u16, String) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get_h2(stream: tokio_rustls::client::TlsStream<TcpStream>, host: &str) -> (u16, String) {
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("https://{host}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn tls_args(certs: &Path) -> Vec<String> {
    vec![
        "--listen-tls".into(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        certs.join("default.crt").display().to_string(),
        "--tls-key".into(),
        certs.join("default.key").display().to_string(),
        "--tls-dir".into(),
        certs.join("hosts").display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_and_http2_by_alpn_picks_certificates_by_sni_and_reloads_them() {
    let apps = Apps::new();
    apps.add("hello");
    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir(certs.path().join("hosts")).unwrap();
    let ca = Ca::new();
    let default = ca.leaf(certs.path(), "default", "hello.localhost");
    let a = ca.leaf(&certs.path().join("hosts"), "a.test", "a.test");
    let b = ca.leaf(&certs.path().join("hosts"), "*.b.test", "x.b.test");
    let args = tls_args(certs.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let edge = Edge::start(apps.path(), &args);

    let (tls, cert, proto) = handshake(&edge, &ca, "hello.localhost", &[b"http/1.1"]).await;
    assert_eq!(
        (cert == default, proto.as_deref()),
        (true, Some(&b"http/1.1"[..]))
    );
    let (status, body) = get_h1(tls, "hello.localhost").await;
    assert_eq!(status, 200, "{body}");
    let (tls, _, proto) = handshake(&edge, &ca, "hello.localhost", &[b"h2", b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    let (status, body) = get_h2(tls, "hello.localhost").await;
    assert_eq!((status, body.as_str()), (200, "Hello from edge!\n"));
    // The same answer, headers and all, as over plain HTTP.
    assert_eq!(get(edge.addr, "hello.localhost", "/").await.body, body);

    // SNI picks the certificate: exact, then one-label wildcard.
    assert!(handshake(&edge, &ca, "a.test", &[]).await.1 == a);
    assert!(handshake(&edge, &ca, "x.b.test", &[]).await.1 == b);

    // A plaintext request on the TLS port is dropped; the server carries on.
    let mut plain = TcpStream::connect(edge.tls.unwrap()).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("Hello"),
        "served plaintext on TLS"
    );

    // Replace a.test's certificate: new handshakes get the new one, without a restart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a2 = ca.leaf(&certs.path().join("hosts"), "a.test", "a.test");
    let deadline = Instant::now() + Duration::from_secs(10);
    while handshake(&edge, &ca, "a.test", &[]).await.1 != a2 {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken file on reload: logged, and the certificates in use stay.
    std::fs::write(certs.path().join("hosts").join("a.test.key"), "not a key").unwrap();
    assert!(
        edge.wait_log("TLS certificates not reloaded", Duration::from_secs(10)),
        "{}",
        edge.log()
    );
    assert!(handshake(&edge, &ca, "a.test", &[]).await.1 == a2);
    let (tls, _, _) = handshake(&edge, &ca, "hello.localhost", &[b"h2"]).await;
    assert_eq!(get_h2(tls, "hello.localhost").await.0, 200);
}

#[test]
fn bad_certificates_and_keys_stop_the_server_before_it_listens() {
    let apps = Apps::new();
    apps.add("hello");
    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir(certs.path().join("hosts")).unwrap();
    let ca = Ca::new();
    ca.leaf(certs.path(), "default", "hello.localhost");
    ca.leaf(certs.path(), "other", "other.test");
    let run = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--listen-tls".as_ref(), "127.0.0.1:0".as_ref()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let out = crate::support::serve_to_exit(apps.path(), &args);
        assert!(!out.status.success());
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Serving"));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let p = |name: &str| certs.path().join(name).display().to_string();
    // A key that belongs to another certificate.
    let err = run(&[
        "--tls-cert",
        &p("default.crt"),
        "--tls-key",
        &p("other.key"),
    ]);
    assert!(err.contains("does not belong to the certificate"), "{err}");
    // Not PEM at all.
    std::fs::write(certs.path().join("junk.crt"), "hello").unwrap();
    let err = run(&["--tls-cert", &p("junk.crt"), "--tls-key", &p("default.key")]);
    assert!(err.contains("holds no certificate"), "{err}");
    // A certificate whose DER is damaged.
    let pem = std::fs::read_to_string(certs.path().join("default.crt")).unwrap();
    let damaged = pem.replacen("MII", "MIA", 1);
    std::fs::write(certs.path().join("damaged.crt"), damaged).unwrap();
    let err = run(&[
        "--tls-cert",
        &p("damaged.crt"),
        "--tls-key",
        &p("default.key"),
    ]);
    assert!(err.contains("damaged.crt"), "{err}");
    // Unreadable files, a certificate without its key, and no certificate at all.
    let err = run(&[
        "--tls-cert",
        &p("missing.crt"),
        "--tls-key",
        &p("default.key"),
    ]);
    assert!(
        err.contains("cannot read the certificate") && err.contains("missing.crt"),
        "{err}"
    );
    std::fs::copy(
        certs.path().join("default.crt"),
        certs.path().join("hosts/lonely.test.crt"),
    )
    .unwrap();
    let err = run(&["--tls-dir", &p("hosts")]);
    assert!(err.contains("has no key beside it"), "{err}");
    let err = run(&[]);
    assert!(err.contains("--listen-tls needs certificates"), "{err}");
}
