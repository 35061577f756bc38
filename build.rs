//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no `protoc` is needed on the
//! machine) and generates the tonic server and client. The file descriptor set is also written
//! to `OUT_DIR` so the server can answer reflection requests from the proto it was built from.

use std::path::PathBuf;

use protox::prost::Message;

const PROTOS: &[&str] = &["proto/vod/signer/v1/signer.proto"];
const INCLUDES: &[&str] = &["proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, INCLUDES)?;
    std::fs::write(
        out_dir.join("vod_signer_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
