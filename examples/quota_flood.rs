//! Issue 10, item 3, tried as an attacker would: one caller sends a flood of distinct user ids
//! (more than the in-process quota store tracks for it), then another caller asks for
//! signatures for new users. Run by `scripts/attack-quota.sh` against a release build; prints
//! whether the service kept serving the real caller, and exits 1 if it did not.
//!
//! `quota_flood <http://addr> <flood users>`; tokens from FLOOD_TOKEN and VICTIM_TOKEN.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vod_signer_client::{BearerToken, Error, IssueRequest, RetryPolicy, SignerClient};

/// Calls in flight at once from the flooding caller.
const CONCURRENCY: usize = 64;
/// New users the real caller asks for once the flood is over.
const VICTIM_CALLS: usize = 20;

fn client(endpoint: &str, token_var: &str) -> Result<SignerClient, String> {
    let token = std::env::var(token_var).map_err(|_| format!("{token_var} is not set"))?;
    SignerClient::builder()
        .endpoint(endpoint)
        .bearer_token(BearerToken::new(token).map_err(|e| e.to_string())?)
        .retry_policy(RetryPolicy::never())
        .build()
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(endpoint), Some(users)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok()))
    else {
        eprintln!("usage: quota_flood <http://addr> <flood users>");
        std::process::exit(2);
    };
    let users: u64 = users;
    let (flood, victim) = match (
        client(endpoint, "FLOOD_TOKEN"),
        client(endpoint, "VICTIM_TOKEN"),
    ) {
        (Ok(f), Ok(v)) => (f, v),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("quota_flood: {e}");
            std::process::exit(2);
        }
    };

    let next = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (flood, next, issued, refused) =
            (flood.clone(), next.clone(), issued.clone(), refused.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= users {
                    return;
                }
                match flood
                    .issue(IssueRequest::for_user(format!("flood-{n}")))
                    .await
                {
                    Ok(_) => issued.fetch_add(1, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    println!(
        "flood: {users} distinct users in {:.1?}: {} issued, {} refused",
        started.elapsed(),
        issued.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );

    // Windows are one minute and the store forgets past ones: a flood slower than the bound
    // per minute never fills it, and then says nothing about the fix.
    if refused.load(Ordering::Relaxed) == 0 {
        println!(
            "inconclusive: the flood never filled the caller's table within one minute (too slow); use a release build or more users"
        );
        std::process::exit(3);
    }

    let mut failures = Vec::new();
    for i in 0..VICTIM_CALLS {
        let request =
            IssueRequest::for_user(format!("real-user-{i}")).deadline(Duration::from_secs(5));
        if let Err(error) = victim.issue(request).await {
            failures.push(error);
        }
    }
    if failures.is_empty() {
        println!(
            "victim: {VICTIM_CALLS}/{VICTIM_CALLS} new users served: the service kept serving real callers"
        );
    } else {
        let unavailable = failures
            .iter()
            .filter(|e| matches!(e, Error::Unavailable { .. }))
            .count();
        println!(
            "victim: {} of {VICTIM_CALLS} refused ({unavailable} UNAVAILABLE), first: {}: the flood locked the real caller out",
            failures.len(),
            failures[0]
        );
        std::process::exit(1);
    }
}
