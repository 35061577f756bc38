//! Generates the client half of `vod.signer.v1` from the workspace's `proto/` with protox, a
//! pure-Rust protobuf compiler, so building needs no `protoc` on the machine. The server crate
//! compiles the same file on its own; nothing generated is shared between the two crates.

const PROTO: &str = "../proto/vod/signer/v1/signer.proto";
const INCLUDE: &str = "../proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], [INCLUDE])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
