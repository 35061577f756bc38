//! Loads the shared vectors made by independent implementations (read-only, beside the repo).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
pub struct VectorFile {
    pub vectors: Vec<Vector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vector {
    pub name: String,
    pub producer: String,
    pub secret_key: String,
    pub args: BTreeMap<String, serde_json::Value>,
    pub original: String,
    pub signature: String,
    pub expect: String,
}

impl Vector {
    pub fn int_arg(&self, name: &str) -> i64 {
        self.args[name]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: {name} is not an integer", self.name))
    }

    /// A moment inside the vector's window.
    pub fn valid_at(&self) -> i64 {
        self.int_arg("currentTimeStamp") + 1
    }
}

pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/vod-upload-signatures.json")
}

pub fn load() -> Vec<Vector> {
    let path = path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the shared vectors must be at {} (a checkout of ../shared beside the repo): {e}",
            path.display()
        )
    });
    let file: VectorFile = serde_json::from_str(&text).expect("vector file is valid JSON");
    assert!(!file.vectors.is_empty(), "no vectors in {}", path.display());
    file.vectors
}
