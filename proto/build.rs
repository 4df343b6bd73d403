//! Generates the gRPC code from `proto/` with protox (a pure-Rust protobuf compiler), so a fresh
//! machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/hypercache/v1/hypercache.proto",
        "proto/hypercache/v1/game.proto",
        "proto/hypercache/raft/v1/raft.proto",
        "proto/orbstrike/v1/orbstrike.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
