//! Compiles `proto/rpc.proto` with the pure-Rust `protox` compiler (no system `protoc`), writes the
//! encoded FileDescriptorSet to `$OUT_DIR/rpc_descriptor.bin` and generates the prost messages and
//! tonic client + server stubs from it.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("../../proto");
    let proto_file = proto_dir.join("rpc.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());
    println!("cargo:rerun-if-changed=build.rs");

    // `google/protobuf/empty.proto` is built into protox. Imports are included so the descriptor
    // set is self-contained (gRPC reflection needs every dependency); source info keeps the
    // proto comments as rustdoc.
    let fds = protox::Compiler::new([&proto_dir])?
        .include_imports(true)
        .include_source_info(true)
        .open_file("rpc.proto")?
        .file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("rpc_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No generated `connect(dst)` helpers: they need tonic's full transport. Clients are
        // built from a `Channel` (see `rpc::client`), servers are plain tower services.
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
