//! `ecu_agent.h`: the C API of agent-linux for OTA daemons written in C or C++, built as
//! `libecu_agent.so` and `libecu_agent.a`.
//!
//! A daemon opens a sysroot, installs an update from a file descriptor or by pushing the
//! bytes as its own transport delivers them (no temporary copy), with a progress callback
//! and cancellation, reads the status as a struct, marks the booted deployment good or rolls
//! back. Every call returns an `ECU_AGENT_*` code and keeps a sentence for
//! `ecu_agent_message`; panics are caught at the boundary, nothing aborts the host process.
//!
//! The header `include/ecu_agent.h` is generated from this crate by cbindgen
//! (`cbindgen.toml`); `tests/header.rs` checks that the checked-in header is up to date
//! (`ECU_AGENT_BLESS=1 cargo test -p ecu-agent-capi --test header` rewrites it).
//! docs/C-API.md is the guide. Unsafe code is confined to [`ffi`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod types;

pub use error::*;
pub use types::*;
