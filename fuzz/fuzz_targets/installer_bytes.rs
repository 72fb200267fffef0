//! Arbitrary bytes into agent-core's streaming installer, chunked as the input's prefix says
//! and whole (`ecu_agent_fuzz::check_installer_bytes` has the assertions; `docs/FUZZ.md`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ecu_agent_fuzz::check_installer_bytes(data);
});
