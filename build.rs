//! Compiles `proto/` with protox (pure Rust, no system protoc) and tonic-prost-build.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files([
        "obelisk/v1/broker.proto",
        // replication (issue 17): the node-to-node service.
        "obelisk/cluster/v1/raft.proto",
    ])?;
    std::fs::write(
        out.join("obelisk_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[allow(clippy::all)]")
        .bytes(".obelisk.v1")
        .bytes(".obelisk.cluster.v1")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
