//! `include/ecu_agent.h` is what cbindgen generates from this crate's source, byte for byte
//! (`ECU_AGENT_BLESS=1 cargo test -p ecu-agent-capi --test header` rewrites it), and it
//! compiles as C99 and C++17 with every warning an error.

use test_support::c_header::CHeader;

const HEADER: CHeader<'static> = CHeader {
    crate_dir: env!("CARGO_MANIFEST_DIR"),
    file: "ecu_agent.h",
    bless: "ECU_AGENT_BLESS",
    package: "ecu-agent-capi",
};

#[test]
fn header_is_generated_from_the_source() {
    HEADER.assert_checked_in();
}

#[test]
fn header_compiles_as_c99_and_cxx_with_warnings_as_errors() {
    let src = "#include \"ecu_agent.h\"\n\
        int main(void) { return ecu_agent_strerror(ECU_AGENT_OK) == 0; }\n";
    HEADER.assert_compiles(
        src,
        src,
        "header_compiles_as_c99_and_cxx_with_warnings_as_errors",
    );
}
