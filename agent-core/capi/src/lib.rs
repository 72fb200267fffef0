//! `ecu_update.h`: the C API of agent-core's installer, built as `libecu_update.a` for the
//! Cortex-M targets (`no_std`, no allocation) and for Linux.
//!
//! A C caller lends the installer's memory (`ECU_UPDATE_MEM_SIZE` bytes aligned to
//! `ECU_UPDATE_MEM_ALIGN`), sets its policy (trusted and revoked keys, the anti-rollback
//! floor), chooses a store (C callbacks, or agent-core's flash A/B store over a C flash
//! driver), feeds the update in any chunk size and finishes. Every function returns an
//! `ECU_UPDATE_*` code; `ecu_update_strerror` gives a stable text for each code and
//! `ecu_update_message` the detailed sentence of the last failure. The library also carries
//! bootloader-hooks' C ABI (`ecu_boot_decide`, `ecu_boot_state.h`) and the boot-record steps
//! of an install (`ecu_update_boot_*`), so a firmware links one Rust library.
//!
//! The header `include/ecu_update.h` is generated from this crate by cbindgen
//! (`cbindgen.toml`); `tests/header.rs` checks that the checked-in header is up to date
//! (`ECU_UPDATE_BLESS=1 cargo test -p ecu-update-capi --test header` rewrites it).
//! docs/C-API.md is the guide.
//!
//! Unsafe code is confined to [`ffi`], the C boundary; everything else is safe.
#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The boot decision's C ABI comes with this library.
pub use bootloader_hooks::ffi::ecu_boot_decide;

pub mod boot;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod session;
pub mod types;

pub use error::*;
pub use types::*;

/// Bytes of memory `ecu_update_init` needs (`struct ecu_update` lives there): the installer,
/// the flash store and the last error, then the 32 KiB window lent to the installer. Checked at
/// build time against the real size on every target (with room for the 88 bytes agent-core's
/// feature `xz` adds to its part table and the 48 its feature `redeflate` adds to the record
/// state, should a build unify those features in).
#[cfg(target_pointer_width = "32")]
pub const ECU_UPDATE_MEM_SIZE: usize = 49_928;
/// Bytes of memory `ecu_update_init` needs (64-bit targets).
#[cfg(target_pointer_width = "64")]
pub const ECU_UPDATE_MEM_SIZE: usize = 50_032;
/// Alignment of the memory lent to `ecu_update_init`.
pub const ECU_UPDATE_MEM_ALIGN: usize = 8;

const _: () = assert!(
    core::mem::size_of::<session::Session>() + agent_core::install::INFLATE_WINDOW
        <= ECU_UPDATE_MEM_SIZE
);
const _: () = assert!(core::mem::align_of::<session::Session>() <= ECU_UPDATE_MEM_ALIGN);

/// The program unit the flash store writes in: every `program` call of a
/// `struct ecu_flash_driver` is aligned to it in offset and length. A device whose own unit
/// divides it (1, 2, 4, 8, 16 or 32 bytes) works unchanged.
pub const ECU_FLASH_WRITE_SIZE: u32 = 32;
/// The sector the flash store erases in: every `erase` call covers whole multiples of it, and
/// the slots start and end on it. A device whose own sector divides it works unchanged.
pub const ECU_FLASH_SECTOR_SIZE: u32 = 4096;

#[cfg(all(target_os = "none", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A bug in the library (untrusted input never panics): stop here, where a debugger or
    // the watchdog finds it.
    loop {
        core::hint::spin_loop();
    }
}
