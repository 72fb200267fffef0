//! Trees in a slot: copying a reused dirtree and everything under it from the active slot,
//! the depth of a dirtree in the install, and where the commit's image is.

use embedded_storage::nor_flash::NorFlash;

use super::index::Entry;
use super::layout::{id, round_up};
use super::{FlashSlot, FlashStore, FlashStoreError, Frame, Result, BUF_LEN, IMAGE_NAME};
use crate::object::{
    commit_roots, dir_entry_len, FileHeader, ObjectId, ObjectKind, COMMIT_HEADER_LEN,
    FILE_HEADER_LEN, ID_LEN,
};

impl<F: NorFlash> FlashStore<F> {
    /// Copies an object from the active slot into the inactive one, verifies and indexes it.
    pub(super) fn copy(&mut self, src: Entry) -> Result<(), F::Error> {
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
    pub(super) fn ensure(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        parent: u32,
    ) -> Result<(), F::Error> {
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
    pub(super) fn copy_tree(&mut self, root: Entry) -> Result<(), F::Error> {
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
            let parent = top.cursor;
            let (head, len) = self.walk_next(active, &top)?;
            let mut ids = [0u8; 2 * ID_LEN];
            let n = len as usize - 2 - usize::from(head[1]);
            self.read(active, top.cursor + 2 + u32::from(head[1]), &mut ids[..n])?;
            let first = id(&ids[..ID_LEN]);
            if head[0] == 1 {
                self.ensure(ObjectKind::File, &first, parent)?;
            } else {
                self.ensure(ObjectKind::DirMeta, &id(&ids[ID_LEN..]), parent)?;
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

    pub(super) fn push_frame(&mut self, src: Entry) -> Result<(), F::Error> {
        self.push_frame_in(self.active, src)
    }

    pub(super) fn push_frame_in(&mut self, slot: FlashSlot, src: Entry) -> Result<(), F::Error> {
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

    /// The directory entry at slot-relative `cursor` of `slot`, in a dirtree that ends at `end`:
    /// its first two bytes (kind, name length) and its length. [`FlashStoreError::Corrupted`]
    /// at `offset` when it does not fit.
    #[inline(never)]
    fn dir_entry_at(
        &mut self,
        slot: FlashSlot,
        cursor: u32,
        end: u32,
        offset: u32,
    ) -> Result<([u8; 2], u32), F::Error> {
        let bad = || FlashStoreError::Corrupted { slot, offset };
        let mut head = [0u8; 2];
        if cursor + 2 > end {
            return Err(bad());
        }
        self.read(slot, cursor, &mut head)?;
        let len = dir_entry_len(head[0], head[1]).ok_or_else(bad)? as u32;
        if cursor + len > end {
            return Err(bad());
        }
        Ok((head, len))
    }

    /// The next directory entry of `top`, the dirtree on top of the walk in `slot`
    /// ([`Self::dir_entry_at`]), and the walk moved past it.
    fn walk_next(&mut self, slot: FlashSlot, top: &Frame) -> Result<([u8; 2], u32), F::Error> {
        let (head, len) = self.dir_entry_at(slot, top.cursor, top.end, top.cursor)?;
        if let Some(f) = self.walk.last_mut() {
            f.cursor += len;
            f.remaining -= 1;
        }
        Ok((head, len))
    }

    /// The depth of dirtree `id` written or reused by this install: a walk of its tree in the
    /// inactive slot with the store's bounded stack (a tree deeper than [`MAX_TREE_DEPTH`] is
    /// [`FlashStoreError::TreeTooDeep`]). `None` when the dirtree is not in the slot.
    pub(super) fn new_tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, F::Error> {
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
            let (head, _) = self.walk_next(slot, &top)?;
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

    /// Finds the image file of the commit `id` in the install in progress: its slot-relative
    /// offset and length.
    pub(super) fn find_image(&mut self, id: &ObjectId) -> Result<(u32, u32), F::Error> {
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
            let (head, len) = self.dir_entry_at(slot, cursor, end, commit.offset)?;
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
