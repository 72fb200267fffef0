//! An A/B object store on NOR flash, over `embedded-storage`'s [`NorFlash`].
//!
//! Two slot regions of one device hold one commit each. An install writes the **inactive**
//! slot only; the **active** slot (the one booted) is only ever read, to copy the objects a
//! delta reuses. Nothing is kept in RAM between calls beyond a few cursors, a 512-byte
//! buffer and a bounded tree-walk stack: the store costs about 1 KiB of RAM whatever the
//! image size (see [`FlashStore`]).
//!
//! # Slot layout (`docs/FLASH.md` has the byte tables)
//!
//! ```text
//! slot start                                                          slot end
//! | header | object data, appended upward ->   ...   <- index entries, appended downward |
//! ```
//!
//! - **Objects** are stored whole (canonical bytes, exactly as hashed), each starting on a
//!   `WRITE_SIZE` boundary, in the order the install delivers them.
//! - **Index entries** (48 bytes each, rounded up to `WRITE_SIZE`) name each object: kind,
//!   slot-relative offset, length, id, CRC-32. The first entry is at the end of the slot, the
//!   next below it. An entry is written only after the object's bytes were read back from
//!   flash and their SHA-256 matched its id.
//! - **The header** (96 bytes at the slot start) is written **last**, by [`Store::commit`](crate::store::Store::commit):
//!   magic, commit id, entry count, and where the image a bootloader starts lies: the content
//!   of the file `firmware.bin` at the root of the commit's tree ([`IMAGE_NAME`]), with its
//!   slot-relative offset, length and SHA-256, and a CRC-32 over the header. A bootloader
//!   copies or executes `[image_offset, image_offset + image_len)` without parsing objects.
//!
//! A slot is valid only when its header is: right magic, right version, right CRC, fields in
//! range. The first thing an install does is erase the sector holding the inactive slot's
//! header, so a slot that is being written, or was cut off halfway, has no valid header and
//! is never taken for an installed commit. Every other sector is erased just before the
//! install first writes into it.
//!
//! # Calling sequence
//!
//! The installer drives the [`Store`](crate::store::Store) methods. After [`Store::commit`](crate::store::Store::commit) returns, the inactive
//! slot holds a complete, verified commit ([`FlashStore::staged`] describes it); the caller then
//! switches the boot state (for a microcontroller, `bootloader-hooks`' flash record) so that
//! the bootloader tries that slot at the next boot. After that boot, the caller builds the
//! store again with the new slot as the active one.
//!
//! Before an install erases the inactive slot, the boot state must not name it as a slot to
//! try (a new install over a staged but untried slot must first roll the boot state back); a
//! bootloader must also check the slot header (and may check the image SHA-256) before it
//! starts an image, and fall back when the header is not valid.

use core::fmt;

use embedded_storage::nor_flash::NorFlash;

use crate::object::{ObjectId, ObjectKind};

mod error;
mod index;
mod layout;
#[cfg(any(test, feature = "_test-flash"))]
pub mod model;
mod slot;
mod store;
mod tree;

pub use error::FlashStoreError;
use error::Result;
use index::{Chains, Trust};
pub(crate) use layout::crc32;
use layout::round_up;

/// Name of the file, at the root of a commit's tree, whose content is the image a bootloader
/// starts. Its place in the slot is recorded in the slot header.
pub const IMAGE_NAME: &[u8] = b"firmware.bin";
/// The slot header's magic.
pub const SLOT_MAGIC: [u8; 8] = *b"ECUSLOT1";
/// Version of the slot layout this store reads and writes.
pub const SLOT_VERSION: u32 = 1;
/// Bytes of the slot header (rounded up to `WRITE_SIZE` on the device).
pub const HEADER_LEN: usize = 96;
/// Bytes of an index entry (rounded up to `WRITE_SIZE` on the device).
pub const ENTRY_LEN: usize = 48;
/// Bytes of the store's copy and write buffer (in the store, not on the stack). `WRITE_SIZE`
/// must divide it.
pub const BUF_LEN: usize = 512;
/// Deepest directory nesting a reused dirtree may have below it. Each level costs 16 bytes of
/// the store's RAM; a deeper tree is refused with [`FlashStoreError::TreeTooDeep`].
pub const MAX_TREE_DEPTH: usize = 32;
/// Look-up buckets per slot (see [`FlashStore`]): the store keeps the head of each bucket's
/// chain in RAM (2 bytes), and a look-up reads only the entries of one bucket.
pub const INDEX_BUCKETS: usize = 120;
/// `image_offset` in a header whose commit has no image (never written by this store).
const NO_IMAGE: u32 = u32::MAX;
/// Kind byte of an index entry that marks a resume checkpoint: its data is the 96-byte
/// [`Checkpoint`](crate::install::Checkpoint) encoding, its id that encoding's SHA-256. The position after it is kept
/// erased for a link.
pub const ENTRY_CHECKPOINT: u8 = 0xC0;
/// Kind byte of an index entry written when an install resumes: its offset field is the
/// position where the index goes on (the positions between hold what the interrupted attempt
/// wrote after its checkpoint); that position is kept erased for the next link.
pub const ENTRY_LINK: u8 = 0xC1;

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FlashSlot {
    /// The first slot region.
    A,
    /// The second slot region.
    B,
}

impl FlashSlot {
    /// The other slot.
    pub const fn other(self) -> FlashSlot {
        match self {
            FlashSlot::A => FlashSlot::B,
            FlashSlot::B => FlashSlot::A,
        }
    }

    /// 0 for A, 1 for B.
    pub const fn index(self) -> usize {
        match self {
            FlashSlot::A => 0,
            FlashSlot::B => 1,
        }
    }
}

impl fmt::Display for FlashSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlashSlot::A => "A",
            FlashSlot::B => "B",
        })
    }
}

/// Where the two slots are on the device: byte offsets of their starts and their common size.
/// Both must be multiples of the device's `ERASE_SIZE`, inside the device, and apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FlashLayout {
    /// Device offsets of slot A and slot B.
    pub slots: [u32; 2],
    /// Bytes of each slot.
    pub slot_size: u32,
}

impl FlashLayout {
    /// Device offset of the start of `slot`.
    pub const fn start(&self, slot: FlashSlot) -> u32 {
        self.slots[slot.index()]
    }
}

/// A valid slot header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotInfo {
    /// The slot.
    pub slot: FlashSlot,
    /// The commit it holds.
    pub commit: ObjectId,
    /// Objects in its index.
    pub objects: u32,
    /// Slot-relative end of its object data.
    pub data_end: u32,
    /// Device offset of the image (`firmware.bin`'s content).
    pub image_offset: u32,
    /// Bytes of the image.
    pub image_len: u32,
    /// SHA-256 of the image.
    pub image_sha256: [u8; 32],
}

/// The object being written.
#[derive(Clone, Copy, Debug)]
struct Open {
    kind: ObjectKind,
    id: ObjectId,
    /// Slot-relative start.
    start: u32,
    len: u32,
    /// Bytes received so far.
    received: u32,
    /// Bytes flushed to flash (a multiple of `BUF_LEN`).
    flushed: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No install in progress.
    Idle,
    /// An install is writing the inactive slot.
    Writing,
    /// The inactive slot holds a staged commit.
    Staged(SlotInfo),
}

/// A frame of the explicit stack that walks a reused dirtree.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Index position of the dirtree's entry in the active slot.
    index: u32,
    /// Slot-relative end of the dirtree object.
    end: u32,
    /// Slot-relative offset of its next directory entry.
    cursor: u32,
    /// Directory entries left.
    remaining: u32,
}

/// An A/B object store on a NOR flash device `F`. See the [module docs](self).
///
/// RAM: the device handle, [`BUF_LEN`] bytes of buffer, [`MAX_TREE_DEPTH`] walk frames of
/// 16 bytes, two slots' look-up chain heads ([`INDEX_BUCKETS`] × 2 bytes) and about 200 bytes
/// of cursors (`size_of::<FlashStore<F>>()` is checked by a test).
///
/// Look-ups: each index entry belongs to one of [`INDEX_BUCKETS`] buckets (by two bytes of its
/// id) and records, in its chain field, the previous entry of its bucket; the store keeps each
/// bucket's newest entry in RAM, built by one walk of the index when first needed (after
/// [`FlashStore::new`], [`FlashStore::set_active`], [`FlashStore::flash`] or a resume) and
/// kept up to date as the install appends entries. A look-up reads only its bucket's entries,
/// newest first: about `entries / INDEX_BUCKETS` for an absent object, whatever the size of
/// the index. An index written without chains (by an older store) is walked whole.
pub struct FlashStore<F: NorFlash> {
    flash: F,
    layout: FlashLayout,
    active: FlashSlot,
    phase: Phase,
    /// Slot-relative end of the object data written so far (aligned).
    data_end: u32,
    /// Slot-relative end of the sectors erased from the start in this install.
    erased_low: u32,
    /// Slot-relative start of the sectors erased from the end in this install.
    erased_high: u32,
    /// Index entries written in this install.
    entries: u32,
    open: Option<Open>,
    /// Bytes of the open object waiting in `buf`.
    fill: usize,
    buf: [u8; BUF_LEN],
    walk: heapless::Vec<Frame, MAX_TREE_DEPTH>,
    /// Look-up chains of slot A and slot B.
    chains: [Chains; 2],
}

impl<F: NorFlash> FlashStore<F> {
    const HEADER_AREA: u32 = round_up(HEADER_LEN, F::WRITE_SIZE) as u32;
    const ENTRY_AREA: u32 = round_up(ENTRY_LEN, F::WRITE_SIZE) as u32;
    const E: u32 = F::ERASE_SIZE as u32;

    /// A store over `flash` with the slots of `layout`, `active` being the slot that was
    /// booted (the one a delta's source commit must be in).
    ///
    /// Fails with [`FlashStoreError::Layout`] when the device's geometry or the layout does
    /// not suit the store: `READ_SIZE` must be 1, `WRITE_SIZE` must divide [`BUF_LEN`], slots
    /// must be sector-aligned, inside the device, apart, and large enough for a header.
    pub fn new(flash: F, layout: FlashLayout, active: FlashSlot) -> Result<Self, F::Error> {
        let w = F::WRITE_SIZE;
        let e = F::ERASE_SIZE;
        let check = |ok: bool, why: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(FlashStoreError::Layout(why))
            }
        };
        check(
            F::READ_SIZE == 1,
            "the device must be readable byte by byte (READ_SIZE 1)",
        )?;
        check(
            w > 0 && BUF_LEN.is_multiple_of(w),
            "WRITE_SIZE must divide 512",
        )?;
        check(
            e > 0 && e.is_multiple_of(w),
            "ERASE_SIZE must be a multiple of WRITE_SIZE",
        )?;
        let size = layout.slot_size as usize;
        check(
            size.is_multiple_of(e) && size >= 2 * e,
            "the slot size must be at least two sectors, in whole sectors",
        )?;
        for s in layout.slots {
            check(
                (s as usize).is_multiple_of(e),
                "slots must start on a sector boundary",
            )?;
            check(
                (s as usize)
                    .checked_add(size)
                    .is_some_and(|end| end <= flash.capacity()),
                "a slot ends past the end of the device",
            )?;
        }
        let (a, b) = (layout.slots[0] as usize, layout.slots[1] as usize);
        check(a + size <= b || b + size <= a, "the slots overlap")?;
        Ok(FlashStore {
            flash,
            layout,
            active,
            phase: Phase::Idle,
            data_end: 0,
            erased_low: 0,
            erased_high: 0,
            entries: 0,
            open: None,
            fill: 0,
            buf: [0xFF; BUF_LEN],
            walk: heapless::Vec::new(),
            chains: [Chains::UNBUILT; 2],
        })
    }

    /// The slot that was booted: read only.
    pub fn active(&self) -> FlashSlot {
        self.active
    }

    /// After a reboot into `active`, in place (no temporaries): forgets any install state and
    /// takes `active` as the booted slot.
    pub fn set_active(&mut self, active: FlashSlot) {
        self.active = active;
        self.phase = Phase::Idle;
        self.open = None;
        self.fill = 0;
        self.entries = 0;
        self.walk.clear();
        self.forget_chains();
    }

    /// Both slots' chains are built again at their next look-up.
    fn forget_chains(&mut self) {
        for c in &mut self.chains {
            c.trust = Trust::Unbuilt;
        }
    }

    /// The slot installs write.
    pub fn inactive(&self) -> FlashSlot {
        self.active.other()
    }

    /// The layout.
    pub fn layout(&self) -> FlashLayout {
        self.layout
    }

    /// What the last [`Store::commit`](crate::store::Store::commit) staged in the inactive slot, until another install
    /// starts.
    pub fn staged(&self) -> Option<SlotInfo> {
        match self.phase {
            Phase::Staged(info) => Some(info),
            _ => None,
        }
    }

    /// The flash device. The store reads the slots' indexes again at its next look-up (what
    /// is done with the device is not the store's to know).
    pub fn flash(&mut self) -> &mut F {
        self.forget_chains();
        &mut self.flash
    }

    /// Gives the flash device back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    fn abs(&self, slot: FlashSlot, rel: u32) -> u32 {
        self.layout.start(slot) + rel
    }

    fn read(&mut self, slot: FlashSlot, rel: u32, out: &mut [u8]) -> Result<(), F::Error> {
        if rel as usize + out.len() > self.layout.slot_size as usize {
            return Err(FlashStoreError::Corrupted { slot, offset: rel });
        }
        let at = self.abs(slot, rel);
        self.flash.read(at, out).map_err(FlashStoreError::Flash)
    }

    /// Reads `n` bytes at `rel` of `slot` into the store's buffer.
    fn read_buf(&mut self, slot: FlashSlot, rel: u32, n: usize) -> Result<(), F::Error> {
        if rel as usize + n > self.layout.slot_size as usize {
            return Err(FlashStoreError::Corrupted { slot, offset: rel });
        }
        let at = self.layout.start(slot) + rel;
        self.flash
            .read(at, &mut self.buf[..n])
            .map_err(FlashStoreError::Flash)
    }
}
