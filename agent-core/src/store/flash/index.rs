//! Looking objects up in a slot's index: the index walk (past checkpoints' reserved positions
//! and links), the look-up chains that spare it (one per bucket, in RAM their heads, on flash
//! each entry's link to the previous entry of its bucket), and appending entries.

use embedded_storage::nor_flash::NorFlash;

use super::layout::RawEntry;
use super::{
    FlashSlot, FlashStore, FlashStoreError, Phase, Result, ENTRY_CHECKPOINT, ENTRY_LEN, ENTRY_LINK,
    INDEX_BUCKETS,
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
    /// Its chain field as on flash: [`CHAINED`] and one past the position of the previous entry
    /// of its bucket (0 for none); 0 in an entry written without chains.
    pub(super) chain: u32,
}

/// The bit of the chain field that says the entry has one (entry revision 2): entries written
/// before the chains have 0 there.
pub(super) const CHAINED: u32 = 1 << 23;

/// How far a slot's [`Chains`] can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trust {
    /// Not known: the next look-up builds them by one walk of the index.
    Unbuilt,
    /// The heads and every entry's chain field are the walk's buckets.
    Chained,
    /// The index on flash does not hold the chains (written before them, or a walk failed, or
    /// past `u16::MAX` positions): every look-up walks the whole index.
    WalkAll,
}

/// A slot's look-up chains, in RAM: for each of [`INDEX_BUCKETS`] buckets, one past the newest
/// index position whose entry falls in it (0: none). Each entry on flash holds the same for
/// the entries before it (its chain field), so a look-up reads only the entries of its bucket,
/// newest first, about `count / INDEX_BUCKETS` of them. Never a false negative: the heads are
/// built by one walk that checks every chain field against the walk's own buckets.
#[derive(Clone, Copy, Debug)]
pub(super) struct Chains {
    head: [u16; INDEX_BUCKETS],
    /// Of the active slot: the index positions and data end its header gives (read once).
    pub(super) count: u32,
    pub(super) data_end: u32,
    pub(super) trust: Trust,
}

impl Chains {
    pub(super) const UNBUILT: Chains = Chains {
        head: [0; INDEX_BUCKETS],
        count: 0,
        data_end: 0,
        trust: Trust::Unbuilt,
    };

    /// The chains of an empty index.
    pub(super) fn empty(&mut self) {
        self.head.fill(0);
        self.count = 0;
        self.data_end = 0;
        self.trust = Trust::Chained;
    }

    /// The chain field an entry `(kind, id)` appended now gets.
    fn chain_of(&self, kind: ObjectKind, id: &ObjectId) -> u32 {
        match self.trust {
            Trust::Chained => CHAINED | u32::from(self.head[bucket(kind, id)]),
            _ => 0,
        }
    }

    /// Entry `(kind, id)` with chain field `chain` is at position `i`, the next position the
    /// walk visits. A chain field that is not the walk's makes every look-up walk.
    fn push(&mut self, i: u32, kind: ObjectKind, id: &ObjectId, chain: u32) {
        let b = bucket(kind, id);
        match u16::try_from(i + 1) {
            Ok(h) if self.trust == Trust::Chained && chain == CHAINED | u32::from(self.head[b]) => {
                self.head[b] = h
            }
            _ => self.trust = Trust::WalkAll,
        }
    }
}

/// The bucket of `(kind, id)`: two bytes of the id (a SHA-256) and the kind.
fn bucket(kind: ObjectKind, id: &ObjectId) -> usize {
    usize::from(u16::from_le_bytes([id.0[0] ^ kind.code(), id.0[1]])) % INDEX_BUCKETS
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
        let (code, offset, len) = (r.kind_code(), r.offset(), r.len());
        let kind = ObjectKind::from_code(code);
        let ok = r.check_crc()
            && (!matches!(kind, ObjectKind::Unknown(_)) || code == ENTRY_CHECKPOINT)
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
            chain: r.chain(),
        })
    }

    /// Finds `(kind, id)` among the first `count` entries of `slot`: the newest entry of its
    /// bucket's chain that matches, reading only the entries of that bucket (without chains:
    /// the first entry the index walk meets).
    pub(super) fn find(
        &mut self,
        slot: FlashSlot,
        count: u32,
        data_end: u32,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<Entry>, F::Error> {
        let s = slot.index();
        self.ensure_chains(slot, count, data_end);
        // One past the position to read next, 0 at the end: the bucket's chain, or the walk.
        let walk = self.chains[s].trust == Trust::WalkAll;
        let mut next = match walk {
            true => 1,
            false => u32::from(self.chains[s].head[bucket(kind, id)]),
        };
        while next != 0 && next <= count {
            let e = self.entry(slot, next - 1, data_end)?;
            if e.kind == kind && e.id == *id {
                return Ok(Some(e));
            }
            next = match walk {
                true => self.next_position(slot, &e)? + 1,
                // Chains only go down the index (checked when they were built).
                false => (e.chain & !CHAINED).min(next - 1),
            };
        }
        Ok(None)
    }

    /// Builds the chains of `slot` unless they are, by one walk of its first `count` entries;
    /// if the walk fails, look-ups walk the whole index (and meet the failure where they did
    /// before).
    fn ensure_chains(&mut self, slot: FlashSlot, count: u32, data_end: u32) {
        let s = slot.index();
        if self.chains[s].trust != Trust::Unbuilt {
            return;
        }
        self.chains[s].empty();
        let mut i = 0;
        while i < count && self.chains[s].trust == Trust::Chained {
            let next = match self.entry(slot, i, data_end) {
                Ok(e) => {
                    self.chains[s].push(i, e.kind, &e.id, e.chain);
                    self.next_position(slot, &e)
                }
                Err(e) => Err(e),
            };
            match next {
                Ok(n) => i = n,
                Err(_) => self.chains[s].trust = Trust::WalkAll,
            }
        }
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

    /// Finds an object in the active slot, if it is valid. Its header is read once, when its
    /// chains are built.
    pub(super) fn find_active(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
    ) -> Result<Option<Entry>, F::Error> {
        let (slot, s) = (self.active, self.active.index());
        if self.chains[s].trust == Trust::Unbuilt {
            let (count, end) = self
                .slot_info(slot)?
                .map_or((0, 0), |i| (i.objects, i.data_end));
            self.ensure_chains(slot, count, end);
            self.chains[s].count = count;
            self.chains[s].data_end = end;
        }
        let (count, end) = (self.chains[s].count, self.chains[s].data_end);
        self.find(slot, count, end, kind, id)
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
        let (slot, s) = (self.inactive(), self.inactive().index());
        self.ensure_chains(slot, self.entries, self.data_end);
        let chain = self.chains[s].chain_of(e.kind, &e.id);
        self.write_entry(at, e.kind, chain, e.offset, e.len, &e.id)?;
        self.chains[s].push(self.entries, e.kind, &e.id, chain);
        self.entries += 1;
        Ok(())
    }
}
