//! The decoded side of a part: operation records and the objects they carry, checked byte by
//! byte as they stream, whatever the chunking.
//!
//! [`Ops::decoded`] takes the next decoded bytes of the current part (the part's raw bytes for
//! a `Stored` part, the inflater's output for a `Deflate` part) and drives the store. It never
//! looks further back than its small fixed buffers: the record header ([`MAX_OP_HEADER_LEN`]
//! bytes), one dirtree entry or the fixed part of an object ([`MAX_DIR_ENTRY_LEN`] bytes) and
//! the previous entry name ([`MAX_NAME_LEN`] bytes).
//!
//! This module dispatches the records and opens and ends the objects; `check` checks each
//! object's bytes as they stream, `patch` builds an object from a `Patch` record, `entries`
//! reuses what a `ReuseEntries` record selects.

mod check;
#[cfg(feature = "reuse-entries")]
mod entries;
mod patch;
#[cfg(feature = "redeflate")]
mod redeflate;

use sha2::{Digest, Sha256};

use check::{Check, Utf8};
#[cfg(feature = "reuse-entries")]
use entries::Entries;
use patch::{Patch, Step};
#[cfg(feature = "redeflate")]
use redeflate::Redeflating;

use super::{InstallError, CHECKPOINT_LEN};
use crate::object::{
    ObjectError, ObjectId, ObjectKind, DIRMETA_HEADER_LEN, MAX_COMMIT_LEN, MAX_DIR_ENTRY_LEN,
    MAX_NAME_LEN, MAX_XATTR_BYTES,
};
use crate::store::Store;
use crate::wire::{
    OpCode, OpRepr, MAX_OP_HEADER_LEN, PATCH_FORMAT_VERSION, REDEFLATE_FORMAT_VERSION,
    REUSE_ENTRIES_FORMAT_VERSION, SIGNATURE_LEN,
};

// The entry buffer holds the file's signature and a checkpoint to resume from before the
// parts start.
const _: () = assert!(MAX_DIR_ENTRY_LEN >= SIGNATURE_LEN + CHECKPOINT_LEN);

type Res<E> = Result<(), InstallError<E>>;

/// Copies from `input` into `dst[*have..]` until `dst` is full or `input` is empty. Advances
/// both and returns true when `dst` is full.
pub(crate) fn fill(dst: &mut [u8], have: &mut usize, input: &mut &[u8]) -> bool {
    let room = dst.len().saturating_sub(*have);
    let n = room.min(input.len());
    let (head, tail) = input.split_at(n);
    if let Some(d) = dst.get_mut(*have..*have + n) {
        d.copy_from_slice(head);
    }
    *have += n;
    *input = tail;
    *have >= dst.len()
}

fn le_u16(b: &[u8]) -> u16 {
    match b {
        [a, c, ..] => u16::from_le_bytes([*a, *c]),
        _ => 0,
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Reuses an object the store must have (a Reuse record's, or a reuse-entries record's set
/// bit). One call site for both: a store's `reuse_object` (the flash store's copies whole
/// trees) is inlined once.
#[inline(never)]
fn reuse<S: Store>(store: &mut S, kind: ObjectKind, id: ObjectId) -> Res<S::Error> {
    if store.reuse_object(kind, &id).map_err(InstallError::Store)? {
        Ok(())
    } else {
        Err(InstallError::MissingObject { kind, id })
    }
}

/// Where the record parser is.
#[derive(Clone, Copy)]
enum Rec {
    /// Between records, or inside a record header (`Ops::op_have` bytes held).
    Header,
    /// Inside a `Write` record's object bytes, a `Patch` record's controls and data, or a
    /// `Redeflate` record's ranges (`Ops::redeflating`).
    Body {
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        /// Object bytes produced so far.
        pos: u64,
        patch: Option<Patch>,
    },
    /// Inside a `ReuseEntries` record's bitmap.
    #[cfg(feature = "reuse-entries")]
    Entries(Entries),
}

/// The record and object state machine of one install.
pub(crate) struct Ops<'k> {
    /// The commit the file installs.
    pub(crate) to: ObjectId,
    /// The superblock's timestamp, checked against the commit object.
    pub(crate) timestamp: u64,
    /// The superblock's security version, checked against the commit object.
    pub(crate) security_version: u64,
    /// Objects the superblock declares.
    pub(crate) objects_declared: u32,
    /// Operations started so far.
    objects_started: u32,
    /// Operations completed (object verified or reused).
    pub(crate) objects_done: u32,
    /// The commit object was written and verified.
    pub(crate) commit_seen: bool,
    /// The file's format version, which says which records it may hold.
    pub(crate) format_version: u16,
    /// The deflate encoder lent for redeflate records.
    #[cfg(feature = "redeflate")]
    pub(crate) deflater: Option<&'k mut dyn crate::install::Redeflate>,
    /// The current object's redeflate record, while its bytes stream.
    #[cfg(feature = "redeflate")]
    redeflating: Option<Redeflating>,
    #[cfg(not(feature = "redeflate"))]
    lent: core::marker::PhantomData<&'k ()>,

    part: u32,
    part_len: u64,
    part_pos: u64,
    part_ops: u32,
    part_ops_seen: u32,
    last_part: bool,

    rec: Rec,
    op_buf: [u8; MAX_OP_HEADER_LEN],
    op_have: usize,

    /// A store object is begun and neither finished nor aborted.
    pub(crate) object_open: bool,
    hash: Sha256,
    check: Check,
    buf: [u8; MAX_DIR_ENTRY_LEN],
    have: usize,
    /// The previous dirtree entry or xattr name of the current object.
    prev_name: [u8; MAX_NAME_LEN],
    /// Length of `prev_name`; `None` before the first entry of a dirtree or xattr block.
    prev_len: Option<u8>,
    /// The current file object's xattr block length, for after its symlink target.
    file_xattrs: u16,
    /// UTF-8 check of the commit text being streamed.
    utf8: Utf8,
}

impl<'k> Ops<'k> {
    pub(crate) fn new() -> Ops<'k> {
        Ops {
            to: ObjectId::ZERO,
            timestamp: 0,
            security_version: 0,
            objects_declared: 0,
            objects_started: 0,
            objects_done: 0,
            commit_seen: false,
            format_version: 0,
            #[cfg(feature = "redeflate")]
            deflater: None,
            #[cfg(feature = "redeflate")]
            redeflating: None,
            #[cfg(not(feature = "redeflate"))]
            lent: core::marker::PhantomData,
            part: 0,
            part_len: 0,
            part_pos: 0,
            part_ops: 0,
            part_ops_seen: 0,
            last_part: false,
            rec: Rec::Header,
            op_buf: [0; MAX_OP_HEADER_LEN],
            op_have: 0,
            object_open: false,
            hash: Sha256::new(),
            check: Check::Rest,
            buf: [0; MAX_DIR_ENTRY_LEN],
            have: 0,
            prev_name: [0; MAX_NAME_LEN],
            prev_len: None,
            file_xattrs: 0,
            utf8: Utf8 {
                carry: [0; 4],
                len: 0,
            },
        }
    }

    /// Back to the state of [`Ops::new`], in place (the buffers keep their stale bytes, which
    /// are never read before being written).
    pub(crate) fn reset(&mut self) {
        self.to = ObjectId::ZERO;
        self.timestamp = 0;
        self.security_version = 0;
        self.objects_declared = 0;
        self.objects_started = 0;
        self.objects_done = 0;
        self.commit_seen = false;
        self.format_version = 0;
        #[cfg(feature = "redeflate")]
        {
            self.redeflating = None;
        }
        self.part = 0;
        self.part_len = 0;
        self.part_pos = 0;
        self.part_ops = 0;
        self.part_ops_seen = 0;
        self.last_part = false;
        self.rec = Rec::Header;
        self.op_have = 0;
        self.object_open = false;
        Digest::reset(&mut self.hash);
        self.check = Check::Rest;
        self.have = 0;
        self.prev_len = None;
    }

    /// Where the file's signature is gathered: the entry buffer, which has no other use before
    /// the parts start (64 bytes less installer RAM than a field of its own).
    pub(crate) fn signature_buf(&mut self) -> &mut [u8] {
        &mut self.buf[..SIGNATURE_LEN]
    }

    /// Where a checkpoint to resume from waits until the superblock is verified: the entry
    /// buffer after the signature.
    pub(crate) fn stash(&mut self) -> &mut [u8] {
        &mut self.buf[SIGNATURE_LEN..SIGNATURE_LEN + CHECKPOINT_LEN]
    }

    /// The signature gathered in [`Ops::signature_buf`].
    pub(crate) fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        self.buf.first_chunk().unwrap_or(&[0; SIGNATURE_LEN])
    }

    /// Sets what the whole file declares, once the superblock is verified.
    pub(crate) fn start_file(
        &mut self,
        to: ObjectId,
        timestamp: u64,
        objects: u32,
        security_version: u64,
    ) {
        self.to = to;
        self.timestamp = timestamp;
        self.security_version = security_version;
        self.objects_declared = objects;
    }

    /// Resuming after `objects` operations of completed parts (a verified checkpoint).
    pub(crate) fn resume(&mut self, objects: u32) {
        self.objects_started = objects;
        self.objects_done = objects;
    }

    /// Enters part `index`, which decodes to `len` bytes holding `ops` records.
    pub(crate) fn start_part(&mut self, index: u32, len: u32, ops: u32, last: bool) {
        self.part = index;
        self.part_len = u64::from(len);
        self.part_pos = 0;
        self.part_ops = ops;
        self.part_ops_seen = 0;
        self.last_part = last;
        self.rec = Rec::Header;
        self.op_have = 0;
    }

    /// Checks, at the end of a part's decoded bytes, that the part ended where it said.
    pub(crate) fn end_part<E>(&self) -> Res<E> {
        if !matches!(self.rec, Rec::Header) || self.op_have != 0 {
            return Err(InstallError::PartEndsInsideOp { part: self.part });
        }
        if self.part_pos != self.part_len {
            return Err(InstallError::PartSize {
                part: self.part,
                declared: u32::try_from(self.part_len).unwrap_or(u32::MAX),
                found: self.part_pos,
            });
        }
        if self.part_ops_seen != self.part_ops {
            return Err(InstallError::OpCount {
                part: self.part,
                declared: self.part_ops,
                found: self.part_ops_seen,
            });
        }
        Ok(())
    }

    /// Checks, after the last part, that the file held what the superblock declared.
    pub(crate) fn end_file<E>(&self) -> Res<E> {
        if !self.commit_seen {
            return Err(InstallError::NoCommit);
        }
        if self.objects_started != self.objects_declared {
            return Err(InstallError::ObjectCount {
                declared: self.objects_declared,
                found: self.objects_started,
            });
        }
        Ok(())
    }

    /// Takes the next decoded bytes of the current part.
    pub(crate) fn decoded<S: Store>(&mut self, store: &mut S, data: &[u8]) -> Res<S::Error> {
        let room = self.part_len.saturating_sub(self.part_pos);
        let (mut take, over) = if data.len() as u64 > room {
            data.split_at(to_usize(room))
        } else {
            (data, &[][..])
        };
        while !take.is_empty() {
            match self.rec {
                Rec::Header => self.header_bytes(store, &mut take)?,
                #[cfg(feature = "redeflate")]
                Rec::Body { patch: None, .. } if self.redeflating.is_some() => {
                    self.redeflate_bytes(store, &mut take)?
                }
                Rec::Body { patch: None, .. } => self.body_bytes(store, &mut take)?,
                Rec::Body { patch: Some(_), .. } => self.patch_bytes(store, &mut take)?,
                #[cfg(feature = "reuse-entries")]
                Rec::Entries(_) => self.entries_bytes(store, &mut take)?,
            }
        }
        if !over.is_empty() {
            return Err(InstallError::PartOverrun {
                part: self.part,
                declared: u32::try_from(self.part_len).unwrap_or(u32::MAX),
            });
        }
        Ok(())
    }

    fn header_bytes<S: Store>(&mut self, store: &mut S, input: &mut &[u8]) -> Res<S::Error> {
        let code = if self.op_have == 0 {
            input.first().copied()
        } else {
            Some(self.op_buf[0])
        };
        let Some(code) = code else { return Ok(()) };
        let since = match OpCode::from_code(code) {
            OpCode::Patch => PATCH_FORMAT_VERSION,
            OpCode::Redeflate => REDEFLATE_FORMAT_VERSION,
            OpCode::ReuseEntries => REUSE_ENTRIES_FORMAT_VERSION,
            _ => 0,
        };
        if self.format_version < since {
            return Err(InstallError::Format(crate::wire::FormatError::UnknownOp(
                code,
            )));
        }
        let need = OpRepr::header_len(code).map_err(InstallError::Format)?;
        let before = input.len();
        let full = fill(
            self.op_buf.get_mut(..need).unwrap_or(&mut []),
            &mut self.op_have,
            input,
        );
        self.part_pos += (before - input.len()) as u64;
        if !full {
            return Ok(());
        }
        self.op_have = 0;
        let op =
            OpRepr::parse(self.op_buf.get(..need).unwrap_or(&[])).map_err(InstallError::Format)?;
        self.start_op(store, op)
    }

    fn start_op<S: Store>(&mut self, store: &mut S, op: OpRepr) -> Res<S::Error> {
        self.part_ops_seen = self.part_ops_seen.saturating_add(1);
        if self.part_ops_seen > self.part_ops {
            return Err(InstallError::OpCount {
                part: self.part,
                declared: self.part_ops,
                found: self.part_ops_seen,
            });
        }
        self.objects_started = self.objects_started.saturating_add(1);
        if self.objects_started > self.objects_declared {
            return Err(InstallError::ObjectCount {
                declared: self.objects_declared,
                found: self.objects_started,
            });
        }
        match op {
            OpRepr::Reuse { kind, id } => {
                trace!("reuse {} {}", kind, id);
                if kind == ObjectKind::Commit {
                    return Err(InstallError::ReuseCommit { id });
                }
                reuse(store, kind, id)?;
                self.objects_done += 1;
                Ok(())
            }
            OpRepr::Write { kind, id, len } => {
                let room = self.part_len.saturating_sub(self.part_pos);
                self.open_object(store, kind, id, len, room, None)
            }
            OpRepr::Patch {
                kind,
                id,
                len,
                source,
            } => {
                trace!("patch {} {} from {} ({} bytes)", kind, id, source, len);
                if kind == ObjectKind::Commit {
                    return Err(InstallError::PatchCommit { id });
                }
                let source_len = self.source_len(store, kind, id, source)?;
                // A patch adds one record byte to each source byte or copies one: it never
                // builds more bytes than its record holds.
                let room = self.part_len.saturating_sub(self.part_pos);
                let patch = Patch {
                    source,
                    source_len,
                    old: 0,
                    copy: 0,
                    seek: 0,
                    step: Step::Control,
                };
                self.open_object(store, kind, id, len, room, Some(patch))
            }
            OpRepr::Redeflate {
                kind,
                id,
                len,
                head,
                plain,
                tail,
                params,
            } => self.open_redeflate(store, (kind, id, len), (head, plain, tail), params),
            #[cfg(feature = "reuse-entries")]
            OpRepr::ReuseEntries { source, len } => self.open_entries(store, source, len),
            // Without the feature the record is never parsed (`OpRepr::header_len`).
            #[cfg(not(feature = "reuse-entries"))]
            OpRepr::ReuseEntries { .. } => Err(InstallError::Format(
                crate::wire::FormatError::UnknownOp(OpCode::ReuseEntries.code()),
            )),
        }
    }

    /// Begins the object of a `Redeflate` record after the checks of its header.
    #[cfg(feature = "redeflate")]
    fn open_redeflate<S: Store>(
        &mut self,
        store: &mut S,
        (kind, id, len): (ObjectKind, ObjectId, u64),
        (head, plain, tail): (u32, u64, u32),
        params: crate::wire::DeflateParams,
    ) -> Res<S::Error> {
        trace!("redeflate {} ({} bytes from {} plain)", id, len, plain);
        if kind != ObjectKind::File {
            return Err(InstallError::RedeflateNotFile { kind, id });
        }
        let literal = u64::from(head) + u64::from(tail);
        // The record's bytes must fit in the part; the object may be longer than they are by
        // what deflate can add to its plaintext, no more.
        let room = self.part_len.saturating_sub(self.part_pos);
        let body = literal.saturating_add(plain);
        if body > room {
            return Err(InstallError::ObjectTooLong {
                kind,
                id,
                len: body,
                room,
            });
        }
        let most = literal.saturating_add(crate::wire::deflate_bound(plain));
        if len > most || len < literal {
            return Err(InstallError::RedeflateLength {
                id,
                len,
                end: len.saturating_sub(u64::from(tail)),
                found: most.min(len),
            });
        }
        self.start_redeflate(id, params)?;
        self.open_object(store, kind, id, len, len, None)?;
        self.redeflating = Some(Redeflating::new(len, (head, plain, tail), params));
        Ok(())
    }

    /// Without the `redeflate` feature, a `Redeflate` record is refused.
    #[cfg(not(feature = "redeflate"))]
    fn open_redeflate<S: Store>(
        &mut self,
        _store: &mut S,
        (_, id, _): (ObjectKind, ObjectId, u64),
        _: (u32, u64, u32),
        params: crate::wire::DeflateParams,
    ) -> Res<S::Error> {
        Err(InstallError::RedeflateUnsupported { id, params })
    }

    /// Begins an object of `len` bytes (a `Write` record's, a `Patch` record's when `patch` is
    /// given, a `Redeflate` record's) after the checks of its header; `room` is the most its
    /// record may build.
    fn open_object<S: Store>(
        &mut self,
        store: &mut S,
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        room: u64,
        patch: Option<Patch>,
    ) -> Res<S::Error> {
        trace!("write {} {} ({} bytes)", kind, id, len);
        if len > room {
            return Err(InstallError::ObjectTooLong {
                kind,
                id,
                len,
                room,
            });
        }
        let max = match kind {
            ObjectKind::Commit => Some(MAX_COMMIT_LEN),
            ObjectKind::DirMeta => Some(DIRMETA_HEADER_LEN + MAX_XATTR_BYTES),
            _ => None,
        };
        if let Some(max) = max {
            if len > max as u64 {
                let error = ObjectError::TooLong {
                    field: "object",
                    len: to_usize(len),
                    max,
                };
                return Err(InstallError::Object { kind, id, error });
            }
        }
        if kind == ObjectKind::Commit {
            if id != self.to {
                return Err(InstallError::CommitNotTarget {
                    expected: self.to,
                    found: id,
                });
            }
            if !(self.last_part && self.part_ops_seen == self.part_ops && len == room) {
                return Err(InstallError::CommitNotLast { id });
            }
        }
        self.check = match kind {
            ObjectKind::File => Check::FileHeader,
            ObjectKind::DirTree => Check::TreeCount,
            ObjectKind::DirMeta => Check::DirMetaHeader,
            // `OpRepr::parse` refuses unknown kinds.
            _ => Check::CommitHeader,
        };
        self.have = 0;
        self.prev_len = None;
        self.utf8 = Utf8::default();
        Digest::reset(&mut self.hash);
        store
            .begin_object(kind, &id, len)
            .map_err(InstallError::Store)?;
        self.object_open = true;
        self.rec = Rec::Body {
            kind,
            id,
            len,
            pos: 0,
            patch,
        };
        if len == 0 {
            self.end_object(store)?;
        }
        Ok(())
    }

    /// The next bytes of the object: checked, hashed and handed to the store.
    fn out_bytes<S: Store>(
        &mut self,
        store: &mut S,
        (kind, id, len, pos): (ObjectKind, ObjectId, u64, u64),
        chunk: &[u8],
    ) -> Res<S::Error> {
        self.check_bytes(store, kind, id, len, pos, chunk)?;
        self.hash.update(chunk);
        store.write_object(chunk).map_err(InstallError::Store)
    }

    /// Takes up to `left` bytes of `input` as they are, as the object's bytes from `at`'s
    /// offset on (a Write's body, a patch's copied bytes, a redeflate record's head and
    /// tail): returns how many it took.
    fn copy_bytes<S: Store>(
        &mut self,
        store: &mut S,
        at: (ObjectKind, ObjectId, u64, u64),
        left: u64,
        input: &mut &[u8],
    ) -> Result<u64, InstallError<S::Error>> {
        let n = to_usize(left).min(input.len());
        let (chunk, rest) = input.split_at(n);
        *input = rest;
        self.out_bytes(store, at, chunk)?;
        self.part_pos += n as u64;
        Ok(n as u64)
    }

    fn body_bytes<S: Store>(&mut self, store: &mut S, input: &mut &[u8]) -> Res<S::Error> {
        let Rec::Body {
            kind, id, len, pos, ..
        } = self.rec
        else {
            return Ok(());
        };
        let left = len.saturating_sub(pos);
        let pos = pos + self.copy_bytes(store, (kind, id, len, pos), left, input)?;
        self.rec = Rec::Body {
            kind,
            id,
            len,
            pos,
            patch: None,
        };
        if pos == len {
            self.end_object(store)?;
        }
        Ok(())
    }

    fn end_object<S: Store>(&mut self, store: &mut S) -> Res<S::Error> {
        let Rec::Body { kind, id, len, .. } = self.rec else {
            return Ok(());
        };
        if let Check::CommitTrailer = self.check {
            // The object ends in its trailer: 0 bytes of it is a commit without one, at
            // security version 0.
            if self.have > 0 {
                let error = ObjectError::TrailingBytes(self.have);
                return Err(InstallError::Object { kind, id, error });
            }
            if self.security_version != 0 {
                return Err(InstallError::SecurityVersionMismatch {
                    superblock: self.security_version,
                    commit: 0,
                });
            }
            self.check = Check::End;
        }
        let complete = matches!(self.check, Check::Rest | Check::End);
        if !complete {
            let error = ObjectError::Truncated {
                needed: to_usize(len).saturating_add(1),
                have: to_usize(len),
            };
            return Err(InstallError::Object { kind, id, error });
        }
        let found = ObjectId(self.hash.finalize_reset().into());
        if found != id {
            return Err(InstallError::ObjectHash {
                kind,
                expected: id,
                found,
            });
        }
        self.object_open = false;
        store.finish_object().map_err(InstallError::Store)?;
        self.objects_done += 1;
        if kind == ObjectKind::Commit {
            self.commit_seen = true;
        }
        self.rec = Rec::Header;
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fill_stops_at_the_buffer() {
        let mut buf = [0u8; 4];
        let mut have = 0;
        let mut input = &b"abcdef"[..];
        assert!(!fill(&mut buf, &mut have, &mut &b"ab"[..]));
        assert!(fill(&mut buf, &mut have, &mut input));
        assert_eq!((&buf, have, input), (b"abab", 4, &b"cdef"[..]));
    }
}
