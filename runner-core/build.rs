//! Compiles the KServe V2 gRPC service definition (`proto/grpc_predict_v2.proto`) when the
//! `grpc` feature is on: protox parses it (a protobuf compiler in Rust, so no `protoc`
//! to install) and tonic-prost-build writes the messages, the server and the client.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "grpc")]
    grpc();
}

#[cfg(feature = "grpc")]
fn grpc() {
    let proto = "proto/grpc_predict_v2.proto";
    println!("cargo::rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    tonic_prost_build::configure()
        .build_transport(false)
        .bytes(".")
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the gRPC code of {proto}: {e}"));
}
