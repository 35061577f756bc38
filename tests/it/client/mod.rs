//! The client crate (`vod_signer_client`) against real servers from the same harness, and
//! against scripted stand-ins for what a real server never does.

mod calls;
mod resilience;
mod tls;
mod uploads;
mod wire;
