//! Boot-state operations on a model and through the two-copy flash record with torn writes
//! (`ecu_agent_fuzz::bootstate`; `docs/FUZZ.md`).
#![no_main]
use ecu_agent_fuzz::bootstate::{run, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|steps: Vec<Step>| {
    let _ = run(&steps);
});
