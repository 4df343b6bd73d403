//! Generates the Orbstrike gRPC code from `proto/proto/orbstrike/v1/orbstrike.proto` at the top of the
//! workspace (the home of every wire definition) with protox, a pure-Rust protobuf compiler, so a
//! fresh machine needs no system `protoc`. The settings match `proto/build.rs`: every protobuf
//! `bytes` field becomes `bytes::Bytes`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["../proto/proto/orbstrike/v1/orbstrike.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["../proto/proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
