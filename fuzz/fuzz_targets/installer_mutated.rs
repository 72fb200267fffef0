//! A valid signed update file, mutated (XOR, truncation, insertion, removal), installed under a
//! policy that requires its key: only the unchanged file may install, and it must
//! (`ecu_agent_fuzz::check_mutated`; `docs/FUZZ.md`).
#![no_main]
use ecu_agent_fuzz::{run_mutated, MutatedInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: MutatedInput| {
    let _ = run_mutated(&input);
});
