//! The agent's own boot-environment loading (`agent_linux::deploy::env`) with arbitrary
//! `agent.conf` sizes and offsets, on real files (`ecu_agent_fuzz::envload`; `docs/FUZZ.md`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ecu_agent_fuzz::envload::check(data);
});
