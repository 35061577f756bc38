//! `vod-signer issue` and `vod-signer check` against a server started in this process; the
//! token reaches the child only through its environment.

use std::net::SocketAddr;
use std::process::{Command, Output};

use tokio::net::TcpListener;
use vod_signer::testing::{TestServer, config_from, sha256_hex};

const TOKEN: &str = "cli-test-token-5f1c";
const TOKEN_VAR: &str = "VOD_SIGNER_CLI_TEST_TOKEN";

async fn start() -> TestServer {
    let text = format!(
        r#"
[[keys]]
secret_id = "AKIDcliTest"
secret_key_file = "key"

[[callers]]
name = "cli"
token_sha256 = "{}"
allowed_procedures = ["review"]
"#,
        sha256_hex(TOKEN)
    );
    TestServer::start(config_from(&text, &[("key", "cli-test-secret-key")])).await
}

/// Runs the binary with `args`, the token in its environment under `TOKEN_VAR`.
async fn run(args: Vec<String>, token: Option<&str>) -> Output {
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vod-signer"));
        command.args(&args).env_remove(TOKEN_VAR);
        if let Some(token) = token {
            command.env(TOKEN_VAR, token);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

fn args(server_addr: SocketAddr, command: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        command.to_owned(),
        "--endpoint".into(),
        format!("http://{server_addr}"),
        "--token-env".into(),
        TOKEN_VAR.into(),
        "--timeout".into(),
        "5s".into(),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_prints_a_signature_that_check_finds_valid() {
    let server = start().await;
    let out = run(
        args(
            server.addr,
            "issue",
            &[
                "--user",
                "u-1",
                "--procedure",
                "review",
                "--source-context",
                "order-7",
                "--one-time",
                "--validity",
                "600",
            ],
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let signature = text(&out.stdout).trim().to_owned();
    assert!(!signature.is_empty() && !signature.contains(' '));

    let out = run(args(server.addr, "check", &[&signature]), Some(TOKEN)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["params"]["secretId"], "AKIDcliTest");
    assert_eq!(verdict["params"]["procedure"], "review");
    assert_eq!(verdict["params"]["sourceContext"], "order-7");
    assert_eq!(verdict["params"]["oneTimeValid"], 1);
    let issued_at = verdict["params"]["currentTimeStamp"].as_i64().unwrap();
    assert_eq!(
        verdict["params"]["expireTime"].as_i64().unwrap(),
        issued_at + 600
    );

    // A signature with its MAC altered is invalid: exit 1 with the reason.
    let mut tampered = signature.clone();
    let first = if tampered.starts_with('A') { "B" } else { "A" };
    tampered.replace_range(0..1, first);
    let out = run(args(server.addr, "check", &[&tampered]), Some(TOKEN)).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["failure"], "BAD_SIGNATURE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_json_is_the_body_apps_expect() {
    let server = start().await;
    let out = run(
        args(server.addr, "issue", &["--user", "u-1", "--json"]),
        Some(TOKEN),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "ok");
    assert!(body["data"]["signature"].as_str().unwrap().len() > 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_print_the_typed_message_and_exit_non_zero() {
    let server = start().await;

    // Unknown token: refused, exit 1; the token is not echoed.
    let out = run(
        args(server.addr, "issue", &["--user", "u-1"]),
        Some("wrong-token-abc"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("vod-signer: unauthenticated: "),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-token-abc"), "{stderr}");
    assert!(out.stdout.is_empty());

    // A procedure the caller's policy does not allow: permission denied names the rule.
    let out = run(
        args(
            server.addr,
            "issue",
            &["--user", "u-1", "--procedure", "other"],
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("vod-signer: permission denied: "),
        "{stderr}"
    );
    assert!(stderr.contains("allowed_procedures"), "{stderr}");

    // Token variable not set: a setup problem, exit 2.
    let out = run(args(server.addr, "issue", &["--user", "u-1"]), None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(TOKEN_VAR));

    // Refused by the service during `check`: no verdict, exit 3 (1 would read as "invalid").
    let out = run(args(server.addr, "check", &["x"]), Some("wrong-token-abc")).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).starts_with("vod-signer: unauthenticated: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unavailable_within_the_timeout() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let mut a = args(addr, "issue", &["--user", "u-1"]);
    // A short --timeout in place of the 5 s one.
    let at = a.iter().position(|s| s == "5s").unwrap();
    a[at] = "300ms".into();
    let started = std::time::Instant::now();
    let out = run(a, Some(TOKEN)).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("vod-signer: unavailable: "));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_an_argument() {
    let out = run(
        vec![
            "issue".into(),
            "--endpoint".into(),
            "http://127.0.0.1:1".into(),
            "--token".into(),
            TOKEN.into(),
            "--user".into(),
            "u".into(),
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_of_ages_is_honoured_without_a_panic() {
    let server = start().await;
    let mut args = args(server.addr, "issue", &["--user", "u-1"]);
    let timeout = args.iter().position(|a| a == "5s").unwrap();
    args[timeout] = "500000000000y".into();
    let out = run(args, Some(TOKEN)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}
