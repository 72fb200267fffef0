//! `include/ecu_update.h` is what cbindgen generates from this crate's source, byte for byte
//! (`ECU_UPDATE_BLESS=1 cargo test -p ecu-update-capi --test header` rewrites it), and it
//! compiles as C99 and as C++ with every warning an error.

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
    let path = Path::new(CRATE).join("include/ecu_update.h");
    let fresh = generate();
    if std::env::var_os("ECU_UPDATE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/ecu_update.h is out of date with the Rust source; regenerate it with \
         ECU_UPDATE_BLESS=1 cargo test -p ecu-update-capi --test header"
    );
}

#[test]
fn header_states_the_memory_the_rust_side_checks() {
    let h = generate();
    for (name, v) in [
        ("ECU_UPDATE_MEM_ALIGN", ecu_update::ECU_UPDATE_MEM_ALIGN),
        ("ECU_UPDATE_MEM_SIZE", ecu_update::ECU_UPDATE_MEM_SIZE),
    ] {
        assert!(
            h.contains(&format!("#define {name} {v}")),
            "{name} {v} missing from the header"
        );
    }
    assert!(std::mem::size_of::<ecu_update::session::Session>() <= ecu_update::ECU_UPDATE_MEM_SIZE);
}

#[test]
fn header_compiles_as_c99_and_cxx_with_warnings_as_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = "#include \"ecu_update.h\"\n\
        _Static_assert(sizeof(struct ecu_boot_write) >= ECU_UPDATE_BOOT_RECORD_LEN, \"record\");\n\
        int main(void) { return ecu_update_strerror(ECU_UPDATE_OK) == 0; }\n";
    for (compiler, std_flag, file, extra) in [
        ("gcc", "-std=c99", "t.c", "-Wpedantic"),
        ("g++", "-std=c++17", "t.cpp", "-Wpedantic"),
    ] {
        if !test_support::tool::have(
            compiler,
            "header_compiles_as_c99_and_cxx_with_warnings_as_errors",
        ) {
            continue;
        }
        let body = if file.ends_with(".cpp") {
            src.replace("_Static_assert", "static_assert")
        } else {
            src.to_string()
        };
        let path = tmp.path().join(file);
        std::fs::write(&path, body).unwrap();
        let out = Command::new(compiler)
            .args([
                std_flag,
                "-Wall",
                "-Wextra",
                "-Werror",
                extra,
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
