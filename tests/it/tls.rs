//! TLS and mTLS against the real server, with certificates made at test time; and
//! certificates replaced by a reload.

use crate::support::ops::*;
use vod_signer::config::Config;

/// A config dir with a server certificate from `ca`, and `client_ca` if given.
fn tls_dir(ca: &TestCa, client_ca: Option<&TestCa>) -> ConfigDir {
    let dir = ConfigDir::new();
    let (cert, key) = ca.leaf("localhost");
    dir.write("server.pem", &cert);
    dir.write("server.key", &key);
    let mut tls = "[tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\n".to_owned();
    if let Some(client_ca) = client_ca {
        dir.write("clients.pem", &client_ca.pem());
        tls.push_str("client_ca_file = \"clients.pem\"\n");
    }
    // `[tls]` must come after the top-level keys and before the arrays of tables.
    dir.write_config(&config_toml(KEY_A, false, &tls, ""));
    dir
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let ca = TestCa::new("server CA");
    let dir = tls_dir(&ca, None);
    let server = start_metered(dir.load()).await;

    let mut client = tls_client(server.addr, &ca.pem(), None).await.unwrap();
    let issued = issue(&mut client, "alice").await.unwrap();
    assert_eq!(issued.secret_id, KEY_A.0);

    // A plaintext HTTP/2 client gets no gRPC answer from a TLS port.
    let plaintext = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2))
        .connect_lazy();
    let mut plaintext =
        vod_signer::proto::v1::upload_signer_client::UploadSignerClient::new(plaintext);
    assert!(issue(&mut plaintext, "alice").await.is_err());

    // A client that does not trust the server's CA refuses the handshake.
    let stranger = TestCa::new("another CA");
    let refused = match tls_client(server.addr, &stranger.pem(), None).await {
        Err(_) => true,
        Ok(mut client) => issue(&mut client, "alice").await.is_err(),
    };
    assert!(refused);
    server.stop().await;
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let dir = tls_dir(&server_ca, Some(&client_ca));
    let server = start_metered(dir.load()).await;

    let good = client_ca.leaf("backend.internal");
    let mut client = tls_client(server.addr, &server_ca.pem(), Some(&good))
        .await
        .unwrap();
    assert!(issue(&mut client, "alice").await.is_ok());

    // No certificate: the server ends the handshake, so no call gets through. (With TLS 1.3
    // the client may believe it connected and learn of the refusal on its first call.)
    let without = match tls_client(server.addr, &server_ca.pem(), None).await {
        Err(_) => None,
        Ok(mut client) => Some(issue(&mut client, "alice").await),
    };
    assert!(
        !matches!(without, Some(Ok(_))),
        "a client without a certificate was served"
    );

    // A certificate from another CA is refused the same way.
    let stranger = TestCa::new("stranger CA").leaf("backend.internal");
    let foreign = match tls_client(server.addr, &server_ca.pem(), Some(&stranger)).await {
        Err(_) => None,
        Ok(mut client) => Some(issue(&mut client, "alice").await),
    };
    assert!(
        !matches!(foreign, Some(Ok(_))),
        "a client certificate from another CA was accepted"
    );
    // Both refusals are visible to the operator. The server counts a refusal after sending
    // its alert, so the client may learn of it first: poll briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = server.metrics().await;
        let refused = series(
            &text,
            "vod_signer_tls_handshake_failures_total{reason=\"error\"}",
        );
        if refused.is_some_and(|n| n >= 2.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_reload_replaces_the_server_certificate_for_new_connections() {
    let old_ca = TestCa::new("old CA");
    let dir = tls_dir(&old_ca, None);
    let server = start_metered(dir.load()).await;
    assert!(
        issue(
            &mut tls_client(server.addr, &old_ca.pem(), None).await.unwrap(),
            "alice"
        )
        .await
        .is_ok()
    );

    let new_ca = TestCa::new("new CA");
    let (cert, key) = new_ca.leaf("localhost");
    dir.write("server.pem", &cert);
    dir.write("server.key", &key);
    server.reload.reload().await.expect("the reload succeeds");

    let mut client = tls_client(server.addr, &new_ca.pem(), None).await.unwrap();
    assert!(issue(&mut client, "alice").await.is_ok());
    let old_trust = match tls_client(server.addr, &old_ca.pem(), None).await {
        Err(_) => true,
        Ok(mut client) => issue(&mut client, "alice").await.is_err(),
    };
    assert!(old_trust, "new connections still got the old certificate");
    server.stop().await;
}

#[test]
fn tls_files_are_checked_when_the_configuration_loads() {
    let ca = TestCa::new("CA");
    let other = TestCa::new("other");
    let dir = tls_dir(&ca, None);

    // A key that does not belong to the certificate.
    let (_, wrong_key) = other.leaf("localhost");
    dir.write("server.key", &wrong_key);
    let error = Config::load(&dir.config_path()).unwrap_err().to_string();
    assert!(error.starts_with("tls"), "{error}");

    // A key file that is not PEM: the error names the file, never its contents.
    dir.write("server.key", "not-pem-secret-material");
    let error = Config::load(&dir.config_path()).unwrap_err().to_string();
    assert!(error.contains("tls.key_file"), "{error}");
    assert!(!error.contains("secret-material"), "{error}");

    // A missing certificate file.
    std::fs::remove_file(dir.path().join("server.pem")).unwrap();
    let error = Config::load(&dir.config_path()).unwrap_err().to_string();
    assert!(error.contains("tls.cert_file"), "{error}");
}
