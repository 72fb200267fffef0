//! A slot as a whole: its header (read, checked, written by a commit), verifying it, its
//! image, its resume checkpoints, and erasing and programming the inactive slot.

use embedded_storage::nor_flash::NorFlash;
use sha2::{Digest, Sha256};

use super::index::Entry;
use super::layout::{round_up, Header};
use super::{
    FlashSlot, FlashStore, FlashStoreError, Phase, Result, SlotInfo, BUF_LEN, ENTRY_CHECKPOINT,
    HEADER_LEN, NO_IMAGE,
};
use crate::install::{Checkpoint, CHECKPOINT_LEN};
use crate::object::{ObjectId, ObjectKind};

impl<F: NorFlash> FlashStore<F> {
    /// The header of `slot` if it is valid, else `None`. Reads 96 bytes.
    pub fn slot_info(&mut self, slot: FlashSlot) -> Result<Option<SlotInfo>, F::Error> {
        let mut b = [0u8; HEADER_LEN];
        self.read(slot, 0, &mut b)?;
        let h = Header::new_unchecked(&b);
        if !h.check() {
            return Ok(None);
        }
        let objects = h.objects();
        let data_end = h.data_end();
        let image_rel = h.image_offset();
        let image_len = h.image_len();
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
        Ok(Some(SlotInfo {
            slot,
            commit: h.commit(),
            objects,
            data_end,
            image_offset: self.abs(slot, image_rel),
            image_len,
            image_sha256: h.image_sha256(),
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
    pub(super) fn hash(
        &mut self,
        slot: FlashSlot,
        rel: u32,
        len: u32,
    ) -> Result<[u8; 32], F::Error> {
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

    /// Whether the `n` bytes at slot-relative `at` of `slot` are all erased (`0xFF`).
    pub(super) fn erased(&mut self, slot: FlashSlot, at: u32, n: u32) -> Result<bool, F::Error> {
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
    /// continues after that part ([`Store::resume`](crate::store::Store::resume) checks every object before it again).
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
    pub(super) fn checkpoint_blob(
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

    /// Starts an install on the first call that writes: invalidates the inactive slot's
    /// header by erasing its first sector.
    pub(super) fn begin(&mut self) -> Result<(), F::Error> {
        if self.phase == Phase::Writing {
            return Ok(());
        }
        info!(
            "flash store: erasing the header of slot {}",
            self.inactive()
        );
        self.phase = Phase::Writing;
        let slot = self.inactive().index();
        self.chains[slot].empty();
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
    pub(super) fn erase_up_to(&mut self, end: u32) -> Result<(), F::Error> {
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
    pub(super) fn erase_down_to(&mut self, start: u32) -> Result<(), F::Error> {
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
    pub(super) fn reserve(&mut self, len: u64) -> Result<u32, F::Error> {
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
    pub(super) fn program(&mut self, rel: u32, n: usize) -> Result<u32, F::Error> {
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

    /// Reads back `len` bytes at `rel` of the inactive slot and checks they hash to `id`.
    pub(super) fn verify_new(
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
}
