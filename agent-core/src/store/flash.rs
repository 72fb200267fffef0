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
//! - **The header** (96 bytes at the slot start) is written **last**, by [`Store::commit`]:
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
//! The installer drives the [`Store`] methods. After [`Store::commit`] returns, the inactive
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
use sha2::{Digest, Sha256};

use crate::install::{Checkpoint, CHECKPOINT_LEN};
use crate::object::{
    commit_roots, dir_entry_len, FileHeader, ObjectId, ObjectKind, COMMIT_HEADER_LEN,
    FILE_HEADER_LEN, ID_LEN,
};
use crate::store::{Declared, Store};

#[cfg(any(test, feature = "_test-flash"))]
pub mod model;

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
/// Index positions per slot whose entries the store keeps a one-byte print of in RAM (see
/// [`FlashStore`]): a look-up reads only the entries whose print matches among these, and
/// walks the index on flash only past them.
pub const INDEX_PRINTS: usize = 240;
/// `image_offset` in a header whose commit has no image (never written by this store).
const NO_IMAGE: u32 = u32::MAX;
/// Kind byte of an index entry that marks a resume checkpoint: its data is the 96-byte
/// [`Checkpoint`] encoding, its id that encoding's SHA-256. The position after it is kept
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
    /// The commit's root directory has no regular file [`IMAGE_NAME`].
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

type Result<T, E> = core::result::Result<T, FlashStoreError<E>>;

/// An index entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// Position in its slot's index.
    index: u32,
    kind: ObjectKind,
    id: ObjectId,
    /// Slot-relative.
    offset: u32,
    len: u32,
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

/// A slot's index prints: for each of the first [`INDEX_PRINTS`] positions the index walk
/// visits, one byte of its entry's kind and id ([`print`]); 0 at positions the walk skips.
/// A look-up reads the entries whose print matches (a false match costs a read; the entry on
/// flash decides) and walks the index on flash from `rest` on. Never a false negative: every
/// position the walk visits below `covered` has its print, and `rest` is the first one the
/// walk visits past them.
#[derive(Clone, Copy, Debug)]
struct Prints {
    print: [u8; INDEX_PRINTS],
    /// One past the highest position printed.
    covered: u32,
    /// The first position the walk visits that has no print (`u32::MAX`: none yet).
    rest: u32,
    /// Whether the prints describe the slot; if not, the next look-up builds them by one walk.
    built: bool,
}

impl Prints {
    const UNBUILT: Prints = Prints {
        print: [0; INDEX_PRINTS],
        covered: 0,
        rest: 0,
        built: false,
    };

    /// Prints of an empty index.
    fn empty(&mut self) {
        self.print.fill(0);
        self.covered = 0;
        self.rest = u32::MAX;
        self.built = true;
    }

    /// No prints: every look-up walks the whole index (after a failed build).
    fn walk_all(&mut self) {
        self.covered = 0;
        self.rest = 0;
        self.built = true;
    }

    /// Entry `(kind, id)` is at position `i`, the next position the index walk visits.
    fn note(&mut self, i: u32, kind: ObjectKind, id: &ObjectId) {
        if self.rest != u32::MAX {
            return;
        }
        match self.print.get_mut(i as usize) {
            Some(p) => {
                *p = print(kind, id);
                self.covered = i + 1;
            }
            None => self.rest = i,
        }
    }
}

/// The print of an index entry: one byte of its id and kind, never 0.
fn print(kind: ObjectKind, id: &ObjectId) -> u8 {
    (id.0[0] ^ kind.code()).max(1)
}

/// An A/B object store on a NOR flash device `F`. See the [module docs](self).
///
/// RAM: the device handle, [`BUF_LEN`] bytes of buffer, [`MAX_TREE_DEPTH`] walk frames of
/// 16 bytes, two slots' index prints of [`INDEX_PRINTS`] bytes and about 200 bytes of cursors
/// (`size_of::<FlashStore<F>>()` is checked by a test).
///
/// Look-ups: for each slot the store keeps a one-byte print of the entry at each of the first
/// [`INDEX_PRINTS`] index positions, built by one walk of the index when first needed (after
/// [`FlashStore::new`], [`FlashStore::set_active`], [`FlashStore::flash`] or a resume) and
/// kept up to date as the install appends entries. A look-up of an absent object reads no
/// entry among these positions (one in 255 by chance), one of a present object reads it and
/// the chance matches before it; past [`INDEX_PRINTS`] positions it reads every entry as before.
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
    /// Index prints of slot A and slot B.
    prints: [Prints; 2],
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// CRC-32 (IEEE, as zlib; bitwise, no table).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn id_at(b: &[u8], at: usize) -> ObjectId {
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&b[at..at + ID_LEN]);
    ObjectId(id)
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
            prints: [Prints::UNBUILT; 2],
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
        self.forget_prints();
    }

    /// Both slots' prints are built again at their next look-up.
    fn forget_prints(&mut self) {
        for p in &mut self.prints {
            p.built = false;
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

    /// What the last [`Store::commit`] staged in the inactive slot, until another install
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
        self.forget_prints();
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

    /// The header of `slot` if it is valid, else `None`. Reads 96 bytes.
    pub fn slot_info(&mut self, slot: FlashSlot) -> Result<Option<SlotInfo>, F::Error> {
        let mut h = [0u8; HEADER_LEN];
        self.read(slot, 0, &mut h)?;
        if h[0..8] != SLOT_MAGIC || le32(&h, 8) != SLOT_VERSION || le32(&h, 92) != crc32(&h[..92]) {
            return Ok(None);
        }
        let objects = le32(&h, 12);
        let data_end = le32(&h, 48);
        let image_rel = le32(&h, 52);
        let image_len = le32(&h, 56);
        let size = u64::from(self.layout.slot_size);
        let index_low = size.checked_sub(u64::from(objects) * u64::from(Self::ENTRY_AREA));
        let fits = index_low.is_some_and(|low| {
            u64::from(data_end) <= low
                && u64::from(data_end) >= u64::from(Self::HEADER_AREA)
                && u64::from(image_rel) + u64::from(image_len) <= u64::from(data_end)
        });
        if !fits || image_rel == NO_IMAGE {
            return Ok(None);
        }
        let mut image_sha256 = [0u8; 32];
        image_sha256.copy_from_slice(&h[60..92]);
        Ok(Some(SlotInfo {
            slot,
            commit: id_at(&h, 16),
            objects,
            data_end,
            image_offset: self.abs(slot, image_rel),
            image_len,
            image_sha256,
        }))
    }

    /// Checks every byte of a valid slot: each index entry's CRC, each object's SHA-256, and
    /// the image's SHA-256. Returns the header, or `None` when the slot has no valid header.
    pub fn verify_slot(&mut self, slot: FlashSlot) -> Result<Option<SlotInfo>, F::Error> {
        let Some(info) = self.slot_info(slot)? else {
            return Ok(None);
        };
        let mut i = 0;
        while i < info.objects {
            let e = self.entry(slot, i, info.data_end)?;
            if self.hash(slot, e.offset, e.len)? != e.id.0 {
                return Err(FlashStoreError::Verify {
                    kind: e.kind,
                    id: e.id,
                });
            }
            i = self.next_position(slot, &e)?;
        }
        let rel = info.image_offset - self.layout.start(slot);
        if self.hash(slot, rel, info.image_len)? != info.image_sha256 {
            return Err(FlashStoreError::Corrupted { slot, offset: rel });
        }
        Ok(Some(info))
    }

    /// Reads `out.len()` bytes of `slot`'s image starting `at` bytes into it; returns how many
    /// were read (fewer at the end of the image, 0 when the slot is not valid).
    pub fn read_image(
        &mut self,
        slot: FlashSlot,
        at: u32,
        out: &mut [u8],
    ) -> Result<usize, F::Error> {
        let Some(info) = self.slot_info(slot)? else {
            return Ok(0);
        };
        let n = (info.image_len.saturating_sub(at) as usize).min(out.len());
        let rel = info.image_offset - self.layout.start(slot) + at;
        self.read(slot, rel, &mut out[..n])?;
        Ok(n)
    }

    /// SHA-256 of `len` bytes of `slot` from `rel`, through the store's buffer.
    fn hash(&mut self, slot: FlashSlot, rel: u32, len: u32) -> Result<[u8; 32], F::Error> {
        let mut h = Sha256::new();
        let mut done = 0u32;
        while done < len {
            let n = (len - done).min(BUF_LEN as u32) as usize;
            self.read_buf(slot, rel + done, n)?;
            h.update(&self.buf[..n]);
            done += n as u32;
        }
        Ok(h.finalize().into())
    }

    /// Index entry `i` of `slot`, checked against its CRC and the slot's data area.
    fn entry(&mut self, slot: FlashSlot, i: u32, data_end: u32) -> Result<Entry, F::Error> {
        let at = self.layout.slot_size - (i + 1) * Self::ENTRY_AREA;
        let mut b = [0u8; ENTRY_LEN];
        self.read(slot, at, &mut b)?;
        let offset = le32(&b, 4);
        let len = le32(&b, 8);
        let kind = ObjectKind::from_code(b[0]);
        let ok = le32(&b, 44) == crc32(&b[..44])
            && (!matches!(kind, ObjectKind::Unknown(_)) || b[0] == ENTRY_CHECKPOINT)
            && u64::from(offset) + u64::from(len) <= u64::from(data_end);
        if !ok {
            return Err(FlashStoreError::Corrupted { slot, offset: at });
        }
        Ok(Entry {
            index: i,
            kind,
            id: id_at(&b, 12),
            offset,
            len,
        })
    }

    /// Finds `(kind, id)` among the first `count` entries of `slot`: the first entry the index
    /// walk meets, reading only the entries whose print matches and the index past the prints.
    fn find(
        &mut self,
        slot: FlashSlot,
        count: u32,
        data_end: u32,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<Entry>, F::Error> {
        let s = slot.index();
        if !self.prints[s].built {
            self.build_prints(slot, count, data_end);
        }
        let want = print(kind, id);
        let covered = self.prints[s].covered.min(count);
        for i in 0..covered {
            if self.prints[s].print[i as usize] == want {
                let e = self.entry(slot, i, data_end)?;
                if e.kind == kind && e.id == *id {
                    return Ok(Some(e));
                }
            }
        }
        self.walk_from(self.prints[s].rest, slot, count, data_end, kind, id)
    }

    /// Builds the prints of `slot` by one walk of its first `count` entries; if the walk fails,
    /// look-ups walk the whole index (and meet the failure where they did before).
    fn build_prints(&mut self, slot: FlashSlot, count: u32, data_end: u32) {
        let s = slot.index();
        self.prints[s].empty();
        let mut i = 0;
        while i < count && self.prints[s].rest == u32::MAX {
            if i as usize >= INDEX_PRINTS {
                self.prints[s].rest = i;
                break;
            }
            let next = match self.entry(slot, i, data_end) {
                Ok(e) => {
                    self.prints[s].note(i, e.kind, &e.id);
                    self.next_position(slot, &e)
                }
                Err(e) => Err(e),
            };
            match next {
                Ok(n) => i = n,
                Err(_) => {
                    self.prints[s].walk_all();
                    return;
                }
            }
        }
    }

    /// Walks the index of `slot` from position `i` (a position the walk visits) for
    /// `(kind, id)`.
    fn walk_from(
        &mut self,
        mut i: u32,
        slot: FlashSlot,
        count: u32,
        data_end: u32,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<Entry>, F::Error> {
        while i < count {
            let e = self.entry(slot, i, data_end)?;
            if e.kind == kind && e.id == *id {
                return Ok(Some(e));
            }
            i = self.next_position(slot, &e)?;
        }
        Ok(None)
    }

    /// Slot-relative start of index position `i`, if it lies inside the slot.
    fn position(&self, i: u32) -> Option<u32> {
        i.checked_add(1)
            .and_then(|n| n.checked_mul(Self::ENTRY_AREA))
            .and_then(|n| self.layout.slot_size.checked_sub(n))
    }

    /// The position after entry `e`: the next one, or after a checkpoint, past its reserved
    /// position and the links resumed installs wrote there.
    fn next_position(&mut self, slot: FlashSlot, e: &Entry) -> Result<u32, F::Error> {
        if e.kind != ObjectKind::Unknown(ENTRY_CHECKPOINT) {
            return Ok(e.index + 1);
        }
        let (_, free) = self.reserved_after(slot, e.index)?;
        Ok(free + 1)
    }

    /// Follows the links from the position reserved after checkpoint `i`: returns how many
    /// links there were and the reserved position at the end of the chain.
    fn reserved_after(&mut self, slot: FlashSlot, i: u32) -> Result<(u32, u32), F::Error> {
        let mut pos = i + 1;
        let mut links = 0;
        while let Some(next) = self.link_at(slot, pos)? {
            // Links only go further down the index.
            if next <= pos {
                return Err(FlashStoreError::Corrupted {
                    slot,
                    offset: self.position(pos).unwrap_or(0),
                });
            }
            pos = next;
            links += 1;
        }
        Ok((links, pos))
    }

    /// The target of the link at position `pos`, if a valid link is there.
    fn link_at(&mut self, slot: FlashSlot, pos: u32) -> Result<Option<u32>, F::Error> {
        let Some(at) = self.position(pos) else {
            return Ok(None);
        };
        let mut b = [0u8; ENTRY_LEN];
        self.read(slot, at, &mut b)?;
        let ok = b[0] == ENTRY_LINK && le32(&b, 44) == crc32(&b[..44]);
        Ok(ok.then(|| le32(&b, 4)))
    }

    /// Whether the `n` bytes at slot-relative `at` of `slot` are all erased (`0xFF`).
    fn erased(&mut self, slot: FlashSlot, at: u32, n: u32) -> Result<bool, F::Error> {
        let mut done = 0;
        while done < n {
            let k = (n - done).min(BUF_LEN as u32) as usize;
            self.read_buf(slot, at + done, k)?;
            if self.buf[..k].iter().any(|&b| b != 0xFF) {
                return Ok(false);
            }
            done += k as u32;
        }
        Ok(true)
    }

    /// The checkpoint of the last verified part of the install that was interrupted in the
    /// inactive slot (by a power cut, a reset or an abandoned transfer), if there is one: give
    /// it to [`crate::install::Installer::resume`] with the same file, and the install
    /// continues after that part ([`Store::resume`] checks every object before it again).
    /// `None` when the inactive slot holds a valid (staged) commit or no checkpoint.
    pub fn saved_checkpoint(&mut self) -> Result<Option<Checkpoint>, F::Error> {
        let slot = self.inactive();
        if self.slot_info(slot)?.is_some() {
            return Ok(None);
        }
        let mut last = None;
        let mut i = 0;
        let max = self.layout.slot_size / Self::ENTRY_AREA;
        while i < max {
            let Ok(e) = self.entry(slot, i, self.layout.slot_size) else {
                break;
            };
            if e.kind == ObjectKind::Unknown(ENTRY_CHECKPOINT) {
                match self.checkpoint_blob(slot, &e)? {
                    Some(cp) => last = Some(cp),
                    None => break,
                }
            }
            i = match self.next_position(slot, &e) {
                Ok(n) => n,
                Err(_) => break,
            };
        }
        Ok(last)
    }

    /// The checkpoint a checkpoint entry names, if its data is intact.
    fn checkpoint_blob(
        &mut self,
        slot: FlashSlot,
        e: &Entry,
    ) -> Result<Option<Checkpoint>, F::Error> {
        if e.len as usize != CHECKPOINT_LEN {
            return Ok(None);
        }
        let mut b = [0u8; CHECKPOINT_LEN];
        self.read(slot, e.offset, &mut b)?;
        if ObjectId::of(&b) != e.id {
            return Ok(None);
        }
        Ok(Checkpoint::from_bytes(&b).ok())
    }

    /// Finds an object in the install in progress.
    fn find_new(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<Option<Entry>, F::Error> {
        if self.phase != Phase::Writing {
            return Ok(None);
        }
        let (slot, count, end) = (self.inactive(), self.entries, self.data_end);
        self.find(slot, count, end, kind, id)
    }

    /// Finds an object in the active slot, if it is valid.
    fn find_active(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<Option<Entry>, F::Error> {
        let slot = self.active;
        match self.slot_info(slot)? {
            Some(info) => self.find(slot, info.objects, info.data_end, kind, id),
            None => Ok(None),
        }
    }

    /// Starts an install on the first call that writes: invalidates the inactive slot's
    /// header by erasing its first sector.
    fn begin(&mut self) -> Result<(), F::Error> {
        if self.phase == Phase::Writing {
            return Ok(());
        }
        info!(
            "flash store: erasing the header of slot {}",
            self.inactive()
        );
        self.phase = Phase::Writing;
        let slot = self.inactive().index();
        self.prints[slot].empty();
        self.erased_low = 0;
        self.erased_high = self.layout.slot_size;
        self.entries = 0;
        self.open = None;
        self.fill = 0;
        self.data_end = Self::HEADER_AREA;
        // The header sector first: from here on the slot is not valid.
        self.erase_up_to(Self::HEADER_AREA)
    }

    /// Erases sectors from the bottom so that `[0, end)` of the inactive slot is erased.
    fn erase_up_to(&mut self, end: u32) -> Result<(), F::Error> {
        while self.erased_low < end {
            let s = self.erased_low;
            if s < self.erased_high {
                let at = self.abs(self.inactive(), s);
                self.flash
                    .erase(at, at + Self::E)
                    .map_err(FlashStoreError::Flash)?;
            }
            self.erased_low = s + Self::E;
        }
        Ok(())
    }

    /// Erases sectors from the top so that `[start, slot_size)` of the inactive slot is erased.
    fn erase_down_to(&mut self, start: u32) -> Result<(), F::Error> {
        while self.erased_high > start {
            let s = self.erased_high - Self::E;
            if s >= self.erased_low {
                let at = self.abs(self.inactive(), s);
                self.flash
                    .erase(at, at + Self::E)
                    .map_err(FlashStoreError::Flash)?;
            }
            self.erased_high = s;
        }
        Ok(())
    }

    /// Checks that an object of `len` bytes and its index entry fit.
    fn reserve(&mut self, len: u64) -> Result<u32, F::Error> {
        let len32 = u32::try_from(len)
            .ok()
            .filter(|&l| l <= self.layout.slot_size)
            .ok_or(FlashStoreError::TooLarge { len })?;
        let needed = round_up(len32 as usize, F::WRITE_SIZE) as u64 + u64::from(Self::ENTRY_AREA);
        let index_low = u64::from(self.layout.slot_size)
            - u64::from(self.entries) * u64::from(Self::ENTRY_AREA);
        let free = index_low.saturating_sub(u64::from(self.data_end));
        if needed > free {
            return Err(FlashStoreError::NoSpace {
                needed: needed as u32,
                free: free as u32,
            });
        }
        Ok(len32)
    }

    /// Writes `buf[..n]` (padded with `0xFF` to `WRITE_SIZE`) at slot-relative `rel` of the
    /// inactive slot, erasing sectors first as needed. Returns the padded length.
    fn program(&mut self, rel: u32, n: usize) -> Result<u32, F::Error> {
        let padded = round_up(n, F::WRITE_SIZE);
        self.buf[n..padded].fill(0xFF);
        let end = rel + padded as u32;
        self.erase_up_to(end)?;
        let at = self.abs(self.inactive(), rel);
        self.flash
            .write(at, &self.buf[..padded])
            .map_err(FlashStoreError::Flash)?;
        Ok(padded as u32)
    }

    /// Appends an index entry for an object whose bytes were verified in place.
    fn push_entry(&mut self, e: Entry) -> Result<(), F::Error> {
        let at = self.layout.slot_size - (self.entries + 1) * Self::ENTRY_AREA;
        self.erase_down_to(at)?;
        let area = Self::ENTRY_AREA as usize;
        self.buf[..area].fill(0xFF);
        self.buf[0] = e.kind.code();
        self.buf[1..4].fill(0);
        self.buf[4..8].copy_from_slice(&e.offset.to_le_bytes());
        self.buf[8..12].copy_from_slice(&e.len.to_le_bytes());
        self.buf[12..44].copy_from_slice(&e.id.0);
        let crc = crc32(&self.buf[..44]);
        self.buf[44..48].copy_from_slice(&crc.to_le_bytes());
        let abs = self.abs(self.inactive(), at);
        self.flash
            .write(abs, &self.buf[..area])
            .map_err(FlashStoreError::Flash)?;
        let slot = self.inactive().index();
        self.prints[slot].note(self.entries, e.kind, &e.id);
        self.entries += 1;
        Ok(())
    }

    /// Reads back `len` bytes at `rel` of the inactive slot and checks they hash to `id`.
    fn verify_new(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        rel: u32,
        len: u32,
    ) -> Result<(), F::Error> {
        let slot = self.inactive();
        if self.hash(slot, rel, len)? != id.0 {
            return Err(FlashStoreError::Verify { kind, id: *id });
        }
        Ok(())
    }

    /// Copies an object from the active slot into the inactive one, verifies and indexes it.
    fn copy(&mut self, src: Entry) -> Result<(), F::Error> {
        self.reserve(u64::from(src.len))?;
        let dst = self.data_end;
        let mut done = 0u32;
        while done < src.len {
            let n = (src.len - done).min(BUF_LEN as u32) as usize;
            self.read_buf(self.active, src.offset + done, n)?;
            self.program(dst + done, n)?;
            done += n as u32;
        }
        self.data_end = dst + round_up(src.len as usize, F::WRITE_SIZE) as u32;
        self.verify_new(src.kind, &src.id, dst, src.len)?;
        self.push_entry(Entry {
            index: self.entries,
            offset: dst,
            ..src
        })
    }

    /// Copies `(kind, id)` from the active slot unless the install already has it.
    fn ensure(&mut self, kind: ObjectKind, id: &ObjectId, parent: u32) -> Result<(), F::Error> {
        if self.find_new(kind, id)?.is_some() {
            return Ok(());
        }
        match self.find_active(kind, id)? {
            Some(e) => self.copy(e),
            // The active slot names an object it does not hold.
            None => Err(FlashStoreError::Corrupted {
                slot: self.active,
                offset: parent,
            }),
        }
    }

    /// Copies a dirtree and everything under it, children before parents, with an explicit
    /// stack of at most [`MAX_TREE_DEPTH`] frames.
    fn copy_tree(&mut self, root: Entry) -> Result<(), F::Error> {
        let active = self.active;
        let data_end = self.slot_info(active)?.map_or(0, |i| i.data_end);
        self.walk.clear();
        self.push_frame(root)?;
        loop {
            let Some(top) = self.walk.last().copied() else {
                return Ok(());
            };
            if top.remaining == 0 {
                self.walk.pop();
                let src = self.entry(active, top.index, data_end)?;
                if self.find_new(ObjectKind::DirTree, &src.id)?.is_none() {
                    self.copy(src)?;
                }
                continue;
            }
            let end = top.end;
            let parent = top.cursor;
            let bad = || FlashStoreError::Corrupted {
                slot: active,
                offset: top.cursor,
            };
            let mut head = [0u8; 2];
            if top.cursor + 2 > end {
                return Err(bad());
            }
            self.read(active, top.cursor, &mut head)?;
            let len = dir_entry_len(head[0], head[1]).ok_or_else(bad)? as u32;
            if top.cursor + len > end {
                return Err(bad());
            }
            let mut ids = [0u8; 2 * ID_LEN];
            let n = len as usize - 2 - usize::from(head[1]);
            self.read(active, top.cursor + 2 + u32::from(head[1]), &mut ids[..n])?;
            if let Some(f) = self.walk.last_mut() {
                f.cursor += len;
                f.remaining -= 1;
            }
            let first = id_at(&ids, 0);
            if head[0] == 1 {
                self.ensure(ObjectKind::File, &first, parent)?;
            } else {
                self.ensure(ObjectKind::DirMeta, &id_at(&ids, ID_LEN), parent)?;
                if self.find_new(ObjectKind::DirTree, &first)?.is_none() {
                    let sub = self.find_active(ObjectKind::DirTree, &first)?.ok_or(
                        FlashStoreError::Corrupted {
                            slot: active,
                            offset: parent,
                        },
                    )?;
                    self.push_frame(sub)?;
                }
            }
        }
    }

    fn push_frame(&mut self, src: Entry) -> Result<(), F::Error> {
        self.push_frame_in(self.active, src)
    }

    fn push_frame_in(&mut self, slot: FlashSlot, src: Entry) -> Result<(), F::Error> {
        let mut count = [0u8; 4];
        if src.len < 4 {
            return Err(FlashStoreError::Corrupted {
                slot,
                offset: src.offset,
            });
        }
        self.read(slot, src.offset, &mut count)?;
        let frame = Frame {
            index: src.index,
            end: src.offset + src.len,
            cursor: src.offset + 4,
            remaining: u32::from_le_bytes(count),
        };
        self.walk
            .push(frame)
            .map_err(|_| FlashStoreError::TreeTooDeep)
    }

    /// Finds the image file of the commit `id` in the install in progress.
    /// The depth of dirtree `id` written or reused by this install: a walk of its tree in the
    /// inactive slot with the store's bounded stack (a tree deeper than [`MAX_TREE_DEPTH`] is
    /// [`FlashStoreError::TreeTooDeep`]). `None` when the dirtree is not in the slot.
    fn new_tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, F::Error> {
        let slot = self.inactive();
        let Some(root) = self.find_new(ObjectKind::DirTree, id)? else {
            return Ok(None);
        };
        self.walk.clear();
        self.push_frame_in(slot, root)?;
        let mut deepest = 0usize;
        while let Some(top) = self.walk.last().copied() {
            if top.remaining == 0 {
                self.walk.pop();
                continue;
            }
            let bad = FlashStoreError::Corrupted {
                slot,
                offset: top.cursor,
            };
            let mut head = [0u8; 2];
            if top.cursor + 2 > top.end {
                return Err(bad);
            }
            self.read(slot, top.cursor, &mut head)?;
            let Some(len) = dir_entry_len(head[0], head[1]) else {
                return Err(bad);
            };
            let len = len as u32;
            if top.cursor + len > top.end {
                return Err(bad);
            }
            if let Some(f) = self.walk.last_mut() {
                f.cursor += len;
                f.remaining -= 1;
            }
            if head[0] != 1 {
                let mut tree = [0u8; ID_LEN];
                self.read(slot, top.cursor + 2 + u32::from(head[1]), &mut tree)?;
                let sub = self
                    .find_new(ObjectKind::DirTree, &ObjectId(tree))?
                    .ok_or(bad)?;
                self.push_frame_in(slot, sub)?;
                deepest = deepest.max(self.walk.len() - 1);
            }
        }
        Ok(Some(deepest as u16))
    }

    fn find_image(&mut self, id: &ObjectId) -> Result<(u32, u32), F::Error> {
        let slot = self.inactive();
        let commit = self
            .find_new(ObjectKind::Commit, id)?
            .ok_or(FlashStoreError::MissingCommit(*id))?;
        let bad = || FlashStoreError::Corrupted {
            slot,
            offset: commit.offset,
        };
        let mut ch = [0u8; COMMIT_HEADER_LEN];
        if (commit.len as usize) < COMMIT_HEADER_LEN {
            return Err(bad());
        }
        self.read(slot, commit.offset, &mut ch)?;
        let (root, _) = commit_roots(&ch);
        let tree = self.find_new(ObjectKind::DirTree, &root)?.ok_or_else(bad)?;
        let end = tree.offset + tree.len;
        let mut count = [0u8; 4];
        if tree.len < 4 {
            return Err(bad());
        }
        self.read(slot, tree.offset, &mut count)?;
        let mut cursor = tree.offset + 4;
        for _ in 0..u32::from_le_bytes(count) {
            let mut head = [0u8; 2];
            if cursor + 2 > end {
                return Err(bad());
            }
            self.read(slot, cursor, &mut head)?;
            let len = dir_entry_len(head[0], head[1]).ok_or_else(bad)? as u32;
            if cursor + len > end {
                return Err(bad());
            }
            if head[0] == 1 && usize::from(head[1]) == IMAGE_NAME.len() {
                let mut name = [0u8; IMAGE_NAME.len()];
                self.read(slot, cursor + 2, &mut name)?;
                if name == IMAGE_NAME {
                    let mut id = [0u8; ID_LEN];
                    self.read(slot, cursor + 2 + IMAGE_NAME.len() as u32, &mut id)?;
                    let file = self
                        .find_new(ObjectKind::File, &ObjectId(id))?
                        .ok_or_else(bad)?;
                    let mut fh = [0u8; FILE_HEADER_LEN];
                    if (file.len as usize) < FILE_HEADER_LEN {
                        return Err(bad());
                    }
                    self.read(slot, file.offset, &mut fh)?;
                    let h = FileHeader::parse(&fh).map_err(|_| bad())?;
                    if h.is_symlink() || h.object_len() != u64::from(file.len) {
                        return Err(FlashStoreError::NoImage);
                    }
                    return Ok((file.offset + h.meta_len() as u32, h.size as u32));
                }
            }
            cursor += len;
        }
        Err(FlashStoreError::NoImage)
    }
}

impl<F: NorFlash> Store for FlashStore<F> {
    type Error = FlashStoreError<F::Error>;

    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, F::Error> {
        let slot = self.active;
        Ok(self.slot_info(slot)?.is_some_and(|info| info.commit == *id))
    }

    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, F::Error> {
        Ok(self.find_new(kind, id)?.is_some())
    }

    /// Refuses, before the slot is touched, an update whose objects cannot fit: the slot
    /// header, at least [`Declared::object_bytes_at_least`] bytes of objects, and the index
    /// entry of the commit.
    fn declared(&mut self, declared: &Declared) -> Result<(), F::Error> {
        let needed = u64::from(Self::HEADER_AREA)
            .saturating_add(declared.object_bytes_at_least())
            .saturating_add(u64::from(Self::ENTRY_AREA));
        let slot_size = self.layout.slot_size;
        if needed > u64::from(slot_size) {
            return Err(FlashStoreError::SlotTooSmall { needed, slot_size });
        }
        Ok(())
    }

    fn begin_object(&mut self, kind: ObjectKind, id: &ObjectId, len: u64) -> Result<(), F::Error> {
        self.begin()?;
        if self.open.is_some() {
            return Err(FlashStoreError::Sequence(
                "begin_object while an object is open",
            ));
        }
        let len = self.reserve(len)?;
        self.open = Some(Open {
            kind,
            id: *id,
            start: self.data_end,
            len,
            received: 0,
            flushed: 0,
        });
        self.fill = 0;
        Ok(())
    }

    fn write_object(&mut self, mut data: &[u8]) -> Result<(), F::Error> {
        let Some(mut o) = self.open else {
            return Err(FlashStoreError::Sequence(
                "write_object without begin_object",
            ));
        };
        if u64::from(o.received) + data.len() as u64 > u64::from(o.len) {
            return Err(FlashStoreError::Sequence(
                "write_object past the object's length",
            ));
        }
        while !data.is_empty() {
            let n = data.len().min(BUF_LEN - self.fill);
            self.buf[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            o.received += n as u32;
            data = &data[n..];
            if self.fill == BUF_LEN {
                self.program(o.start + o.flushed, BUF_LEN)?;
                o.flushed += BUF_LEN as u32;
                self.fill = 0;
            }
            self.open = Some(o);
        }
        Ok(())
    }

    fn finish_object(&mut self) -> Result<(), F::Error> {
        let Some(o) = self.open.take() else {
            return Err(FlashStoreError::Sequence(
                "finish_object without begin_object",
            ));
        };
        if o.received != o.len {
            return Err(FlashStoreError::Sequence(
                "finish_object before all bytes were written",
            ));
        }
        let mut end = o.start + o.flushed;
        if self.fill > 0 {
            end += self.program(end, self.fill)?;
            self.fill = 0;
        }
        self.data_end = end;
        self.verify_new(o.kind, &o.id, o.start, o.len)?;
        trace!("flash store: {} {} at {:x}", o.kind, o.id, o.start);
        self.push_entry(Entry {
            index: self.entries,
            kind: o.kind,
            id: o.id,
            offset: o.start,
            len: o.len,
        })
    }

    fn abort_object(&mut self) {
        if let Some(o) = self.open.take() {
            // What was programmed stays programmed: skip over it.
            self.data_end = o.start + o.flushed;
            self.fill = 0;
        }
    }

    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, F::Error> {
        self.new_tree_depth(id)
    }

    /// Reads from the active slot (the source commit of a delta), which stays read-only.
    fn read_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, F::Error> {
        let Some(e) = self.find_active(kind, id)? else {
            return Ok(None);
        };
        let start = offset.min(u64::from(e.len)) as u32;
        let n = ((e.len - start) as usize).min(buf.len());
        self.read(self.active, e.offset + start, &mut buf[..n])?;
        Ok(Some(n))
    }

    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, F::Error> {
        self.begin()?;
        if self.open.is_some() {
            return Err(FlashStoreError::Sequence(
                "reuse_object while an object is open",
            ));
        }
        if self.find_new(kind, id)?.is_some() {
            return Ok(true);
        }
        let Some(src) = self.find_active(kind, id)? else {
            return Ok(false);
        };
        if kind == ObjectKind::DirTree {
            self.copy_tree(src)?;
        } else {
            self.copy(src)?;
        }
        Ok(true)
    }

    fn commit(&mut self, _ref_name: &str, id: &ObjectId) -> Result<(), F::Error> {
        if self.phase != Phase::Writing || self.open.is_some() {
            return Err(FlashStoreError::Sequence(
                "commit without a complete install",
            ));
        }
        let slot = self.inactive();
        let (image_rel, image_len) = self.find_image(id)?;
        let image_sha256 = self.hash(slot, image_rel, image_len)?;
        let area = Self::HEADER_AREA as usize;
        let b = &mut self.buf;
        b[..area].fill(0xFF);
        b[0..8].copy_from_slice(&SLOT_MAGIC);
        b[8..12].copy_from_slice(&SLOT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.entries.to_le_bytes());
        b[16..48].copy_from_slice(&id.0);
        b[48..52].copy_from_slice(&self.data_end.to_le_bytes());
        b[52..56].copy_from_slice(&image_rel.to_le_bytes());
        b[56..60].copy_from_slice(&image_len.to_le_bytes());
        b[60..92].copy_from_slice(&image_sha256);
        let crc = crc32(&b[..92]);
        b[92..96].copy_from_slice(&crc.to_le_bytes());
        let at = self.abs(slot, 0);
        self.flash
            .write(at, &self.buf[..area])
            .map_err(FlashStoreError::Flash)?;
        let info = self
            .slot_info(slot)?
            .ok_or(FlashStoreError::Corrupted { slot, offset: 0 })?;
        info!(
            "flash store: staged commit {} in slot {} ({} objects)",
            id, slot, info.objects
        );
        self.phase = Phase::Staged(info);
        Ok(())
    }

    fn abort(&mut self) {
        self.open = None;
        self.fill = 0;
        if self.phase == Phase::Writing {
            self.phase = Phase::Idle;
        }
    }

    /// Records the checkpoint in the inactive slot: its 96 bytes as data (read back and
    /// hashed), the position after its index entry erased and kept for a link, then the entry.
    fn checkpoint(&mut self, cp: &Checkpoint) -> Result<(), F::Error> {
        if self.phase != Phase::Writing || self.open.is_some() {
            return Err(FlashStoreError::Sequence("checkpoint outside an install"));
        }
        let bytes = cp.to_bytes();
        let id = ObjectId::of(&bytes);
        let kind = ObjectKind::Unknown(ENTRY_CHECKPOINT);
        // The data, the entry and the reserved position.
        self.reserve(CHECKPOINT_LEN as u64 + u64::from(Self::ENTRY_AREA))?;
        let dst = self.data_end;
        self.buf[..CHECKPOINT_LEN].copy_from_slice(&bytes);
        let padded = self.program(dst, CHECKPOINT_LEN)?;
        self.data_end = dst + padded;
        self.verify_new(kind, &id, dst, CHECKPOINT_LEN as u32)?;
        // The reserved position is erased before the checkpoint that promises it exists.
        let reserved = self
            .position(self.entries + 1)
            .ok_or(FlashStoreError::NoSpace {
                needed: 2 * Self::ENTRY_AREA,
                free: 0,
            })?;
        self.erase_down_to(reserved)?;
        self.push_entry(Entry {
            index: self.entries,
            kind,
            id,
            offset: dst,
            len: CHECKPOINT_LEN as u32,
        })?;
        self.entries += 1;
        debug!("flash store: checkpoint after part {}", cp.parts);
        Ok(())
    }

    /// Resumes the install interrupted in the inactive slot at checkpoint `cp`: every index
    /// entry before it must be intact and every object must hash to its id again. The index
    /// goes on in a freshly erased sector below anything the interrupted attempt wrote (a link
    /// at the position the checkpoint reserved says where), the data in a fresh sector above.
    fn resume(&mut self, cp: &Checkpoint) -> Result<bool, F::Error> {
        if self.phase != Phase::Idle {
            return Ok(false);
        }
        let slot = self.inactive();
        // A valid slot is not an interrupted install; a header cut while being written (the
        // last step) cannot be written again without erasing the objects beside it.
        if self.slot_info(slot)?.is_some() || !self.erased(slot, 0, Self::HEADER_AREA)? {
            return Ok(false);
        }
        let size = self.layout.slot_size;
        let max = size / Self::ENTRY_AREA;
        let mut data_max = Self::HEADER_AREA;
        let mut i = 0;
        let found = loop {
            if i >= max {
                return Ok(false);
            }
            let Ok(e) = self.entry(slot, i, size) else {
                return Ok(false);
            };
            if self.hash(slot, e.offset, e.len)? != e.id.0 {
                return Ok(false);
            }
            let end = e.offset + round_up(e.len as usize, F::WRITE_SIZE) as u32;
            data_max = data_max.max(end);
            if e.kind == ObjectKind::Unknown(ENTRY_CHECKPOINT)
                && self.checkpoint_blob(slot, &e)? == Some(*cp)
            {
                break e;
            }
            i = match self.next_position(slot, &e) {
                Ok(n) => n,
                Err(_) => return Ok(false),
            };
        };
        // The reserved position at the end of the links, and what the attempt wrote after.
        let (_, free) = match self.reserved_after(slot, found.index) {
            Ok(r) => r,
            Err(_) => return Ok(false),
        };
        let Some(free_at) = self.position(free) else {
            return Ok(false);
        };
        if !self.erased(slot, free_at, Self::ENTRY_AREA)? {
            return Ok(false);
        }
        let mut lowest = free;
        while let Some(at) = self.position(lowest + 1) {
            if self.erased(slot, at, Self::ENTRY_AREA)? {
                break;
            }
            lowest += 1;
        }
        // Below everything written: the sector boundary under the lowest used position.
        let lowest_at = self.position(lowest).unwrap_or(0);
        let boundary = lowest_at / Self::E * Self::E;
        let next = (size - boundary).div_ceil(Self::ENTRY_AREA);
        let data_end = round_up(data_max as usize, F::ERASE_SIZE) as u32;
        let room = self.position(next + 1).is_some_and(|at| at >= data_end);
        if !room {
            return Ok(false);
        }
        // Fresh sectors for the index from `boundary` down (the new reserved position
        // included), then the link that points there.
        self.erased_low = data_end;
        self.erased_high = boundary;
        let next_at = self.position(next).unwrap_or(0);
        self.erase_down_to(next_at)?;
        let area = Self::ENTRY_AREA as usize;
        self.buf[..area].fill(0xFF);
        self.buf[0] = ENTRY_LINK;
        self.buf[1..4].fill(0);
        self.buf[4..8].copy_from_slice(&next.to_le_bytes());
        self.buf[8..44].fill(0);
        let crc = crc32(&self.buf[..44]);
        self.buf[44..48].copy_from_slice(&crc.to_le_bytes());
        let abs = self.abs(slot, free_at);
        self.flash
            .write(abs, &self.buf[..area])
            .map_err(FlashStoreError::Flash)?;
        info!(
            "flash store: resuming after part {} (index goes on at {})",
            cp.parts, next
        );
        self.phase = Phase::Writing;
        // Built by one walk at the first look-up, past the links.
        self.prints[slot.index()].built = false;
        self.entries = next + 1;
        self.data_end = data_end;
        self.open = None;
        self.fill = 0;
        Ok(true)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
