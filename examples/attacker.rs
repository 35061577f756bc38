//! Attacks on a running `vod-signer` (loopback only), each followed by real calls from a
//! caller that did nothing wrong; driven by `scripts/attack.sh`, not part of CI.
//!
//! - `tokenless`: 256 streams without a token (and 256 with a known token) on one connection,
//!   headers and no message, held open; then 20 real calls from another connection.
//! - `idle`: `--sockets` connections that send nothing and as many that send the HTTP/2
//!   preface and then answer nothing; real calls while they are open; prints `HELD` and keeps
//!   them open until killed (the script times the server's shutdown meanwhile).
//! - `quota`: the first caller issues to `--users` distinct `user_id`s, then the second caller
//!   asks for signatures for 20 new users of its own.
//!
//! Every line of outcome starts with `RESULT`. Tokens come from the environment
//! (`ATTACK_TOKEN`, `ATTACK_TOKEN_B`), never from the command line.
//!
//! ```text
//! ATTACK_TOKEN=… ATTACK_TOKEN_B=… cargo run --release --example attacker -- tokenless
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Request;
use tonic::transport::Channel;
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;

#[derive(Debug, Parser)]
struct Args {
    /// The server; only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: SocketAddr,
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Debug, Subcommand)]
enum Attack {
    Tokenless,
    Idle {
        #[arg(long, default_value_t = 2000)]
        sockets: usize,
    },
    Quota {
        #[arg(long, default_value_t = 210_000)]
        users: usize,
    },
}

fn token(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| format!("{var} is not set"))
}

async fn client(
    target: SocketAddr,
) -> Result<UploadSignerClient<Channel>, Box<dyn std::error::Error>> {
    let channel = Channel::from_shared(format!("http://{target}"))?
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(UploadSignerClient::new(channel))
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .expect("a token is visible ASCII");
    request.metadata_mut().insert("authorization", value);
    request
}

fn issue_request(user_id: String) -> pb::IssueSignatureRequest {
    pb::IssueSignatureRequest {
        user_id,
        validity_seconds: 600,
        params: None,
    }
}

/// `n` calls, one after the other, from a new connection; the count of each outcome.
async fn real_calls(
    target: SocketAddr,
    token: &str,
    user_prefix: &str,
    n: usize,
) -> Result<BTreeMap<String, usize>, Box<dyn std::error::Error>> {
    match client(target).await {
        Ok(mut client) => Ok(calls_on(&mut client, token, user_prefix, n).await),
        Err(error) => Ok(BTreeMap::from([(format!("Connect({error})"), n)])),
    }
}

/// `n` calls, one after the other, on `client`; the count of each outcome.
async fn calls_on(
    client: &mut UploadSignerClient<Channel>,
    token: &str,
    user_prefix: &str,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut outcomes = BTreeMap::new();
    for i in 0..n {
        let outcome = match client
            .issue_signature(authed(issue_request(format!("{user_prefix}-{i}")), token))
            .await
        {
            Ok(_) => "Ok".to_owned(),
            Err(status) => format!("{:?}", status.code()),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

fn verdict(outcomes: &BTreeMap<String, usize>, n: usize) -> &'static str {
    if outcomes.get("Ok") == Some(&n) {
        "kept serving real callers"
    } else {
        "DID NOT keep serving real callers"
    }
}

/// Opens `n` streams on one connection, headers only; returns what keeps them open.
async fn bodiless_streams(
    target: SocketAddr,
    n: usize,
    authorization: Option<&str>,
) -> Result<Vec<Box<dyn std::any::Any + Send>>, Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(target).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(connection);
    let mut client = client.ready().await?;
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for _ in 0..n {
        let mut request = http::Request::post(format!(
            "http://{target}/vod.signer.v1.UploadSigner/IssueSignature"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        // Waits while the server's max_concurrent_streams holds this connection back.
        client = match tokio::time::timeout(Duration::from_secs(2), client.clone().ready()).await {
            Ok(ready) => ready?,
            Err(_) => break,
        };
        let (response, send) = client.send_request(request.body(())?, false)?;
        held.push(Box::new((response, send)));
    }
    held.push(Box::new(client));
    Ok(held)
}

async fn tokenless(target: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let token = token("ATTACK_TOKEN")?;
    let held = bodiless_streams(target, 256, None).await?;
    let outcomes = real_calls(target, &token, "tokenless-victim", 20).await?;
    println!(
        "RESULT item=1 attack=\"256 bodiless streams without a token on one connection\" real_calls={outcomes:?} verdict=\"{}\"",
        verdict(&outcomes, 20)
    );
    drop(held);
    let bearer = format!("Bearer {token}");
    let held = bodiless_streams(target, 256, Some(&bearer)).await?;
    let outcomes = real_calls(target, &token, "slow-body-victim", 20).await?;
    println!(
        "RESULT item=1 attack=\"256 bodiless streams with a known token on one connection\" real_calls={outcomes:?} verdict=\"{}\"",
        verdict(&outcomes, 20)
    );
    drop(held);
    Ok(())
}

async fn idle(target: SocketAddr, sockets: usize) -> Result<(), Box<dyn std::error::Error>> {
    let token = token("ATTACK_TOKEN")?;
    // A real caller's connection, open before the attack (as a BFF's would be).
    let mut established = client(target).await?;
    let mut held = Vec::with_capacity(2 * sockets);
    let mut failed = 0;
    for i in 0..2 * sockets {
        match TcpStream::connect(target).await {
            Ok(mut tcp) => {
                if i % 2 == 1 {
                    // The preface and an empty SETTINGS frame, then nothing, not even PING acks.
                    let _ = tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                    let _ = tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                }
                held.push(tcp);
            }
            Err(_) => failed += 1,
        }
    }
    let started = Instant::now();
    let outcomes = calls_on(&mut established, &token, "idle-victim", 20).await;
    println!(
        "RESULT item=2 attack=\"{sockets} silent and {sockets} preface-only connections ({failed} connects failed)\" real_calls_on_an_established_connection={outcomes:?} in_ms={} verdict=\"{}\"",
        started.elapsed().as_millis(),
        verdict(&outcomes, 20)
    );
    let started = Instant::now();
    let outcomes = real_calls(target, &token, "idle-newcomer", 20).await?;
    println!(
        "RESULT item=2 real_calls_on_a_new_connection={outcomes:?} in_ms={} verdict=\"{}\"",
        started.elapsed().as_millis(),
        verdict(&outcomes, 20)
    );
    println!("HELD");
    // Kept open until the script kills this process.
    std::future::pending::<()>().await;
    drop(held);
    Ok(())
}

async fn quota(target: SocketAddr, users: usize) -> Result<(), Box<dyn std::error::Error>> {
    let flooder = token("ATTACK_TOKEN")?;
    let victim = token("ATTACK_TOKEN_B")?;
    let started = Instant::now();
    const WORKERS: usize = 64;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mut client = client(target).await?;
        let flooder = flooder.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
            for i in (w..users).step_by(WORKERS) {
                let outcome = match client
                    .issue_signature(authed(issue_request(format!("flood-{i}")), &flooder))
                    .await
                {
                    Ok(_) => "Ok".to_owned(),
                    Err(status) => format!("{:?}", status.code()),
                };
                *outcomes.entry(outcome).or_default() += 1;
            }
            outcomes
        }));
    }
    let mut flood: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        for (outcome, n) in task.await? {
            *flood.entry(outcome).or_default() += n;
        }
    }
    let outcomes = real_calls(target, &victim, "victim-user", 20).await?;
    println!(
        "RESULT item=3 attack=\"one caller issued to {users} distinct users in {} s\" flood={flood:?} other_caller_new_users={outcomes:?} verdict=\"{}\"",
        started.elapsed().as_secs(),
        verdict(&outcomes, 20)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !args.target.ip().is_loopback() {
        return Err("only loopback targets are attacked".into());
    }
    match args.attack {
        Attack::Tokenless => tokenless(args.target).await,
        Attack::Idle { sockets } => idle(args.target, sockets).await,
        Attack::Quota { users } => quota(args.target, users).await,
    }
}
