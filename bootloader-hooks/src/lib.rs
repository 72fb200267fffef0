#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

// Unsafe code only in the C ABI module (`ffi`); every other module forbids it outright.
#[macro_use]
#[forbid(unsafe_code)]
mod fmt;

#[forbid(unsafe_code)]
pub mod flash_record;
#[forbid(unsafe_code)]
pub mod grub_env;
#[cfg(feature = "embedded-storage")]
#[forbid(unsafe_code)]
pub mod nor_record;
#[forbid(unsafe_code)]
pub mod scheme;
#[forbid(unsafe_code)]
pub mod state;
#[forbid(unsafe_code)]
pub mod uboot_env;
#[forbid(unsafe_code)]
pub mod vars;

#[allow(unsafe_code)]
pub mod ffi;

pub use scheme::{Flavor, MenderConfig, RaucConfig, Scheme, SchemeError};
pub use state::{
    Applied, BootRules, BootState, Decision, DecisionKind, Operation, Slot, SlotName, SlotState,
    StateError, MAX_NAME_LEN, MAX_PRIORITY, MAX_TRIES, RAUC_UBOOT_REFILL,
};
pub use vars::{EnvRead, VarSet};

/// CRC-32 as zlib, U-Boot and `crc32fast` compute it (IEEE, reflected, init and xor-out
/// `0xFFFF_FFFF`).
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (zlib/IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    CRC32.checksum(data)
}
