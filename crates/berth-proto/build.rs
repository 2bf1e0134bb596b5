//! Compiles `proto/` with protox (pure Rust): no `protoc` binary is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `compile_fds` does not emit this itself; without it .proto edits would be ignored.
    println!("cargo:rerun-if-changed=../../proto");
    let fds = protox::compile(["berth/cluster/v1/cluster.proto"], ["../../proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
