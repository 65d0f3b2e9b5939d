//! Generates prost types and pbjson serde impls from the vendored protos in `/proto`.
//! `protox` compiles the protos in pure Rust, so no system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "google/cloud/tasks/v2/cloudtasks.proto",
        "google/cloud/location/locations.proto",
        "google/longrunning/operations.proto",
        "google/rpc/error_details.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    let mut config = prost_build::Config::new();
    config
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .btree_map(["."]);
    config.compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptor_path)?)?
        .btree_map(["."])
        .build(&[
            ".google.cloud.tasks.v2",
            ".google.cloud.location",
            ".google.longrunning",
            ".google.rpc",
            ".google.iam.v1",
            ".google.type",
            ".google.api",
        ])?;
    Ok(())
}
