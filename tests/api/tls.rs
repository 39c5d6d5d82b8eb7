//! HTTPS: a self-signed certificate made in the test, HTTP/2 by ALPN and HTTP/1.1, the
//! inference API end to end over TLS, and a certificate reloaded on SIGHUP without
//! dropping open connections.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;

fn write_cert(dir: &Path) -> String {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = ck.cert.pem();
    std::fs::write(dir.join("cert.pem"), &pem).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    pem
}

fn client(trust: &str, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(trust.as_bytes()).unwrap())
        .pool_idle_timeout(Duration::from_secs(60));
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test]
async fn https_serves_http2_and_http1_and_reloads_its_certificate_on_sighup() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let config = write_process_config(dir.path(), &mock.base_url(), "info");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    ));
    std::fs::write(&config, &text).unwrap();
    let (_account, key, _store) = provision(&config).await;
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let base = format!("https://localhost:{port}");
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_instagen"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    let h2 = client(&first, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let resp = loop {
        if let Ok(r) = h2.get(format!("{base}/healthz")).send().await {
            break r;
        }
        assert!(Instant::now() < deadline, "no HTTPS server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    let h1 = client(&first, true);
    let resp = h1.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // The inference API over TLS, streaming included.
    let mut body = chat_body("over tls");
    body["stream"] = serde_json::json!(true);
    let resp = h2
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    // A plain-HTTP client gets no service on the TLS port.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    // New certificate on disk, then SIGHUP: new handshakes get it …
    let second = write_cert(dir.path());
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let fresh = client(&second, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(r) = fresh.get(format!("{base}/healthz")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // … a client that trusts only the old one cannot start a new connection …
    assert!(
        client(&first, false)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    // … and the connection opened before the reload still works.
    let resp = h2.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // Shutdown waits for requests in flight, not for the idle connections clients keep.
    let stopping = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    drop((h1, h2, fresh));
}

#[tokio::test]
async fn session_cookies_are_secure_when_served_over_https() {
    for secure in [false, true] {
        let app = TestApp::spawn_with(|c| c.server.secure_cookies = secure).await;
        let creds =
            serde_json::json!({"email": "tls@example.com", "password": "a long password here"});
        let (status, _) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/users",
            Some(ADMIN_TOKEN),
            Some(&creds),
        )
        .await;
        assert_eq!(status, 201);
        let resp = app
            .client
            .post(app.url("/api/v1/session"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
    }
}

/// An HTTPS upstream must present a certificate the platform's roots vouch for: a
/// self-signed one is refused in the handshake, before the request (its body, the
/// provider's credential) is sent, and the client gets a 502.
#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_is_refused_in_the_handshake() {
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = rustls_pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (handshakes, mut outcome) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, handshakes) = (acceptor.clone(), handshakes.clone());
            tokio::spawn(async move {
                let _ = handshakes.send(acceptor.accept(socket).await.is_ok());
            });
        }
    });

    let app = TestApp::spawn_with(|c| {
        set_base_url(&mut c.providers[0], format!("https://127.0.0.1:{port}/v1"));
    })
    .await;
    let body = openai_error(app.chat(&chat_body("x")).await, 502).await;
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    // The upstream saw a TLS handshake that our side broke off.
    let completed = tokio::time::timeout(Duration::from_secs(5), outcome.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !completed,
        "the handshake with an untrusted certificate must fail"
    );
}
