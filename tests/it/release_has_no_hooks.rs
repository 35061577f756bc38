//! The release binary carries no test hooks: the `testsuite` feature (the manual clock, the
//! issue gate, the harness's listeners) must be on only where dev-dependencies are built. This
//! asks cargo which features of `vod-signer` a normal build of the workspace resolves, so a
//! default feature, or a normal dependency that turns `testsuite` on, fails here.

use std::process::Command;

/// The features of `vod-signer` that `cargo tree` resolves with `edges` (e.g. `normal,build`).
fn resolved_features(edges: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--workspace",
            "--offline",
            "--edges",
            &format!("{edges},features"),
            "--prefix",
            "none",
            "--format",
            "{p} [{f}]",
        ])
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut features: Vec<String> = stdout
        .lines()
        .filter(|line| line.starts_with("vod-signer v"))
        .filter_map(|line| {
            // `vod-signer v0.1.0 (/path) [default,testsuite]`, maybe followed by ` (*)`.
            let open = line.rfind('[')?;
            let close = open + line[open..].find(']')?;
            let list = &line[open + 1..close];
            Some(list.split(',').map(str::to_owned).collect::<Vec<_>>())
        })
        .flatten()
        .filter(|f| !f.is_empty())
        .collect();
    features.sort();
    features.dedup();
    features
}

#[test]
fn a_normal_build_does_not_enable_the_testsuite_feature() {
    let features = resolved_features("normal,build");
    assert!(
        !features.iter().any(|f| f == "testsuite"),
        "a normal build of the workspace turns on vod-signer's test hooks: {features:?}"
    );
}

/// The check above can only pass for the right reason if the same query does see the feature
/// where it is meant to be on: the tests, through the dev-dependency.
#[test]
fn the_query_sees_the_testsuite_feature_when_dev_dependencies_are_built() {
    let features = resolved_features("normal,build,dev");
    assert!(
        features.iter().any(|f| f == "testsuite"),
        "expected the tests' dev-dependency to enable testsuite: {features:?}"
    );
}
