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
/// `0xFFFF_FFFF`). Without `std`, bit by bit: a microcontroller checks a 288-byte boot record
/// and keeps the 1 KiB of flash a table would take; with `std`, through the 256-entry table,
/// for environments of up to megabytes.
#[cfg(not(feature = "std"))]
pub(crate) const CRC32: crc::Crc<u32, crc::NoTable> =
    crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);
#[cfg(feature = "std")]
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (zlib/IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    CRC32.checksum(data)
}

#[cfg(test)]
mod test {
    /// The check value of CRC-32/ISO-HDLC, and the table-driven value over 300 bytes,
    /// whichever way (`std` or not) this build computes it.
    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        let bytes: [u8; 300] = core::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(
            super::crc32(&bytes),
            crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes)
        );
    }
}
