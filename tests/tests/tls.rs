//! The server terminating TLS itself (`--tls-cert` / `--tls-key`) and the SDK speaking
//! `https://` and `wss://` to it, with certificates of a CA each test makes (rcgen): the
//! SDK trusts the server only with that CA as its extra CA; SIGHUP swaps the certificate
//! without dropping anyone (and, without TLS, is only logged); bad certificate files stop the start naming the file.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use protocol::{
    auth::RegisterRequest, gateway::Event, groups::CreateGroupRequest, messages::SendMessageRequest,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sohbet_client::{Client, ClientError, Tls};
use sohbet_server::tls::CertStore;
use sohbet_tests::{gateway_of, sdk_sign_up, services::free_port, Gateway, GatewayEvent, TestApp};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::mpsc,
};
use tokio_tungstenite::{Connector, MaybeTlsStream};

const SERVER: &str = env!("CARGO_BIN_EXE_sohbet-server-process");

/// A certificate authority of the test's own.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate the CA issued, written as PEM files.
struct Issued {
    der: Vec<u8>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Sohbet test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost, written to `cert` and `key`.
    fn issue(&self, cert: &Path, key: &Path) -> Issued {
        let private = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
        let issued = params
            .signed_by(&private, &self.issuer)
            .expect("server certificate");
        std::fs::write(cert, issued.pem()).expect("write certificate");
        std::fs::write(key, private.serialize_pem()).expect("write key");
        Issued {
            der: issued.der().to_vec(),
        }
    }

    /// The SDK's trust: the system's roots plus this CA, from a file as a user would give it.
    fn trust(&self, dir: &Path) -> Tls {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).expect("write CA");
        Tls::with_extra_ca(&path).expect("extra CA")
    }
}

fn temp_dir() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sohbet-tls-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A server (in this process) with a certificate of `ca`'s.
async fn tls_app(ca: &TestCa, dir: &Path) -> TestApp {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    ca.issue(&cert, &key);
    let store = Arc::new(CertStore::load(&cert, &key).expect("certificate loads"));
    TestApp::spawn_with(|s| s.tls = Some(store)).await
}

/// Waits for the message `content` on `gw`; fails if the connection dropped first.
async fn delivered_without_reconnecting(gw: &mut Gateway, content: &str) {
    gw.expect(content, |e| match e {
        GatewayEvent::Event(Event::MessageCreated { message }) if message.content == content => {
            Some(())
        }
        GatewayEvent::Disconnected { code } => panic!("the gateway dropped ({code:?})"),
        _ => None,
    })
    .await;
}

/// The certificate a new `wss://` connection to `addr` is served (DER). Without session
/// resumption: a resumed session shows the certificate of the session it resumes.
async fn served_certificate(addr: &str, tls: &Tls) -> Vec<u8> {
    let mut config = rustls::ClientConfig::clone(&tls.config());
    config.resumption = rustls::client::Resumption::disabled();
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://{addr}/api/gateway"),
        None,
        false,
        Some(Connector::Rustls(Arc::new(config))),
    )
    .await
    .expect("a wss connection trusting the CA");
    match socket.get_ref() {
        MaybeTlsStream::Rustls(stream) => stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server sent a certificate")
            .to_vec(),
        _ => panic!("not a TLS connection"),
    }
}

#[tokio::test]
async fn the_sdk_registers_logs_in_and_sends_over_https_and_wss_with_an_extra_ca() {
    let (ca, dir) = (TestCa::new(), temp_dir());
    let app = tls_app(&ca, &dir).await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let anon = Client::with_tls(app.base.clone(), ca.trust(&dir)).expect("client");
    assert!(anon.gateway_url().starts_with("wss://"));

    let ada = sdk_sign_up(&anon, "ada").await;
    let group = ada
        .create_group(&CreateGroupRequest {
            name: "over tls".into(),
            description: None,
        })
        .await
        .expect("create a group over https")
        .group
        .group_id;
    let mut gw = gateway_of(&ada);
    gw.ready().await;
    ada.send_message(
        group,
        &SendMessageRequest {
            content: "sealed".into(),
            nonce: None,
        },
    )
    .await
    .expect("send over https");
    delivered_without_reconnecting(&mut gw, "sealed").await;
}

#[tokio::test]
async fn a_client_without_the_ca_is_refused_with_a_tls_error() {
    let (ca, dir) = (TestCa::new(), temp_dir());
    let app = tls_app(&ca, &dir).await;

    let untrusting = Client::new(app.base.clone()).expect("client");
    let err = untrusting
        .register(&RegisterRequest {
            username: "eve".into(),
            email: "eve@example.org".into(),
            password: "a long enough password".into(),
            display_name: None,
        })
        .await
        .expect_err("the certificate is not trusted");
    match &err {
        ClientError::Tls(message) => assert!(message.contains("UnknownIssuer"), "{message}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert_eq!(serde_json::to_value(&err).expect("json")["code"], "tls");
    // Nothing was written: with the CA, the name is still free.
    let trusting = Client::with_tls(app.base.clone(), ca.trust(&dir)).expect("client");
    sdk_sign_up(&trusting, "eve").await;

    // An extra CA file that is not a certificate is refused, naming the file.
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    match Tls::with_extra_ca(&junk) {
        Err(ClientError::Tls(message)) => {
            assert!(message.contains(&junk.display().to_string()), "{message}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_cleanly_and_the_server_keeps_serving() {
    let (ca, dir) = (TestCa::new(), temp_dir());
    let app = tls_app(&ca, &dir).await;

    let plain = reqwest::Client::new()
        .get(format!("http://{}/api/health", app.addr))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");
    let plain_ws = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://{}/api/gateway", app.addr)),
    )
    .await
    .expect("the server answers a plain ws handshake at once");
    assert!(plain_ws.is_err(), "plain ws connected");

    let trusting = Client::with_tls(app.base.clone(), ca.trust(&dir)).expect("client");
    sdk_sign_up(&trusting, "still").await;
}

/// A `sohbet-server` process on the database and Redis prefix of `app`, serving TLS when
/// given a certificate, its key and the trust to reach it.
struct ServerProcess {
    child: tokio::process::Child,
    addr: String,
    logs: mpsc::UnboundedReceiver<String>,
}

impl ServerProcess {
    async fn start(app: &TestApp, tls: Option<(&Path, &Path, &Tls)>) -> Self {
        let port = free_port();
        let mut cmd = tokio::process::Command::new(SERVER);
        cmd.env("DATABASE_URL", app.settings.database_url.expose())
            .env("REDIS_URL", app.settings.redis_url.expose())
            .env("SOHBET_REDIS_PREFIX", &app.prefix)
            .env("SOHBET_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((cert, key, _)) = tls {
            cmd.env("SOHBET_TLS_CERT", cert).env("SOHBET_TLS_KEY", key);
        }
        let mut child = cmd.spawn().expect("start a server process");
        let (tx, logs) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        let addr = format!("127.0.0.1:{port}");
        let client = match tls {
            Some((_, _, tls)) => Client::with_tls(format!("https://{addr}"), tls.clone()),
            None => Client::new(format!("http://{addr}")),
        }
        .expect("client");
        // Up once it answers; it handles SIGHUP from before it serves.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while client
            .request::<(), serde_json::Value>(reqwest::Method::GET, "/api/health/live", None)
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server process did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, addr, logs }
    }

    fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn hang_up(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for a log line containing `text`.
    async fn logged(&mut self, text: &str) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.logs.recv().await {
                if line.contains(text) {
                    return;
                }
            }
            panic!("the server's log ended before {text:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no log line {text:?}"));
    }
}

#[tokio::test]
async fn sighup_serves_a_renewed_certificate_to_new_connections_and_keeps_open_ones() {
    let (ca, dir) = (TestCa::new(), temp_dir());
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first = ca.issue(&cert, &key);
    let tls = ca.trust(&dir);
    let app = TestApp::spawn().await;
    let mut server = ServerProcess::start(&app, Some((&cert, &key, &tls))).await;
    let ada = sdk_sign_up(
        &Client::with_tls(server.base(), tls.clone()).expect("client"),
        "ada",
    )
    .await;
    let group = ada
        .create_group(&CreateGroupRequest {
            name: "renewals".into(),
            description: None,
        })
        .await
        .expect("group")
        .group
        .group_id;
    let mut gw = gateway_of(&ada);
    gw.ready().await;
    assert_eq!(served_certificate(&server.addr, &tls).await, first.der);

    // Renewal: new files in place, then SIGHUP (as certbot's deploy hook does).
    let second = ca.issue(&cert, &key);
    assert_ne!(first.der, second.der);
    server.hang_up();
    server.logged("TLS certificate reloaded").await;
    assert_eq!(served_certificate(&server.addr, &tls).await, second.der);
    // The connection opened before the reload carries on.
    ada.send_message(
        group,
        &SendMessageRequest {
            content: "after the renewal".into(),
            nonce: None,
        },
    )
    .await
    .expect("send");
    delivered_without_reconnecting(&mut gw, "after the renewal").await;

    // A renewal that went wrong (a half-written file): the server keeps the certificate it
    // has and says so.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ntrunc").expect("write");
    server.hang_up();
    server.logged("TLS certificate not reloaded").await;
    assert_eq!(served_certificate(&server.addr, &tls).await, second.der);
    assert!(
        server.child.try_wait().expect("status").is_none(),
        "the server exited"
    );
}

#[tokio::test]
async fn missing_or_invalid_certificate_files_stop_the_start_naming_the_file() {
    let (ca, dir) = (TestCa::new(), temp_dir());
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    ca.issue(&cert, &key);
    let (other_cert, other_key) = (dir.join("other.pem"), dir.join("other-key.pem"));
    ca.issue(&other_cert, &other_key);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not PEM at all\n").expect("write");
    let missing = dir.join("missing.pem");

    let start = |cert: Option<&Path>, key: Option<&Path>| {
        let mut cmd = std::process::Command::new(SERVER);
        cmd.env_clear()
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
            .env("REDIS_URL", "redis://127.0.0.1:1/");
        if let Some(cert) = cert {
            cmd.env("SOHBET_TLS_CERT", cert);
        }
        if let Some(key) = key {
            cmd.env("SOHBET_TLS_KEY", key);
        }
        let out = cmd.output().expect("run the server");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases: [(Option<&Path>, Option<&Path>, String); 5] = [
        (Some(&missing), Some(&key), missing.display().to_string()),
        (Some(&junk), Some(&key), junk.display().to_string()),
        (Some(&cert), Some(&junk), junk.display().to_string()),
        (Some(&cert), Some(&other_key), "does not belong".to_owned()),
        (
            Some(&cert),
            None,
            "set both `tls_cert` and `tls_key`".to_owned(),
        ),
    ];
    for (cert, key, says) in cases {
        let (code, stderr) = start(cert, key);
        assert_eq!(code, Some(2), "{cert:?} {key:?}: {stderr}");
        assert!(stderr.contains(&says), "{cert:?} {key:?}: {stderr}");
    }
}

#[tokio::test]
async fn sighup_without_tls_is_logged_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let mut server = ServerProcess::start(&app, None).await;
    let base = format!("http://{}", server.addr);
    let ada = sdk_sign_up(&Client::new(base.clone()).expect("client"), "ada").await;
    let group = ada
        .create_group(&CreateGroupRequest {
            name: "hang-ups".into(),
            description: None,
        })
        .await
        .expect("group")
        .group
        .group_id;
    let mut gw = gateway_of(&ada);
    gw.ready().await;

    // `systemctl reload`, or a hang-up from a terminal the server was started in.
    server.hang_up();
    server.logged("no TLS certificate to reload").await;
    server.hang_up();
    server.logged("no TLS certificate to reload").await;
    assert!(
        server.child.try_wait().expect("status").is_none(),
        "SIGHUP ended the server"
    );
    // Open connections and new requests carry on.
    ada.send_message(
        group,
        &SendMessageRequest {
            content: "still here".into(),
            nonce: None,
        },
    )
    .await
    .expect("send after SIGHUP");
    delivered_without_reconnecting(&mut gw, "still here").await;
}
