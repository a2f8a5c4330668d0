//! HTTPS and wss:// on the engine's own port (config `tls`), with real rustls clients and a
//! certificate authority each test makes for itself (rcgen): chatting, the page, versions and
//! ALPN, bad files refused naming their key, stalled handshakes cut and counted, and
//! certificates swapped without a restart.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::{Connector, MaybeTlsStream};

/// A certificate authority of one test, and the directory its files go to.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("embedchat-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestCa { issuer, dir }
    }

    /// A new leaf certificate for 127.0.0.1 and localhost: (its PEM, its key's PEM, its DER).
    fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// Writes a new leaf as cert.pem (chain: leaf, then the CA, as certbot's fullchain.pem) and
    /// key.pem; returns the leaf's DER.
    fn install_leaf(&self) -> Vec<u8> {
        let (cert, key, der) = self.leaf();
        write(&self.path("cert.pem"), &format!("{cert}{}", self.issuer.pem()));
        write(&self.path("key.pem"), &key);
        der
    }

    fn tls_config(&self) -> Value {
        json!({"cert": self.path("cert.pem"), "key": self.path("key.pem")})
    }

    /// A client that trusts this CA only, speaking `versions`, offering `alpn`.
    fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&str],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut c =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(c)
    }

    fn default_client(&self) -> Arc<rustls::ClientConfig> {
        self.client(rustls::DEFAULT_VERSIONS, &[])
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces a file the way a renewal does: a new file renamed over the old one.
fn write(path: &str, text: &str) {
    let tmp = format!("{path}.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wss(e: &embedchat::Engine, query: &str, client: Arc<rustls::ClientConfig>) -> Client {
    let url = format!("wss://127.0.0.1:{}/ws?{query}", e.port());
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(Connector::Rustls(client)));
    let (ws, _) = tokio::time::timeout(WAIT, connect).await.expect("connect in time").expect("wss connect");
    ws
}

/// The leaf certificate the server showed this client.
fn seen_cert(ws: &Client) -> Vec<u8> {
    match ws.get_ref() {
        MaybeTlsStream::Rustls(s) => s.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        _ => panic!("not a TLS connection"),
    }
}

/// One HTTPS request (`Connection: close`) with `client`: status line + headers + body, the TLS
/// version and the ALPN protocol agreed.
async fn https_get(
    port: u16,
    path: &str,
    client: Arc<rustls::ClientConfig>,
) -> (String, Option<rustls::ProtocolVersion>, Option<Vec<u8>>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await.expect("TLS handshake");
    let (version, alpn) =
        (s.get_ref().1.protocol_version(), s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("answer in time").expect("read");
    (String::from_utf8_lossy(&out).into_owned(), version, alpn)
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_clients_chat_and_the_page_is_served_over_https() {
    let ca = TestCa::new();
    ca.install_leaf();
    let e = engine(json!({"tls": ca.tls_config(), "max_messages_per_second": 0}));
    let mut ann = wss(&e, "name=ann", ca.default_client()).await;
    welcomed(&mut ann).await;
    let mut bob = wss(&e, "name=bob", ca.default_client()).await;
    welcomed(&mut bob).await;
    // Enough to need several TLS records and writes: the session's flush must push them all.
    let long = "x".repeat(60_000);
    send(&mut bob, "hello over TLS").await;
    send(&mut bob, &long).await;
    assert_eq!(recv_type(&mut ann, "message").await["text"], "hello over TLS");
    assert_eq!(recv_type(&mut ann, "message").await["text"].as_str().unwrap().len(), long.len());
    assert_eq!(recv_type(&mut bob, "message").await["text"], "hello over TLS");

    // The page, to a browser-like client that offers h2 first: HTTP/1.1 is what it gets.
    let (page, version, alpn) =
        https_get(e.port(), "/", ca.client(rustls::DEFAULT_VERSIONS, &["h2", "http/1.1"])).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html") && page.contains("<html"), "{page}");
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    // TLS 1.2 is still served (older clients, some load checkers).
    let (health, version, _) =
        https_get(e.port(), "/healthz", ca.client(&[&rustls::version::TLS12], &[])).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_2));

    // A client that closes politely: both sides see a clean close.
    ann.close(None).await.unwrap();
    assert!(close_code(&mut ann).await.is_none_or(|c| u16::from(c) == 1000));
    let s = e.stats();
    assert_eq!((s.tls_handshake_failures, s.tls_handshake_timeouts), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_a_usable_tls_handshake_is_refused_and_counted() {
    let ca = TestCa::new();
    ca.install_leaf();
    let e = engine(json!({"tls": ca.tls_config()}));
    // Plain HTTP on the TLS port.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", e.port())).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1"), "no HTTP answer in the clear");
    // A client that speaks only HTTP/2 (ALPN `h2`): the engine has none of it.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", e.port())).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let h2 = tokio_rustls::TlsConnector::from(ca.client(rustls::DEFAULT_VERSIONS, &["h2"]));
    assert!(h2.connect(name.clone(), tcp).await.is_err(), "no common ALPN protocol");
    // A client that does not trust the certificate (it trusts another CA).
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", e.port())).await.unwrap();
    let stranger = tokio_rustls::TlsConnector::from(TestCa::new().default_client());
    assert!(stranger.connect(name, tcp).await.is_err());
    until("three counted failures", || e.stats().tls_handshake_failures == 3);
    assert_eq!(e.stats().tls_handshake_timeouts, 0);
}

#[test]
fn a_bad_certificate_or_key_fails_start_naming_the_key() {
    let ca = TestCa::new();
    let (cert, key, _) = ca.leaf();
    let (_, other_key, _) = ca.leaf();
    write(&ca.path("cert.pem"), &cert);
    write(&ca.path("key.pem"), &key);
    write(&ca.path("other.key"), &other_key);
    write(&ca.path("junk.pem"), "not a certificate\n");
    write(&ca.path("broken.pem"), "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n");
    let start = |tls: Value| match embedchat::Engine::start_json(
        &json!({"listen": "127.0.0.1:0", "tls": tls}).to_string(),
    ) {
        Ok(_) => panic!("started with {tls}"),
        Err(embedchat::Error::Config(c)) => c,
        Err(other) => panic!("not a config error: {other}"),
    };
    let (good_cert, good_key) = (ca.path("cert.pem"), ca.path("key.pem"));
    let missing = ca.path("nowhere.pem");
    for (tls, key, says) in [
        (json!({"cert": missing, "key": good_key}), "tls.cert", "cannot read"),
        (json!({"cert": ca.path("junk.pem"), "key": good_key}), "tls.cert", "no certificate"),
        (json!({"cert": ca.path("broken.pem"), "key": good_key}), "tls.cert", "broken.pem"),
        (json!({"cert": good_cert, "key": missing}), "tls.key", "cannot read"),
        // A certificate where the key should be: no private key in it.
        (json!({"cert": good_cert, "key": good_cert}), "tls.key", "no private key"),
        // A renewal that replaced only one of the two files.
        (
            json!({"cert": good_cert, "key": ca.path("other.key")}),
            "tls.key",
            "is not the key of the certificate",
        ),
        (json!({"cert": good_cert, "key": ""}), "tls.key", "path"),
        (json!({"cert": good_cert, "key": good_key, "ca": good_cert}), "tls.ca", "unknown"),
        (json!({"cert": good_cert}), "tls", "missing field `key`"),
    ] {
        let c = start(tls.clone());
        assert_eq!(c.key, key, "{tls}: {c}");
        assert!(c.message.contains(says), "{tls}: {c}");
    }
    // The same through the C ABI: NULL, CHAT_ERR_CONFIG, the key named in chat_last_error().
    let cfg = json!({"listen": "127.0.0.1:0", "tls": {"cert": good_cert, "key": ca.path("other.key")}});
    let cfg = std::ffi::CString::new(cfg.to_string()).unwrap();
    // SAFETY: a NUL-terminated string that outlives the call.
    let e = unsafe { embedchat::ffi::chat_start(cfg.as_ptr()) };
    assert!(e.is_null());
    assert_eq!(embedchat::ffi::chat_last_result(), embedchat::ffi::chat_result::CHAT_ERR_CONFIG as i32);
    assert!(last_error().starts_with("config key `tls.key`: "), "{}", last_error());
    // And the good pair starts.
    embedchat::Engine::start_json(
        &json!({"listen": "127.0.0.1:0", "tls": {"cert": good_cert, "key": good_key}}).to_string(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_the_tls_handshake_is_cut_and_counted_and_holds_no_worker() {
    let ca = TestCa::new();
    ca.install_leaf();
    // One network thread: if a stalled handshake held it, nobody else could connect.
    let e = engine(json!({"tls": ca.tls_config(), "handshake_timeout_ms": 500, "worker_threads": 1}));
    let port = e.port();
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    // One that starts a ClientHello (a record header and two bytes of it) and stops.
    let mut halfway = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    halfway.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
    // Meanwhile a real client connects and chats at once.
    let mut ws = wss(&e, "name=quick", ca.default_client()).await;
    welcomed(&mut ws).await;
    assert!(opened.elapsed() < Duration::from_millis(500), "served while the others stall");
    // Every staller is cut at the deadline: the server ends the connection.
    for mut s in silent.into_iter().chain([halfway]) {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut b = [0u8; 64];
        loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue, // an alert, if any
            }
        }
    }
    let took = opened.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{took:?}");
    until("21 counted timeouts", || e.stats().tls_handshake_timeouts == 21);
    assert_eq!(e.stats().tls_handshake_failures, 0);
    let (metrics, _, _) = https_get(port, "/metrics", ca.default_client()).await;
    assert!(metrics.contains("embedchat_tls_handshake_timeouts_total 21\n"), "{metrics}");
    assert!(metrics.contains("embedchat_tls_handshake_failures_total 0\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_serves_the_new_certificate_to_new_connections_and_keeps_old_ones() {
    let ca = TestCa::new();
    let first = ca.install_leaf();
    let e = engine(json!({"tls": ca.tls_config(), "max_messages_per_second": 0}));
    let mut old = wss(&e, "name=old", ca.default_client()).await;
    welcomed(&mut old).await;
    assert_eq!(seen_cert(&old), first);

    // A renewal: new files, then a reload.
    let second = ca.install_leaf();
    assert_ne!(first, second);
    e.reload_tls().unwrap();
    let mut new = wss(&e, "name=new", ca.default_client()).await;
    welcomed(&mut new).await;
    assert_eq!(seen_cert(&new), second, "a new connection gets the new certificate");
    // The old connection is still up, on its old session, and chats with the new one.
    send(&mut old, "still here").await;
    assert_eq!(recv_type(&mut new, "message").await["text"], "still here");
    assert_eq!(recv_type(&mut old, "message").await["text"], "still here");

    // A half-done renewal (a key that is not the certificate's) is refused, naming the key,
    // and the last good certificate keeps serving.
    let (_, stray_key, _) = ca.leaf();
    write(&ca.path("key.pem"), &stray_key);
    let err = e.reload_tls().unwrap_err();
    assert_eq!(err.kind(), embedchat::ErrorKind::Config);
    assert!(err.to_string().starts_with("config key `tls.key`: "), "{err}");
    std::fs::remove_file(ca.path("cert.pem")).unwrap();
    let err = e.reload_tls().unwrap_err();
    assert!(err.to_string().starts_with("config key `tls.cert`: "), "{err}");
    let mut later = wss(&e, "name=later", ca.default_client()).await;
    welcomed(&mut later).await;
    assert_eq!(seen_cert(&later), second);

    // Without `tls` there is nothing to reload.
    let plain = engine(json!({}));
    assert_eq!(plain.reload_tls().unwrap_err().kind(), embedchat::ErrorKind::Invalid);
}

#[test]
fn chat_reload_tls_in_c_and_through_a_daemon_handle() {
    use embedchat::ffi::{self, chat_result::*};
    let ca = TestCa::new();
    ca.install_leaf();
    let sock = ca.dir.join("ctl.sock");
    std::fs::set_permissions(&ca.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let cfg =
        json!({"listen": "127.0.0.1:0", "tls": ca.tls_config(), "control_socket": sock.to_str().unwrap()});
    let cfg = std::ffi::CString::new(cfg.to_string()).unwrap();
    // SAFETY: NUL-terminated strings that outlive the calls; the handle is freed once, at the end.
    unsafe {
        let e = ffi::chat_start(cfg.as_ptr());
        assert!(!e.is_null(), "{}", last_error());
        ca.install_leaf();
        assert_eq!(ffi::chat_reload_tls(e), CHAT_OK as i32);
        write(&ca.path("cert.pem"), "garbage\n");
        assert_eq!(ffi::chat_reload_tls(e), CHAT_ERR_CONFIG as i32);
        assert!(last_error().contains("`tls.cert`"), "{}", last_error());
        assert_eq!(ffi::chat_reload_tls(std::ptr::null_mut()), CHAT_ERR_NULL as i32);

        // A renewal hook in another process asks the daemon to reload.
        let daemon = embedchat::Engine::connect(sock.to_str().unwrap()).unwrap();
        let err = daemon.reload_tls().unwrap_err();
        assert_eq!(err.kind(), embedchat::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("`tls.cert`"), "{err}");
        ca.install_leaf();
        daemon.reload_tls().unwrap();

        assert_eq!(ffi::chat_stop(e), CHAT_OK as i32);
        assert_eq!(ffi::chat_reload_tls(e), CHAT_ERR_STOPPED as i32);
        ffi::chat_free(e);
    }
    let plain = std::ffi::CString::new(r#"{"listen": "127.0.0.1:0"}"#).unwrap();
    // SAFETY: as above.
    unsafe {
        let e = ffi::chat_start(plain.as_ptr());
        assert_eq!(ffi::chat_reload_tls(e), CHAT_ERR_INVALID as i32);
        assert!(last_error().contains("no `tls` key"), "{}", last_error());
        ffi::chat_free(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_stops_reading_gets_the_rest_once_it_reads_again() {
    // More than loopback's socket buffers hold, so the session's writes over TLS really wait for
    // the socket (rustls keeps records back) and must be woken when it drains.
    let ca = TestCa::new();
    ca.install_leaf();
    let e = engine(json!({"tls": ca.tls_config(), "slow_consumer": "drop_oldest", "history_size": 0}));
    let mut ws = wss(&e, "name=sleepy", ca.default_client()).await;
    welcomed(&mut ws).await;
    let text = "y".repeat(1000);
    for _ in 0..20_000 {
        e.broadcast(Some("lobby"), &text).unwrap();
    }
    e.broadcast(Some("lobby"), "last").unwrap();
    let mut got = 0;
    loop {
        let m = recv_type(&mut ws, "message").await;
        got += 1;
        if m["text"] == "last" {
            break;
        }
    }
    assert!(e.stats().messages_dropped > 0, "the backlog overflowed: the socket was full");
    assert!(got > 1, "{got}");
    // And the connection is still good for more.
    e.broadcast(Some("lobby"), "after").unwrap();
    assert_eq!(recv_type(&mut ws, "message").await["text"], "after");
}
