//! `https://` endpoints: a private CA, a wrong CA, and mutual TLS, against a TLS stand-in
//! service with certificates made for the test.

use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_server::{UploadSigner, UploadSignerServer};
use vod_signer_client::{BearerToken, Error, SignerClient, SignerClientBuilder, Verification};

/// Answers every VerifySignature with MALFORMED; enough to see that a call got through.
struct Fixed;

#[tonic::async_trait]
impl UploadSigner for Fixed {
    async fn issue_signature(
        &self,
        _: Request<pb::IssueSignatureRequest>,
    ) -> Result<Response<pb::IssueSignatureResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn verify_signature(
        &self,
        _: Request<pb::VerifySignatureRequest>,
    ) -> Result<Response<pb::VerifySignatureResponse>, Status> {
        Ok(Response::new(pb::VerifySignatureResponse {
            valid: false,
            failure: pb::VerifyFailure::Malformed as i32,
            detail: "fixed".into(),
            ..Default::default()
        }))
    }

    async fn issue_signature_batch(
        &self,
        _: Request<pb::IssueSignatureBatchRequest>,
    ) -> Result<Response<pb::IssueSignatureBatchResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let ca = ca("vod-signer test CA");
    Pki {
        ca_pem: ca.pem(),
        server: leaf(&ca, "signer.test"),
        client: leaf(&ca, "backend.test"),
    }
}

/// Serves [`Fixed`] over TLS; with `client_ca`, clients must present a certificate it signed.
async fn tls_server(pki: &Pki, client_ca: Option<&str>) -> String {
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server.0, &pki.server.1));
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(UploadSignerServer::new(Fixed))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    format!("https://{addr}")
}

fn builder(endpoint: &str) -> SignerClientBuilder {
    SignerClient::builder()
        .endpoint(endpoint)
        .bearer_token(BearerToken::new("tls-token").unwrap())
        // The endpoint is an IP address; the certificate names the service.
        .tls_domain_name("signer.test")
        .default_deadline(Duration::from_secs(3))
}

#[tokio::test]
async fn a_private_ca_is_trusted() {
    let pki = pki();
    let endpoint = tls_server(&pki, None).await;
    let client = builder(&endpoint)
        .tls_ca_pem(pki.ca_pem.clone())
        .build()
        .unwrap();
    let verdict = client.verify("x").await.unwrap();
    assert!(matches!(verdict, Verification::Invalid { .. }));
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_a_transport_error_and_not_retried() {
    let pki = pki();
    let endpoint = tls_server(&pki, None).await;
    let client = builder(&endpoint)
        .tls_ca_pem(ca("some other CA").pem())
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.verify("x").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().starts_with("transport: "), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    // Not retried until the deadline: a certificate problem does not go away by waiting.
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let pki = pki();
    let endpoint = tls_server(&pki, Some(&pki.ca_pem)).await;

    let with_identity = builder(&endpoint)
        .tls_ca_pem(pki.ca_pem.clone())
        .tls_client_identity(pki.client.0.clone(), pki.client.1.clone())
        .build()
        .unwrap();
    with_identity.verify("x").await.unwrap();

    let without = builder(&endpoint)
        .tls_ca_pem(pki.ca_pem.clone())
        .default_deadline(Duration::from_millis(800))
        .build()
        .unwrap();
    let err = without.verify("x").await.unwrap_err();
    // The server refuses the handshake; how that surfaces depends on when the client notices
    // (TLS 1.3 finishes the client's side first), but it is never an answer.
    assert!(
        matches!(
            err,
            Error::Transport { .. } | Error::Unavailable { .. } | Error::DeadlineExceeded { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn pem_without_a_certificate_is_refused_at_build() {
    let err = builder("https://127.0.0.1:1")
        .tls_ca_pem("not a certificate")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");

    let pki = pki();
    let err = builder("https://127.0.0.1:1")
        .tls_ca_pem(pki.ca_pem.clone())
        .tls_client_identity(pki.client.0.clone(), "no key here")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    // The key material never appears in the message.
    assert!(!err.to_string().contains("no key here"), "{err}");
}
