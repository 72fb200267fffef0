//! Boot state for A/B updates, shared by the update agent and the bootloader.
//!
//! - [`state`]: the model (two slots with priority, tries left, success flag and name, plus a
//!   revision), the pure boot decision [`BootState::decide`] and the operations `stage`,
//!   `mark_good`, `rollback`.
//! - [`uboot_env`]: U-Boot environment images, single and redundant, as `mkenvimage`,
//!   `fw_printenv`/`fw_setenv` and U-Boot's `env import -c`/`env export -c` read and write them.
//! - [`grub_env`]: the 1024-byte GRUB environment block of `grub-editenv`, `load_env`, `save_env`.
//! - [`flash_record`]: a fixed little-endian record in two copies for microcontroller
//!   bootloaders, with a C header in `include/ecu_boot_state.h` and a C ABI decision in [`ffi`].
//! - [`scheme`]: which env variables hold the state: ours (`ECU_*`), RAUC's or Mender's.
//! - `host` (feature `std`): the file-backed API the Linux agent calls (load, apply, store).
//!
//! Everything except `host` is `no_std` without `alloc`: encoders and decoders work on buffers
//! the caller lends. The byte layouts and variable mappings are specified in `docs/BOOTSTATE.md`.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

#[macro_use]
mod fmt;

pub mod flash_record;
pub mod grub_env;
pub mod scheme;
pub mod state;
pub mod uboot_env;
pub mod vars;

#[allow(unsafe_code)]
pub mod ffi;

#[cfg(feature = "std")]
pub mod host;

pub use scheme::{Flavor, MenderConfig, RaucConfig, Scheme, SchemeError};
pub use state::{
    Applied, BootState, Decision, DecisionKind, Operation, Slot, SlotName, SlotState, StateError,
    MAX_NAME_LEN, MAX_PRIORITY, MAX_TRIES,
};
pub use vars::{EnvRead, VarSet};

/// CRC-32 as zlib, U-Boot and `crc32fast` compute it (IEEE, reflected, init and xor-out
/// `0xFFFF_FFFF`).
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (zlib/IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    CRC32.checksum(data)
}
