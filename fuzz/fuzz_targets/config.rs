//! `Config::from_toml_str` on arbitrary text: never panics, and a refused configuration's
//! message never repeats what was written in a `token_sha256` or `redis_url` value (either
//! could be a secret pasted into the wrong key).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use vod_signer::config::Config;

/// A directory with one readable secret, so configurations can get past key loading.
static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "fuzz-only-key").unwrap();
    dir
});

/// The marker a fuzzed value must contain to be checked for leaks: long and unusual enough
/// that an error message never contains it by chance.
const MARKER: &str = "LEAKCANARY";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, DIR.path()) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(error) => {
            let message = error.to_string();
            for line in text.lines() {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let key = key.trim();
                if (key == "token_sha256" || key == "redis_url") && value.contains(MARKER) {
                    assert!(
                        !message.contains(MARKER),
                        "the error repeats a {key} value: {message}"
                    );
                }
            }
        }
    }
});
