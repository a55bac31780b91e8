//! Generates the Rust code for every `.proto` under `blob/` with a vendored `protoc`, so no
//! system protobuf compiler is needed.

use std::path::PathBuf;

const PROTOS: &[&str] =
    &["blob/stt/v1/stt.proto", "blob/llm/v1/llm.proto", "blob/session/v1/session.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        set_protoc(protoc_bin_vendored::protoc_bin_path()?);
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("blob_descriptor.bin"))
        .compile_protos(PROTOS, &["."])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}

/// Points prost-build at the vendored compiler (it reads `PROTOC`).
#[allow(unsafe_code)]
fn set_protoc(path: PathBuf) {
    // SAFETY: a build script is single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", path) };
}
