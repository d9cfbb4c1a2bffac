//! Writes `enclave-agent/src/workload_api/pb.rs` from
//! `enclave-agent/proto/workload.proto`: protox compiles the file (no
//! `protoc`), tonic-prost-build writes the messages and the server trait.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = proto.join("../src/workload_api");
    let tmp = tempdir()?;
    let files = protox::compile([proto.join("workload.proto")], [&proto])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&tmp)
        .compile_fds(files)?;
    // No package: prost names the file `_.rs`.
    let generated = std::fs::read_to_string(tmp.join("_.rs"))?;
    let header = "// @generated from enclave-agent/proto/workload.proto by \
                  enclave-agent/proto/regenerate (protox + tonic-prost-build).\n\
                  // Do not edit; change the .proto file and regenerate.\n";
    std::fs::write(out.join("pb.rs"), format!("{header}{generated}"))?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

fn tempdir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("workload-api-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
