//! Looking objects up in a slot's index: the index walk (past checkpoints' reserved positions
//! and links), the RAM index prints that spare most entry reads, and appending entries.

use embedded_storage::nor_flash::NorFlash;

use super::layout::RawEntry;
use super::{
    FlashSlot, FlashStore, FlashStoreError, Phase, Result, ENTRY_CHECKPOINT, ENTRY_LEN, ENTRY_LINK,
    INDEX_PRINTS,
};
use crate::object::{ObjectId, ObjectKind};

/// An index entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// Position in its slot's index.
    pub(super) index: u32,
    pub(super) kind: ObjectKind,
    pub(super) id: ObjectId,
    /// Slot-relative.
    pub(super) offset: u32,
    pub(super) len: u32,
}

/// A slot's index prints: for each of the first [`INDEX_PRINTS`] positions the index walk
/// visits, one byte of its entry's kind and id ([`print`]); 0 at positions the walk skips.
/// A look-up reads the entries whose print matches (a false match costs a read; the entry on
/// flash decides) and walks the index on flash from `rest` on. Never a false negative: every
/// position the walk visits below `covered` has its print, and `rest` is the first one the
/// walk visits past them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Prints {
    pub(super) print: [u8; INDEX_PRINTS],
    /// One past the highest position printed.
    pub(super) covered: u32,
    /// The first position the walk visits that has no print (`u32::MAX`: none yet).
    pub(super) rest: u32,
    /// Whether the prints describe the slot; if not, the next look-up builds them by one walk.
    pub(super) built: bool,
}

impl Prints {
    pub(super) const UNBUILT: Prints = Prints {
        print: [0; INDEX_PRINTS],
        covered: 0,
        rest: 0,
        built: false,
    };

    /// Prints of an empty index.
    pub(super) fn empty(&mut self) {
        self.print.fill(0);
        self.covered = 0;
        self.rest = u32::MAX;
        self.built = true;
    }

    /// No prints: every look-up walks the whole index (after a failed build).
    pub(super) fn walk_all(&mut self) {
        self.covered = 0;
        self.rest = 0;
        self.built = true;
    }

    /// Entry `(kind, id)` is at position `i`, the next position the index walk visits.
    pub(super) fn note(&mut self, i: u32, kind: ObjectKind, id: &ObjectId) {
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

impl<F: NorFlash> FlashStore<F> {
    /// Index entry `i` of `slot`, checked against its CRC and the slot's data area.
    pub(super) fn entry(
        &mut self,
        slot: FlashSlot,
        i: u32,
        data_end: u32,
    ) -> Result<Entry, F::Error> {
        let at = self.layout.slot_size - (i + 1) * Self::ENTRY_AREA;
        let mut b = [0u8; ENTRY_LEN];
        self.read(slot, at, &mut b)?;
        let r = RawEntry::new_unchecked(&b);
        let (offset, len) = (r.offset(), r.len());
        let kind = ObjectKind::from_code(r.kind_code());
        let ok = r.check_crc()
            && (!matches!(kind, ObjectKind::Unknown(_)) || r.kind_code() == ENTRY_CHECKPOINT)
            && u64::from(offset) + u64::from(len) <= u64::from(data_end);
        if !ok {
            return Err(FlashStoreError::Corrupted { slot, offset: at });
        }
        Ok(Entry {
            index: i,
            kind,
            id: r.id(),
            offset,
            len,
        })
    }

    /// Finds `(kind, id)` among the first `count` entries of `slot`: the first entry the index
    /// walk meets, reading only the entries whose print matches and the index past the prints.
    pub(super) fn find(
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
    pub(super) fn build_prints(&mut self, slot: FlashSlot, count: u32, data_end: u32) {
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
    pub(super) fn walk_from(
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
    pub(super) fn position(&self, i: u32) -> Option<u32> {
        i.checked_add(1)
            .and_then(|n| n.checked_mul(Self::ENTRY_AREA))
            .and_then(|n| self.layout.slot_size.checked_sub(n))
    }

    /// The position after entry `e`: the next one, or after a checkpoint, past its reserved
    /// position and the links resumed installs wrote there.
    pub(super) fn next_position(&mut self, slot: FlashSlot, e: &Entry) -> Result<u32, F::Error> {
        if e.kind != ObjectKind::Unknown(ENTRY_CHECKPOINT) {
            return Ok(e.index + 1);
        }
        let (_, free) = self.reserved_after(slot, e.index)?;
        Ok(free + 1)
    }

    /// Follows the links from the position reserved after checkpoint `i`: returns how many
    /// links there were and the reserved position at the end of the chain.
    pub(super) fn reserved_after(
        &mut self,
        slot: FlashSlot,
        i: u32,
    ) -> Result<(u32, u32), F::Error> {
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
    pub(super) fn link_at(&mut self, slot: FlashSlot, pos: u32) -> Result<Option<u32>, F::Error> {
        let Some(at) = self.position(pos) else {
            return Ok(None);
        };
        let mut b = [0u8; ENTRY_LEN];
        self.read(slot, at, &mut b)?;
        let r = RawEntry::new_unchecked(&b);
        Ok((r.kind_code() == ENTRY_LINK && r.check_crc()).then(|| r.offset()))
    }

    /// Finds an object in the install in progress.
    pub(super) fn find_new(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<Entry>, F::Error> {
        if self.phase != Phase::Writing {
            return Ok(None);
        }
        let (slot, count, end) = (self.inactive(), self.entries, self.data_end);
        self.find(slot, count, end, kind, id)
    }

    /// Finds an object in the active slot, if it is valid.
    pub(super) fn find_active(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<Entry>, F::Error> {
        let slot = self.active;
        match self.slot_info(slot)? {
            Some(info) => self.find(slot, info.objects, info.data_end, kind, id),
            None => Ok(None),
        }
    }

    /// Writes an index entry (padded with `0xFF` to `WRITE_SIZE`) at slot-relative `at` of the
    /// inactive slot, which must be erased there.
    pub(super) fn write_entry(
        &mut self,
        at: u32,
        kind: ObjectKind,
        chain: u32,
        offset: u32,
        len: u32,
        id: &ObjectId,
    ) -> Result<(), F::Error> {
        let area = Self::ENTRY_AREA as usize;
        self.buf[..area].fill(0xFF);
        RawEntry::new_unchecked(&mut self.buf[..ENTRY_LEN]).emit(kind, chain, offset, len, id);
        let abs = self.abs(self.inactive(), at);
        self.flash
            .write(abs, &self.buf[..area])
            .map_err(FlashStoreError::Flash)
    }

    /// Appends an index entry for an object whose bytes were verified in place.
    pub(super) fn push_entry(&mut self, e: Entry) -> Result<(), F::Error> {
        let at = self.layout.slot_size - (self.entries + 1) * Self::ENTRY_AREA;
        self.erase_down_to(at)?;
        self.write_entry(at, e.kind, 0, e.offset, e.len, &e.id)?;
        let slot = self.inactive().index();
        self.prints[slot].note(self.entries, e.kind, &e.id);
        self.entries += 1;
        Ok(())
    }
}
