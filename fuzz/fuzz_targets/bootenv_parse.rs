//! Arbitrary bytes into bootloader-hooks' U-Boot (single, redundant), GRUB and flash-record
//! decoders; whatever decodes must re-encode and decode to the same thing
//! (`ecu_agent_fuzz::bootenv`; `docs/FUZZ.md`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ecu_agent_fuzz::bootenv::check(data);
});
