//! The two-copy [`crate::flash_record`] on an `embedded-storage` `NorFlash`
//! partition (feature `embedded-storage`): what a bootloader or a firmware needs to keep its
//! boot state on raw flash without writing its own reads, erases and writes.
//!
//! The partition holds two copies, each in its own erase sector (copy 0 at `base`, copy 1 at
//! `base + sector`). [`RecordStore::read`] picks the current copy as
//! [`flash_record::select`] does; [`RecordStore::write`] erases the copy that is **not**
//! current and programs the new record there (revision one newer), so a power cut at any
//! point of a write leaves the current copy valid: after the reboot the state is the old one
//! or the new one, never anything else.

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};

use crate::flash_record::{self, RecordError, RECORD_LEN};
use crate::state::{BootState, Decision};

/// Bytes programmed per copy: [`RECORD_LEN`] padded with `0xFF` to a multiple of the flash's
/// write size (320 is a multiple of 1, 2, 4, 8, 16, 32 and 64).
pub const PROGRAM_LEN: usize = 320;

const _: () = assert!(PROGRAM_LEN >= RECORD_LEN);

/// Why a [`RecordStore`] cannot be built over a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LayoutError {
    /// The sector size is not a non-zero multiple of the flash's erase size.
    Sector {
        /// The sector size given.
        sector: u32,
        /// The flash's erase size.
        erase_size: usize,
    },
    /// The base is not a multiple of the erase size.
    Base {
        /// The base given.
        base: u32,
    },
    /// The flash's write size does not divide [`PROGRAM_LEN`], or a sector is smaller than it.
    WriteSize {
        /// The flash's write size.
        write_size: usize,
    },
    /// The two sectors do not fit in the flash.
    TooSmall {
        /// Bytes needed from address 0.
        needed: u64,
        /// The flash's capacity.
        capacity: usize,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            LayoutError::Sector { sector, erase_size } => write!(
                f,
                "boot record sector size {sector} is not a non-zero multiple of the flash erase size {erase_size}; pick one that is"
            ),
            LayoutError::Base { base } => write!(
                f,
                "boot record base {base:#x} is not at an erase-sector boundary; align it"
            ),
            LayoutError::WriteSize { write_size } => write!(
                f,
                "flash write size {write_size} does not divide the {PROGRAM_LEN}-byte record or exceeds its sector; this flash cannot hold the record"
            ),
            LayoutError::TooSmall { needed, capacity } => write!(
                f,
                "the two boot record sectors need {needed} bytes of flash, it has {capacity}; move or shrink them"
            ),
        }
    }
}

impl core::error::Error for LayoutError {}

/// Why reading or writing the record failed. (No `defmt::Format`: `embedded-storage`'s
/// error kind has none; log it with `{:?}` through `Debug2Format`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The flash failed.
    Flash(NorFlashErrorKind),
    /// No valid copy (or another record error): boot the default slot, then write a state.
    Record(RecordError),
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Flash(k) => write!(f, "the boot record flash failed: {k:?}"),
            StoreError::Record(e) => core::fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for StoreError {}

fn flash<E: NorFlashError>(e: E) -> StoreError {
    StoreError::Flash(e.kind())
}

/// The boot record on a `NorFlash` partition. See the [module docs](self).
#[derive(Debug)]
pub struct RecordStore<F> {
    flash: F,
    base: u32,
    sector: u32,
}

impl<F: NorFlash> RecordStore<F> {
    /// The record's two copies at `base` and `base + sector` of `flash`. Checks the layout:
    /// `sector` a non-zero multiple of the erase size, `base` on a sector boundary, the write
    /// size dividing [`PROGRAM_LEN`] and both sectors inside the flash.
    pub fn new(flash: F, base: u32, sector: u32) -> Result<Self, LayoutError> {
        let erase_size = F::ERASE_SIZE;
        if sector == 0 || erase_size == 0 || !(sector as usize).is_multiple_of(erase_size) {
            return Err(LayoutError::Sector { sector, erase_size });
        }
        if !(base as usize).is_multiple_of(erase_size) {
            return Err(LayoutError::Base { base });
        }
        let write_size = F::WRITE_SIZE;
        if write_size == 0
            || !PROGRAM_LEN.is_multiple_of(write_size)
            || (sector as usize) < PROGRAM_LEN
        {
            return Err(LayoutError::WriteSize { write_size });
        }
        let needed = u64::from(base) + 2 * u64::from(sector);
        if needed > flash.capacity() as u64 {
            return Err(LayoutError::TooSmall {
                needed,
                capacity: flash.capacity(),
            });
        }
        Ok(RecordStore {
            flash,
            base,
            sector,
        })
    }

    fn copies(&mut self) -> Result<([u8; RECORD_LEN], [u8; RECORD_LEN]), StoreError> {
        let mut a = [0u8; RECORD_LEN];
        let mut b = [0u8; RECORD_LEN];
        self.flash.read(self.base, &mut a).map_err(flash)?;
        self.flash
            .read(self.base + self.sector, &mut b)
            .map_err(flash)?;
        Ok((a, b))
    }

    /// The current state: of the two copies, the valid one with the newer revision.
    pub fn read(&mut self) -> Result<BootState, StoreError> {
        let (a, b) = self.copies()?;
        flash_record::select(&a, &b)
            .map(|(_, s)| s)
            .map_err(StoreError::Record)
    }

    /// Writes `state` to the copy that is not current (erase its sector, program the record,
    /// revision one newer than the current copy's if `state`'s is not newer). Returns the copy
    /// written (0 or 1). A power cut leaves the current copy as it was.
    pub fn write(&mut self, state: &BootState) -> Result<usize, StoreError> {
        let (a, b) = self.copies()?;
        let mut out = [0xFFu8; PROGRAM_LEN];
        let copy = flash_record::prepare_write(&a, &b, state, &mut out);
        let at = self.base + copy as u32 * self.sector;
        self.flash.erase(at, at + self.sector).map_err(flash)?;
        // `new` checked that the write size divides PROGRAM_LEN.
        self.flash.write(at, &out).map_err(flash)?;
        Ok(copy)
    }

    /// One boot as a bootloader runs it: the decision over the current state, written back
    /// first when it changed (a try used).
    pub fn boot(&mut self) -> Result<Decision, StoreError> {
        let d = self.read()?.decide();
        if d.changed {
            self.write(&d.state)?;
        }
        Ok(d)
    }

    /// The flash, back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    /// The flash, borrowed (to reach the rest of the device).
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.flash
    }
}
