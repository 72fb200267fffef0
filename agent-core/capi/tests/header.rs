//! `include/ecu_update.h` is what cbindgen generates from this crate's source, byte for byte
//! (`ECU_UPDATE_BLESS=1 cargo test -p ecu-update-capi --test header` rewrites it), and it
//! compiles as C99 and as C++ with every warning an error.

use test_support::c_header::CHeader;

const HEADER: CHeader<'static> = CHeader {
    crate_dir: env!("CARGO_MANIFEST_DIR"),
    file: "ecu_update.h",
    bless: "ECU_UPDATE_BLESS",
    package: "ecu-update-capi",
};

#[test]
fn header_is_generated_from_the_source() {
    HEADER.assert_checked_in();
}

#[test]
fn header_states_the_memory_the_rust_side_checks() {
    let h = HEADER.generate();
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
    let src = "#include \"ecu_update.h\"\n\
        _Static_assert(sizeof(struct ecu_boot_write) >= ECU_UPDATE_BOOT_RECORD_LEN, \"record\");\n\
        int main(void) { return ecu_update_strerror(ECU_UPDATE_OK) == 0; }\n";
    HEADER.assert_compiles(
        src,
        &src.replace("_Static_assert", "static_assert"),
        "header_compiles_as_c99_and_cxx_with_warnings_as_errors",
    );
}
