//! Generates the client for the part of etcd's KV API that the peer benchmark calls
//! (`proto/proto/peers/etcd/kv.proto`) with protox, as the other crates do: no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["../proto/proto/peers/etcd/kv.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["../proto/proto"])?;
    tonic_prost_build::configure().build_server(false).bytes(".").compile_fds(fds)?;
    Ok(())
}
