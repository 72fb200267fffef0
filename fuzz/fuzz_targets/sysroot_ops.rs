//! Sequences of sysroot commands on a real temporary sysroot against a reference model of
//! the two slots (`ecu_agent_fuzz::sysroot`; `docs/FUZZ.md`).
#![no_main]
use ecu_agent_fuzz::sysroot::{run, Op};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<Op>| {
    let _ = run(&ops);
});
