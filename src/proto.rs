//! Code generated from `proto/` by `build.rs`: messages, the `UploadSigner` server trait and a
//! client, plus the encoded descriptors the reflection service serves.

/// `vod.signer.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("vod.signer.v1");
}

/// The encoded `FileDescriptorSet` of every file in `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vod_signer_descriptor");
