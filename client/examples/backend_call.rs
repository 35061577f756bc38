//! A backend asks the signer for one signature and checks it.
//!
//! Try it against a development server:
//!
//! ```text
//! cargo run -- serve --dev &
//! SIGNER_TOKEN=dev-token-published-not-a-secret \
//!     cargo run -p vod-signer-client --example backend_call
//! ```
//!
//! `SIGNER_ENDPOINT` overrides the endpoint (default `http://127.0.0.1:50051`).

use std::time::Duration;

use vod_signer_client::{BearerToken, IssueRequest, SignerClient, Verification};

#[tokio::main]
async fn main() {
    // The typed error's message ("unauthenticated: …") is what an operator needs to see.
    if let Err(e) = run().await {
        eprintln!("backend_call: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint =
        std::env::var("SIGNER_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    // The token comes from the environment, never from the command line or the source.
    let token = BearerToken::new(std::env::var("SIGNER_TOKEN")?)?;
    let client = SignerClient::builder()
        .endpoint(endpoint)
        .bearer_token(token)
        .default_deadline(Duration::from_secs(3))
        .build()?;

    let issued = client
        .issue(
            IssueRequest::for_user("u-1")
                .source_context("example-order-42")
                .validity(Duration::from_secs(600))
                .one_time(),
        )
        .await?;
    // Log the fingerprint, never the signature.
    println!(
        "issued {} (secretId {}, random {})",
        issued.fingerprint, issued.secret_id, issued.random
    );

    match client.verify(issued.signature.expose_secret()).await? {
        Verification::Valid(contents) => println!(
            "valid until {}",
            vod_signer_client::unix_seconds(contents.expires_at)
        ),
        Verification::Invalid {
            failure, detail, ..
        } => println!("invalid: {failure}: {detail}"),
    }
    Ok(())
}
