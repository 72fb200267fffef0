//! [`FlashStoreError`]: why the flash store failed.

use core::fmt;

use super::{FlashSlot, MAX_TREE_DEPTH};
use crate::object::{ObjectId, ObjectKind};

/// Why the flash store failed. `E` is the flash driver's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FlashStoreError<E> {
    /// The flash driver failed.
    Flash(E),
    /// The layout does not fit the device (a configuration error).
    Layout(&'static str),
    /// The inactive slot is full.
    NoSpace {
        /// Bytes the next object needs, with its index entry.
        needed: u32,
        /// Bytes left.
        free: u32,
    },
    /// The update declares more than a slot can hold (refused before anything is written).
    SlotTooSmall {
        /// Bytes the update needs at least: slot header, its objects' bytes, an index entry.
        needed: u64,
        /// Bytes of a slot.
        slot_size: u32,
    },
    /// An object longer than a slot can ever hold.
    TooLarge {
        /// Its length.
        len: u64,
    },
    /// A slot's contents do not agree with its header (bad index entry, dangling reference).
    Corrupted {
        /// The slot.
        slot: FlashSlot,
        /// Slot-relative offset of the bad data.
        offset: u32,
    },
    /// Bytes read back from flash after writing do not hash to the object's id.
    Verify {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// A reused tree nests deeper than [`MAX_TREE_DEPTH`].
    TreeTooDeep,
    /// The commit to stage is not in the inactive slot.
    MissingCommit(ObjectId),
    /// The commit's root directory has no regular file [`IMAGE_NAME`](super::IMAGE_NAME).
    NoImage,
    /// The store was called out of sequence (a bug in the caller, would otherwise panic).
    Sequence(&'static str),
}

impl<E: fmt::Debug> fmt::Display for FlashStoreError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashStoreError::Flash(e) => write!(f, "the flash driver failed: {e:?}"),
            FlashStoreError::Layout(why) => write!(f, "the flash slot layout is wrong: {why}"),
            FlashStoreError::NoSpace { needed, free } => write!(
                f,
                "the inactive slot is full: {needed} bytes needed, {free} free; make the slots larger or the image smaller"
            ),
            FlashStoreError::SlotTooSmall { needed, slot_size } => write!(
                f,
                "the update needs at least {needed} bytes of a flash slot but a slot holds {slot_size}; nothing was written: make the slots larger or the image smaller"
            ),
            FlashStoreError::TooLarge { len } => write!(f, "an object of {len} bytes cannot fit in a slot"),
            FlashStoreError::Corrupted { slot, offset } => write!(
                f,
                "slot {slot} is corrupted at offset {offset:#x}; install a from-scratch update"
            ),
            FlashStoreError::Verify { kind, id } => write!(
                f,
                "{kind} {id} reads back from flash with a different hash; the flash may be worn, retry the install"
            ),
            FlashStoreError::TreeTooDeep => {
                write!(f, "a reused directory tree nests deeper than {MAX_TREE_DEPTH} levels")
            }
            FlashStoreError::MissingCommit(id) => {
                write!(f, "commit {id} was not written to the inactive slot before being staged")
            }
            FlashStoreError::NoImage => {
                f.write_str("the commit has no regular file `firmware.bin` at its root; a bootloader would have nothing to start")
            }
            FlashStoreError::Sequence(what) => write!(f, "flash store called out of sequence: {what}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for FlashStoreError<E> {}

/// The store's results.
pub(super) type Result<T, E> = core::result::Result<T, FlashStoreError<E>>;
