//! `include/ecu_agent.h` is what cbindgen generates from this crate's source, byte for byte
//! (`ECU_AGENT_BLESS=1 cargo test -p ecu-agent-capi --test header` rewrites it), and it
//! compiles as C99 and C++17 with every warning an error.

use std::path::Path;
use std::process::Command;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

fn generate() -> String {
    let config = cbindgen::Config::from_file(Path::new(CRATE).join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(CRATE)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_generated_from_the_source() {
    let path = Path::new(CRATE).join("include/ecu_agent.h");
    let fresh = generate();
    if std::env::var_os("ECU_AGENT_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/ecu_agent.h is out of date with the Rust source; regenerate it with \
         ECU_AGENT_BLESS=1 cargo test -p ecu-agent-capi --test header"
    );
}

#[test]
fn header_compiles_as_c99_and_cxx_with_warnings_as_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = "#include \"ecu_agent.h\"\n\
        int main(void) { return ecu_agent_strerror(ECU_AGENT_OK) == 0; }\n";
    for (compiler, std_flag, file) in [("gcc", "-std=c99", "t.c"), ("g++", "-std=c++17", "t.cpp")] {
        if !test_support::tool::have(
            compiler,
            "header_compiles_as_c99_and_cxx_with_warnings_as_errors",
        ) {
            continue;
        }
        let path = tmp.path().join(file);
        std::fs::write(&path, src).unwrap();
        let out = Command::new(compiler)
            .args([
                std_flag,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-Wpedantic",
                "-fsyntax-only",
                "-I",
            ])
            .arg(Path::new(CRATE).join("include"))
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{compiler} {std_flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
