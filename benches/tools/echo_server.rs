//! The transport floor for the load benchmark: a bare tonic server with the same service,
//! messages and codec as `vod-signer serve`, whose `IssueSignature` does no work at all. It
//! answers every call with one prebuilt response of a realistic size: no authentication, no
//! policy, no signing, no logging. Whatever `vod-signer` costs beyond this is its own.
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1:50061
//! ```
//!
//! Prints `listening on ADDR` once the port is open; stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_server::{UploadSigner, UploadSignerServer};

struct Echo {
    response: pb::IssueSignatureResponse,
}

#[tonic::async_trait]
impl UploadSigner for Echo {
    async fn issue_signature(
        &self,
        _request: Request<pb::IssueSignatureRequest>,
    ) -> Result<Response<pb::IssueSignatureResponse>, Status> {
        Ok(Response::new(self.response.clone()))
    }

    async fn verify_signature(
        &self,
        _request: Request<pb::VerifySignatureRequest>,
    ) -> Result<Response<pb::VerifySignatureResponse>, Status> {
        Err(Status::unimplemented(
            "the echo server only answers IssueSignature",
        ))
    }

    async fn issue_signature_batch(
        &self,
        _request: Request<pb::IssueSignatureBatchRequest>,
    ) -> Result<Response<pb::IssueSignatureBatchResponse>, Status> {
        Err(Status::unimplemented(
            "the echo server only answers IssueSignature",
        ))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:50061")
        .parse()?;
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);

    // The size of a typical issued signature (a procedure and a JSON sourceContext), so the
    // response bytes on the wire match the real service's.
    let response = pb::IssueSignatureResponse {
        signature: "A".repeat(452),
        secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE".into(),
        issued_at: 1_700_000_000,
        expires_at: 1_700_003_600,
        random: 7,
        fingerprint: "0123456789abcdef".into(),
        upload_id: String::new(),
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    Server::builder()
        .add_service(UploadSignerServer::new(Echo { response }))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}
