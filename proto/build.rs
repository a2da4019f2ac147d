//! Compiles `proto/` with protox (pure Rust, no protoc needed) into Rust types, tonic
//! stubs and an encoded descriptor set that the gateway serves for reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "marketplace/ingest/v1/ingest.proto",
    "marketplace/queue/v1/queue.proto",
    "vendor/google/rpc/error_details.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=marketplace");
    println!("cargo:rerun-if-changed=vendor");
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
