//! A NOR flash model that enforces the rules of real NOR flash and can cut power after any
//! number of operations (internal feature `_test-flash`; no stability promise).
//!
//! Rules enforced, each a typed error rather than a silent success:
//!
//! - writes are aligned to `W` bytes (offset and length), erases to `E`-byte sectors;
//! - a word can only be programmed while it is fully erased (all `0xFF`): no rewrite of a
//!   programmed word, even with the same value ("program once per word", the stricter rule);
//! - every access is inside the device.
//!
//! Power cuts: [`NorModel::cut_at`] picks an operation index (writes and erases counted
//! together from 0). That operation is applied in part, as a real device leaves it when power
//! fails: a write programs only the first half of its bytes (possibly ending inside a word), an
//! erase resets only the first half of its sector range to `0xFF` and leaves the rest as it
//! was. The operation and every one after it fail with [`NorModelError::PowerCut`] until
//! [`NorModel::power_on`] ("reboot").
//!
//! The model borrows its memory, so the same model runs on the host (over a `Vec`) and in a
//! firmware (over a `static` array in a region of its own).

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Operation counts since the model was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NorStats {
    /// Write calls that started.
    pub writes: u32,
    /// Erase calls that started.
    pub erases: u32,
    /// Bytes programmed.
    pub bytes_written: u64,
    /// Bytes erased.
    pub bytes_erased: u64,
    /// Write and erase calls together: the index the next one gets for [`NorModel::cut_at`].
    pub ops: u32,
}

/// What the model refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NorModelError {
    /// An access past the end of the device.
    OutOfBounds {
        /// Start of the access.
        offset: u32,
        /// Its length.
        len: u32,
    },
    /// A write or erase that is not aligned to the device's granularity.
    NotAligned {
        /// Start of the access.
        offset: u32,
        /// Its length.
        len: u32,
    },
    /// A write to a word that is not erased.
    NotErased {
        /// Offset of the first byte of the word.
        offset: u32,
    },
    /// Power is off (a cut was reached); [`NorModel::power_on`] to reboot.
    PowerCut,
}

impl core::fmt::Display for NorModelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NorModelError::OutOfBounds { offset, len } => {
                write!(
                    f,
                    "flash access of {len} bytes at {offset:#x} is past the end of the device"
                )
            }
            NorModelError::NotAligned { offset, len } => {
                write!(f, "flash access of {len} bytes at {offset:#x} is not aligned to the device's granularity")
            }
            NorModelError::NotErased { offset } => {
                write!(
                    f,
                    "flash word at {offset:#x} was programmed without being erased first"
                )
            }
            NorModelError::PowerCut => f.write_str("power was cut (simulated); reboot the model"),
        }
    }
}

impl core::error::Error for NorModelError {}

impl NorFlashError for NorModelError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            NorModelError::OutOfBounds { .. } => NorFlashErrorKind::OutOfBounds,
            NorModelError::NotAligned { .. } => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// NOR flash over borrowed memory with `W`-byte write words and `E`-byte erase sectors.
pub struct NorModel<'m, const W: usize, const E: usize> {
    mem: &'m mut [u8],
    stats: NorStats,
    cut_at: Option<u32>,
    /// Bytes the cut operation still applies (`None`: half of them).
    cut_keep: Option<usize>,
    powered: bool,
}

impl<'m, const W: usize, const E: usize> NorModel<'m, W, E> {
    /// A device over `mem`, kept as it is (call [`NorModel::erase_all`] for a blank device).
    ///
    /// # Panics
    /// If `W` or `E` is 0, `E` is not a multiple of `W`, or `mem`'s length is not a multiple of
    /// `E` (a misconfigured model, not an input).
    pub fn new(mem: &'m mut [u8]) -> Self {
        assert!(
            W > 0 && E > 0 && E.is_multiple_of(W) && mem.len().is_multiple_of(E),
            "bad NOR model geometry"
        );
        NorModel {
            mem,
            stats: NorStats::default(),
            cut_at: None,
            cut_keep: None,
            powered: true,
        }
    }

    /// Sets every byte to `0xFF` without counting an operation (a factory-blank device).
    pub fn erase_all(&mut self) {
        self.mem.fill(0xFF);
    }

    /// Operation counts so far.
    pub fn stats(&self) -> NorStats {
        self.stats
    }

    /// Cuts power during operation `op` (0-based over writes and erases since creation); see
    /// the [module docs](self) for what a cut operation leaves behind.
    pub fn cut_at(&mut self, op: u32) {
        self.cut_at = Some(op);
        self.cut_keep = None;
    }

    /// Like [`NorModel::cut_at`], but the cut operation applies its first `bytes` bytes (0: it
    /// does nothing at all, as if power failed just before it).
    pub fn cut_at_keeping(&mut self, op: u32, bytes: usize) {
        self.cut_at = Some(op);
        self.cut_keep = Some(bytes);
    }

    /// Whether power has been cut.
    pub fn is_cut(&self) -> bool {
        !self.powered
    }

    /// Turns power back on and clears any pending cut ("reboot").
    pub fn power_on(&mut self) {
        self.powered = true;
        self.cut_at = None;
        self.cut_keep = None;
    }

    /// The device's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.mem
    }

    /// The device's bytes, to corrupt them on purpose in a test.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.mem
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, NorModelError> {
        let start = offset as usize;
        match start.checked_add(len) {
            Some(end) if end <= self.mem.len() => Ok(start..end),
            _ => Err(NorModelError::OutOfBounds {
                offset,
                len: len as u32,
            }),
        }
    }

    /// Starts an operation: returns whether it is the one to cut.
    fn start_op(&mut self) -> Result<bool, NorModelError> {
        if !self.powered {
            return Err(NorModelError::PowerCut);
        }
        let cut = self.cut_at == Some(self.stats.ops);
        self.stats.ops += 1;
        Ok(cut)
    }
}

impl<const W: usize, const E: usize> ErrorType for NorModel<'_, W, E> {
    type Error = NorModelError;
}

impl<const W: usize, const E: usize> ReadNorFlash for NorModel<'_, W, E> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorModelError> {
        if !self.powered {
            return Err(NorModelError::PowerCut);
        }
        let r = self.range(offset, bytes.len())?;
        bytes.copy_from_slice(&self.mem[r]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const W: usize, const E: usize> NorFlash for NorModel<'_, W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), NorModelError> {
        let len = to.saturating_sub(from) as usize;
        if to < from || !(from as usize).is_multiple_of(E) || !len.is_multiple_of(E) {
            return Err(NorModelError::NotAligned {
                offset: from,
                len: len as u32,
            });
        }
        let r = self.range(from, len)?;
        let cut = self.start_op()?;
        self.stats.erases += 1;
        let done = if cut {
            self.cut_keep.unwrap_or(len / 2).min(len)
        } else {
            len
        };
        self.mem[r.start..r.start + done].fill(0xFF);
        self.stats.bytes_erased += done as u64;
        if cut {
            self.powered = false;
            return Err(NorModelError::PowerCut);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorModelError> {
        if !(offset as usize).is_multiple_of(W) || !bytes.len().is_multiple_of(W) {
            return Err(NorModelError::NotAligned {
                offset,
                len: bytes.len() as u32,
            });
        }
        let r = self.range(offset, bytes.len())?;
        if let Some(w) = self.mem[r.clone()]
            .chunks(W)
            .position(|w| w.iter().any(|&b| b != 0xFF))
        {
            return Err(NorModelError::NotErased {
                offset: offset + (w * W) as u32,
            });
        }
        let cut = self.start_op()?;
        self.stats.writes += 1;
        let done = if cut {
            self.cut_keep.unwrap_or(bytes.len() / 2).min(bytes.len())
        } else {
            bytes.len()
        };
        self.mem[r.start..r.start + done].copy_from_slice(&bytes[..done]);
        self.stats.bytes_written += done as u64;
        if cut {
            self.powered = false;
            return Err(NorModelError::PowerCut);
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn rules_and_cuts() {
        let mut mem = [0u8; 64];
        let mut f: NorModel<'_, 4, 16> = NorModel::new(&mut mem);
        // Not erased yet.
        assert_eq!(
            f.write(0, &[0; 4]),
            Err(NorModelError::NotErased { offset: 0 })
        );
        assert_eq!(
            f.erase(0, 8),
            Err(NorModelError::NotAligned { offset: 0, len: 8 })
        );
        f.erase(0, 16).unwrap();
        assert_eq!(
            f.write(2, &[0; 4]),
            Err(NorModelError::NotAligned { offset: 2, len: 4 })
        );
        f.write(0, &[1, 2, 3, 4]).unwrap();
        // Program once per word, even to the same value.
        assert_eq!(
            f.write(0, &[1, 2, 3, 4]),
            Err(NorModelError::NotErased { offset: 0 })
        );
        assert!(matches!(
            f.write(64, &[0; 4]),
            Err(NorModelError::OutOfBounds { .. })
        ));
        assert_eq!(f.stats().ops, 2);
        f.cut_at(2);
        assert_eq!(f.write(4, &[9; 8]), Err(NorModelError::PowerCut));
        assert_eq!(&f.bytes()[4..12], &[9, 9, 9, 9, 0xFF, 0xFF, 0xFF, 0xFF]);
        let mut b = [0u8; 1];
        assert_eq!(f.read(0, &mut b), Err(NorModelError::PowerCut));
        f.power_on();
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [1]);
        f.write(12, &[7; 4]).unwrap();
        f.cut_at(4);
        assert_eq!(f.erase(0, 16), Err(NorModelError::PowerCut));
        f.power_on();
        // Half the sector erased, the rest as it was.
        assert_eq!(&f.bytes()[..8], &[0xFF; 8]);
        assert_eq!(&f.bytes()[12..16], &[7; 4]);
        assert_eq!(f.stats().erases, 2);
        // A cut that keeps nothing: the write does not happen at all.
        f.cut_at_keeping(5, 0);
        assert_eq!(f.write(8, &[1; 4]), Err(NorModelError::PowerCut));
        f.power_on();
        assert_eq!(&f.bytes()[8..12], &[0xFF; 4]);
    }
}
