//! The [`Store`] implementation: what the installer calls.

use embedded_storage::nor_flash::NorFlash;

use super::index::{Entry, Trust};
use super::layout::{round_up, Header};
use super::{
    FlashStore, FlashStoreError, Open, Phase, Result, BUF_LEN, ENTRY_CHECKPOINT, ENTRY_LINK,
    HEADER_LEN,
};
use crate::install::{Checkpoint, CHECKPOINT_LEN};
use crate::object::{ObjectId, ObjectKind, ID_LEN};
use crate::store::{Declared, Store};

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
            chain: 0,
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
        self.buf[..area].fill(0xFF);
        Header::new_unchecked(&mut self.buf[..HEADER_LEN]).emit(
            self.entries,
            id,
            self.data_end,
            (image_rel, image_len, &image_sha256),
        );
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
            chain: 0,
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
        let link = ObjectKind::Unknown(ENTRY_LINK);
        self.write_entry(free_at, link, 0, next, 0, &ObjectId([0; ID_LEN]))?;
        info!(
            "flash store: resuming after part {} (index goes on at {})",
            cp.parts, next
        );
        self.phase = Phase::Writing;
        // Built by one walk at the first look-up, past the links.
        self.chains[slot.index()].trust = Trust::Unbuilt;
        self.entries = next + 1;
        self.data_end = data_end;
        self.open = None;
        self.fill = 0;
        Ok(true)
    }
}
