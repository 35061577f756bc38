//! Configuration reload: key rotation, callers and policies, failed reloads that change
//! nothing; through the reload handle in-process, and through a real SIGHUP to a real
//! `vod-signer serve` process.

use std::time::{Duration, Instant};

use crate::support::ops::*;
use crate::support::process::{KillOnDrop, connect_when_up, free_port};
use tonic::Code;

#[tokio::test]
async fn a_reload_rotates_the_signing_key_and_old_signatures_still_verify() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;
    let before = issue(&mut client, "alice").await.unwrap();
    assert_eq!(before.secret_id, KEY_A.0);

    // Rotation: B signs from now on, A stays listed to verify what it signed.
    dir.write_config(&config_toml(KEY_B, true, "", ""));
    server.reload.reload().await.expect("the reload succeeds");
    let after = issue(&mut client, "alice").await.unwrap();
    assert_eq!(after.secret_id, KEY_B.0);
    assert!(verify(&mut client, &before.signature).await.valid);
    assert!(verify(&mut client, &after.signature).await.valid);

    // Retirement: once A is gone from the file, its signatures no longer verify.
    dir.write_config(&config_toml(KEY_B, false, "", ""));
    server.reload.reload().await.unwrap();
    let retired = verify(&mut client, &before.signature).await;
    assert!(!retired.valid);

    let text = server.metrics().await;
    assert_eq!(
        series(&text, "vod_signer_config_reloads_total{result=\"ok\"}"),
        Some(2.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failed_reload_changes_nothing_and_keeps_serving() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;

    // Unparseable file.
    dir.write_config("this is [not toml");
    let error = server.reload.reload().await.unwrap_err().to_string();
    assert!(error.contains("line 1"), "{error}");
    // A secret file that is missing: B would become active, but nothing changes.
    std::fs::remove_file(dir.path().join(KEY_B.0)).unwrap();
    dir.write_config(&config_toml(KEY_B, true, "", ""));
    let error = server.reload.reload().await.unwrap_err().to_string();
    assert!(error.contains("secret_key_file"), "{error}");
    assert!(!error.contains(KEY_A.1) && !error.contains(KEY_B.1));
    // A caller table the checks refuse, next to an otherwise valid change of key.
    dir.write(KEY_B.0, KEY_B.1);
    dir.write_config(&config_toml(
        KEY_B,
        true,
        "",
        "issue_per_user_per_minute = 0",
    ));
    assert!(server.reload.reload().await.is_err());

    let issued = issue(&mut client, "alice").await.unwrap();
    assert_eq!(
        issued.secret_id, KEY_A.0,
        "a failed reload must not switch keys"
    );
    assert!(verify(&mut client, &issued.signature).await.valid);
    let text = server.metrics().await;
    assert_eq!(
        series(&text, "vod_signer_config_reloads_total{result=\"failed\"}"),
        Some(3.0)
    );
    assert_eq!(
        series(&text, "vod_signer_config_reloads_total{result=\"ok\"}"),
        Some(0.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reload_replaces_callers_and_their_policies() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;
    issue(&mut client, "alice").await.unwrap();

    // The caller's token changes and it loses the right to issue.
    let toml = config_toml(KEY_A, false, "", "can_issue = false")
        .replace(&sha256_hex(TOKEN), &sha256_hex(OTHER_TOKEN));
    dir.write_config(&toml);
    server.reload.reload().await.unwrap();
    let old_token = issue(&mut client, "alice").await.unwrap_err();
    assert_eq!(old_token.code(), Code::Unauthenticated);
    let denied = client
        .issue_signature(authed(issue_request("alice"), OTHER_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn sighup_makes_a_running_process_reload_its_file() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let port = free_port();
    let log_path = dir.path().join("serve.log");
    let child = KillOnDrop::serve(
        &dir.config_path(),
        port,
        std::fs::File::create(&log_path).unwrap(),
    );

    let mut client = vod_signer::proto::v1::upload_signer_client::UploadSignerClient::new(
        connect_when_up(port).await,
    );
    let before = issue(&mut client, "alice").await.unwrap();
    assert_eq!(before.secret_id, KEY_A.0);

    dir.write_config(&config_toml(KEY_B, true, "", ""));
    child.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let issued = issue(&mut client, "alice").await.unwrap();
        if issued.secret_id == KEY_B.0 {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not switch the key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(verify(&mut client, &before.signature).await.valid);

    // A broken file on the next SIGHUP: the process logs it and keeps serving with B.
    dir.write_config("[[keys]]\nsecret_id = ");
    child.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("configuration reload failed")
    {
        assert!(
            Instant::now() < deadline,
            "the failed reload was not logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(issue(&mut client, "bob").await.unwrap().secret_id, KEY_B.0);

    child.signal("TERM");
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("configuration reloaded"), "{log}");
    for secret in [KEY_A.1, KEY_B.1, TOKEN] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn restart_only_changes_stay_pending_on_every_later_reload() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(
        KEY_A,
        false,
        "shutdown_grace_seconds = 10",
        "",
    ));
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;

    dir.write_config(&config_toml(
        KEY_A,
        false,
        "shutdown_grace_seconds = 3\n[transport]\ncall_timeout_seconds = 7",
        "",
    ));
    let first = server.reload.reload().await.unwrap();
    assert_eq!(
        first.pending_restart,
        ["transport", "shutdown_grace_seconds"]
    );
    // A reload for something else (the key): the earlier changes still wait for a restart.
    dir.write_config(&config_toml(
        KEY_B,
        false,
        "shutdown_grace_seconds = 3\n[transport]\ncall_timeout_seconds = 7",
        "",
    ));
    let second = server.reload.reload().await.unwrap();
    assert_eq!(
        second.pending_restart,
        ["transport", "shutdown_grace_seconds"]
    );
    assert_eq!(
        issue(&mut client, "alice").await.unwrap().secret_id,
        KEY_B.0
    );
    // Back to the running values: nothing is pending any more.
    dir.write_config(&config_toml(
        KEY_B,
        false,
        "shutdown_grace_seconds = 10",
        "",
    ));
    let third = server.reload.reload().await.unwrap();
    assert!(
        third.pending_restart.is_empty(),
        "{:?}",
        third.pending_restart
    );
    server.stop().await;
}
