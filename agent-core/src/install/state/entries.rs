//! Reuse-entries records (`docs/FORMAT.md` §6, format version 5): the target reuses the
//! objects that chosen references of a dirtree the store already has name, one bit of the
//! record's bitmap each. The source dirtree is read whole and hashed first (as a patch's
//! source is), then one entry at a time into the entry buffer as the bitmap's bits need it,
//! so the record costs no memory beyond the installer's fixed state, however large the
//! directory.

use super::{reuse, to_usize, Ops, Rec, Res};
use crate::install::InstallError;
use crate::object::{ObjectError, ObjectId, ObjectKind, ID_LEN};
use crate::store::Store;

/// A `ReuseEntries` record's progress.
#[derive(Clone, Copy)]
pub(super) struct Entries {
    /// The dirtree whose references the bitmap selects.
    source: ObjectId,
    /// Bytes of the source (read whole and hashed when the record began).
    source_len: u64,
    /// Bytes of the bitmap, and those still to come.
    len: u64,
    left: u64,
    /// Offset in the source of its next entry.
    at: u64,
    /// Entries of the source not read yet.
    entries_left: u32,
    /// References read so far.
    refs: u64,
    /// A directory entry's dirmeta: the reference after its dirtree's.
    meta: Option<ObjectId>,
}

impl Entries {
    fn bitmap_error<E>(&self) -> InstallError<E> {
        InstallError::EntriesBitmap {
            source: self.source,
            len: self.len,
            refs: self.refs,
        }
    }
}

impl Ops<'_> {
    /// Begins a `ReuseEntries` record of `len` bitmap bytes over dirtree `source`'s
    /// references, after checking the source whole against its id.
    pub(super) fn open_entries<S: Store>(
        &mut self,
        store: &mut S,
        source: ObjectId,
        len: u64,
    ) -> Res<S::Error> {
        trace!("reuse entries of {} ({} bitmap bytes)", source, len);
        let room = self.part_len.saturating_sub(self.part_pos);
        if len > room {
            return Err(InstallError::ObjectTooLong {
                kind: ObjectKind::DirTree,
                id: source,
                len,
                room,
            });
        }
        let kind = ObjectKind::DirTree;
        let source_len = match self.source_len(store, kind, source, source) {
            Err(InstallError::PatchSourceMissing { .. }) => {
                return Err(InstallError::EntriesSourceMissing { source })
            }
            r => r?,
        };
        let mut count = [0u8; 4];
        let n = read_source(store, source, 0, &mut count)?;
        if n < count.len() {
            let error = ObjectError::Truncated {
                needed: count.len(),
                have: n,
            };
            return Err(InstallError::Object {
                kind,
                id: source,
                error,
            });
        }
        self.rec = Rec::Entries(Entries {
            source,
            source_len,
            len,
            left: len,
            at: count.len() as u64,
            entries_left: u32::from_le_bytes(count),
            refs: 0,
            meta: None,
        });
        if len == 0 {
            self.end_entries(store)?;
        }
        Ok(())
    }

    /// Takes the next bytes of a `ReuseEntries` record's bitmap: each set bit reuses the
    /// object its reference names, as a `Reuse` record would.
    pub(super) fn entries_bytes<S: Store>(
        &mut self,
        store: &mut S,
        input: &mut &[u8],
    ) -> Res<S::Error> {
        let Rec::Entries(mut e) = self.rec else {
            return Ok(());
        };
        while e.left > 0 {
            let Some((&byte, rest)) = input.split_first() else {
                break;
            };
            *input = rest;
            self.part_pos += 1;
            e.left -= 1;
            for bit in 0..8 {
                let Some((kind, id)) = self.next_ref(store, &mut e)? else {
                    // Past the last reference: only in the last byte, and no bit set there.
                    if bit == 0 || byte >> bit != 0 || e.left > 0 {
                        return Err(e.bitmap_error());
                    }
                    break;
                };
                if byte >> bit & 1 == 1 {
                    trace!("reuse {} {}", kind, id);
                    reuse(store, kind, id)?;
                }
            }
        }
        self.rec = Rec::Entries(e);
        if e.left == 0 {
            self.end_entries(store)?;
        }
        Ok(())
    }

    /// The record's bitmap is whole: it must have covered every reference of its source.
    fn end_entries<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        let Rec::Entries(mut e) = self.rec else {
            return Ok(());
        };
        if self.next_ref(store, &mut e)?.is_some() {
            return Err(e.bitmap_error());
        }
        if e.at != e.source_len {
            let error = ObjectError::TrailingBytes(to_usize(e.source_len.saturating_sub(e.at)));
            return Err(InstallError::Object {
                kind: ObjectKind::DirTree,
                id: e.source,
                error,
            });
        }
        self.objects_done += 1;
        self.rec = Rec::Header;
        Ok(())
    }

    /// The source's next reference (kind and id), reading its next entry when a directory
    /// entry's dirmeta is not pending; `None` past the last.
    fn next_ref<S: Store>(
        &mut self,
        store: &mut S,
        e: &mut Entries,
    ) -> Result<Option<(ObjectKind, ObjectId)>, InstallError<S::Error>> {
        if let Some(meta) = e.meta.take() {
            e.refs += 1;
            return Ok(Some((ObjectKind::DirMeta, meta)));
        }
        if e.entries_left == 0 {
            return Ok(None);
        }
        // An entry is at most the entry buffer's length: one read holds it whole.
        let source = e.source;
        let n = read_source(store, source, e.at, &mut self.buf)?;
        let got = self.buf.get(..n).unwrap_or(&[]);
        let bad = |error| InstallError::Object {
            kind: ObjectKind::DirTree,
            id: source,
            error,
        };
        let (kind, ids) = match got.first() {
            Some(1) => (ObjectKind::File, 1),
            Some(2) => (ObjectKind::DirTree, 2),
            Some(&t) => return Err(bad(ObjectError::BadEntryType(t))),
            None => return Err(bad(ObjectError::Truncated { needed: 2, have: 0 })),
        };
        let name = usize::from(got.get(1).copied().unwrap_or(0));
        let need = 2 + name + ids * ID_LEN;
        let id_at = |i: usize| {
            let at = 2 + name + i * ID_LEN;
            got.get(at..at + ID_LEN)
                .and_then(|b| <[u8; ID_LEN]>::try_from(b).ok())
                .map(ObjectId)
        };
        let (Some(id), Some(meta)) = (id_at(0), id_at(ids - 1)) else {
            return Err(bad(ObjectError::Truncated {
                needed: need,
                have: n,
            }));
        };
        if kind == ObjectKind::DirTree {
            e.meta = Some(meta);
        }
        e.at += need as u64;
        e.entries_left -= 1;
        e.refs += 1;
        Ok(Some((kind, id)))
    }
}

/// Reads bytes of dirtree `source` from `at` into `buf`: how many there were.
fn read_source<S: Store>(
    store: &mut S,
    source: ObjectId,
    at: u64,
    buf: &mut [u8],
) -> Result<usize, InstallError<S::Error>> {
    match store
        .read_object(ObjectKind::DirTree, &source, at, buf)
        .map_err(InstallError::Store)?
    {
        Some(n) => Ok(n.min(buf.len())),
        None => Err(InstallError::EntriesSourceMissing { source }),
    }
}
