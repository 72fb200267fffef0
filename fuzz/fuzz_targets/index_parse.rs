//! The index of a published folder under the sample key (`ecu_agent_fuzz::index`;
//! `docs/FUZZ.md`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ecu_agent_fuzz::index::check(data);
});
