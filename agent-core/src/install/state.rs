//! The decoded side of a part: operation records and the objects they carry, checked byte by
//! byte as they stream, whatever the chunking.
//!
//! [`Ops::decoded`] takes the next decoded bytes of the current part (the part's raw bytes for
//! a `Stored` part, the inflater's output for a `Deflate` part) and drives the store. It never
//! looks further back than its small fixed buffers: the record header ([`MAX_OP_HEADER_LEN`]
//! bytes), one dirtree entry or the fixed part of an object ([`MAX_DIR_ENTRY_LEN`] bytes) and
//! the previous entry name ([`MAX_NAME_LEN`] bytes).

use sha2::{Digest, Sha256};

use super::{InstallError, CHECKPOINT_LEN, PATCH_WINDOW};
use crate::object::{
    commit_roots, dir_entry_len, parse_dir_entry, DirEntry, FileHeader, ObjectError, ObjectId,
    ObjectKind, COMMIT_HEADER_LEN, COMMIT_TRAILER_LEN, DIRMETA_HEADER_LEN, DIRTREE_HEADER_LEN,
    FILE_HEADER_LEN, MAX_BODY_LEN, MAX_COMMIT_LEN, MAX_DIR_ENTRY_LEN, MAX_NAME_LEN,
    MAX_SUBJECT_LEN, MAX_TREE_DEPTH, MAX_XATTRS, MAX_XATTR_BYTES, S_IFDIR, S_IFMT, S_IPERM,
};
use crate::store::Store;
use crate::wire::{offtin, OpCode, OpRepr, MAX_OP_HEADER_LEN, PATCH_CONTROL_LEN, SIGNATURE_LEN};

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

/// Where the record parser is.
#[derive(Clone, Copy)]
enum Rec {
    /// Between records, or inside a record header (`Ops::op_have` bytes held).
    Header,
    /// Inside a `Write` record's object bytes, or a `Patch` record's controls and data.
    Body {
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        /// Object bytes produced so far.
        pos: u64,
        patch: Option<Patch>,
    },
}

/// A `Patch` record's progress (`docs/FORMAT.md` §6).
#[derive(Clone, Copy)]
struct Patch {
    source: ObjectId,
    /// Bytes of the source (read whole and hashed when the record began).
    source_len: u64,
    /// Where the next added bytes come from in the source.
    old: i64,
    /// The current control's copy length and seek.
    copy: u64,
    seek: i64,
    step: Step,
}

/// Where a patch is inside its current control.
#[derive(Clone, Copy)]
enum Step {
    /// Gathering the 24-byte control (`Ops::op_have` bytes held).
    Control,
    /// `left` bytes to add to the source's bytes.
    Add { left: u64 },
    /// `left` bytes to copy as they are.
    Copy { left: u64 },
}

/// Where the object check is inside the current object.
#[derive(Clone, Copy)]
enum Check {
    /// File: the fixed header is being gathered.
    FileHeader,
    /// File: inside the symlink target (no NUL allowed).
    FileTarget { left: u16 },
    /// DirMeta: the fixed header is being gathered.
    DirMetaHeader,
    /// DirTree: the entry count is being gathered.
    TreeCount,
    /// DirTree: an entry's type and name length are being gathered.
    TreeEntryHead { left: u32 },
    /// DirTree: the rest of an entry of `need` bytes is being gathered.
    TreeEntry { left: u32, need: usize },
    /// Commit: the fixed 105 bytes are being gathered.
    CommitHeader,
    /// Commit: the length field of text `field` (0 version, 1 subject, 2 body).
    CommitLen { field: u8 },
    /// Commit: inside text `field`.
    CommitText { field: u8, left: u16 },
    /// Commit: after the body, its optional security-version trailer (`Ops::have` bytes of
    /// it held).
    CommitTrailer,
    /// Inside an xattr block (of a file or a dirmeta) with `left` bytes to come; `count`
    /// entries begun so far; then `Rest` (file content follows) or `End` (dirmeta).
    Xattrs {
        left: u16,
        stage: XStage,
        count: u8,
        then_end: bool,
    },
    /// Everything that needs checking is checked; the remaining bytes are free-form
    /// (file content).
    Rest,
    /// The object is complete: any further byte is too many.
    End,
}

/// Where an xattr block check is inside an entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum XStage {
    NameLen,
    Name { need: usize },
    ValueLen,
    Value { left: u16 },
}

/// The check for an xattr block of `len` bytes, then `Rest` or `End`.
fn xattrs_then(len: u16, then_end: bool) -> Check {
    match (len, then_end) {
        (0, true) => Check::End,
        (0, false) => Check::Rest,
        (left, then_end) => Check::Xattrs {
            left,
            stage: XStage::NameLen,
            count: 0,
            then_end,
        },
    }
}

/// The record and object state machine of one install.
pub(crate) struct Ops {
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
    /// The file's format version has patch records.
    pub(crate) patches: bool,

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

/// A UTF-8 check over text that arrives in pieces: holds the first bytes of a character split
/// between two pieces.
#[derive(Clone, Copy, Default)]
struct Utf8 {
    carry: [u8; 4],
    len: u8,
}

impl Utf8 {
    /// Takes the next bytes; false once the text cannot be UTF-8.
    fn feed(&mut self, mut text: &[u8]) -> bool {
        // Complete a character begun in an earlier piece, one byte at a time.
        while self.len > 0 {
            let Some((&b, rest)) = text.split_first() else {
                return true;
            };
            text = rest;
            let n = usize::from(self.len);
            if n >= self.carry.len() {
                return false;
            }
            self.carry[n] = b;
            self.len += 1;
            match core::str::from_utf8(&self.carry[..=n]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => {}
                Err(_) => return false,
            }
        }
        match core::str::from_utf8(text) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = text.get(e.valid_up_to()..).unwrap_or(&[]);
                let n = tail.len().min(self.carry.len());
                self.carry[..n].copy_from_slice(&tail[..n]);
                self.len = n as u8;
                true
            }
            Err(_) => false,
        }
    }

    /// True when no character is left half-way.
    fn at_boundary(&self) -> bool {
        self.len == 0
    }
}

impl Ops {
    pub(crate) fn new() -> Ops {
        Ops {
            to: ObjectId::ZERO,
            timestamp: 0,
            security_version: 0,
            objects_declared: 0,
            objects_started: 0,
            objects_done: 0,
            commit_seen: false,
            patches: false,
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
        self.patches = false;
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
                Rec::Body { patch: None, .. } => self.body_bytes(store, &mut take)?,
                Rec::Body { patch: Some(_), .. } => self.patch_bytes(store, &mut take)?,
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
        if code == OpCode::Patch.code() && !self.patches {
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
                if !store.reuse_object(kind, &id).map_err(InstallError::Store)? {
                    return Err(InstallError::MissingObject { kind, id });
                }
                self.objects_done += 1;
                Ok(())
            }
            OpRepr::Write { kind, id, len } => self.open_object(store, kind, id, len, None),
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
                let patch = Patch {
                    source,
                    source_len,
                    old: 0,
                    copy: 0,
                    seek: 0,
                    step: Step::Control,
                };
                self.open_object(store, kind, id, len, Some(patch))
            }
        }
    }

    /// Reads the whole source of a patch through the store, in [`PATCH_WINDOW`]-byte
    /// windows, and checks its SHA-256: returns its length.
    #[inline(never)]
    fn source_len<S: Store>(
        &mut self,
        store: &mut S,
        kind: ObjectKind,
        id: ObjectId,
        source: ObjectId,
    ) -> Result<u64, InstallError<S::Error>> {
        let mut win = [0u8; PATCH_WINDOW];
        Digest::reset(&mut self.hash);
        let mut at = 0u64;
        loop {
            let n = match store
                .read_object(kind, &source, at, &mut win)
                .map_err(InstallError::Store)?
            {
                Some(n) => n.min(PATCH_WINDOW),
                None => return Err(InstallError::PatchSourceMissing { kind, id, source }),
            };
            self.hash.update(&win[..n]);
            at += n as u64;
            if n < PATCH_WINDOW {
                break;
            }
        }
        let found = ObjectId(self.hash.finalize_reset().into());
        if found != source {
            return Err(InstallError::PatchSourceDamaged {
                kind,
                source,
                found,
            });
        }
        Ok(at)
    }

    /// Begins an object of `len` bytes (a `Write` record's, or a `Patch` record's when `patch`
    /// is given) after the checks of its header.
    fn open_object<S: Store>(
        &mut self,
        store: &mut S,
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        patch: Option<Patch>,
    ) -> Res<S::Error> {
        trace!("write {} {} ({} bytes)", kind, id, len);
        // A patch adds one record byte to each source byte or copies one: it never builds more
        // bytes than its record holds.
        let room = self.part_len.saturating_sub(self.part_pos);
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

    /// Takes the next bytes of a `Patch` record: controls, bytes to add to the source's,
    /// bytes to copy. Builds the object's bytes through [`Ops::out_bytes`] as a `Write`
    /// record's arrive, reading the source in [`PATCH_WINDOW`]-byte windows.
    fn patch_bytes<S: Store>(&mut self, store: &mut S, input: &mut &[u8]) -> Res<S::Error> {
        let Rec::Body {
            kind,
            id,
            len,
            mut pos,
            patch: Some(mut p),
        } = self.rec
        else {
            return Ok(());
        };
        match p.step {
            Step::Control => {
                let before = input.len();
                let full = fill(
                    &mut self.op_buf[..PATCH_CONTROL_LEN],
                    &mut self.op_have,
                    input,
                );
                self.part_pos += (before - input.len()) as u64;
                if !full {
                    return Ok(());
                }
                self.op_have = 0;
                let word = |i: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&self.op_buf[i..i + 8]);
                    w
                };
                // Add and copy lengths are never negative: a sign bit makes them too long.
                let add = u64::from_le_bytes(word(0));
                let copy = u64::from_le_bytes(word(8));
                let left = len - pos;
                if add > left || copy > left - add {
                    return Err(InstallError::PatchOverrun {
                        kind,
                        id,
                        len,
                        at: pos,
                    });
                }
                let in_source = u64::try_from(p.old)
                    .is_ok_and(|o| o.checked_add(add).is_some_and(|e| e <= p.source_len));
                if !in_source {
                    return Err(InstallError::PatchRange {
                        kind,
                        id,
                        offset: p.old,
                        len: add,
                        source_len: p.source_len,
                    });
                }
                p.copy = copy;
                p.seek = offtin(word(16));
                p.step = Step::Add { left: add };
            }
            Step::Add { left } => {
                let n = to_usize(left).min(input.len()).min(PATCH_WINDOW);
                let (diff, rest) = input.split_at(n);
                *input = rest;
                let mut win = [0u8; PATCH_WINDOW];
                let win = &mut win[..n];
                // `old` is within the source (checked at the control).
                let at = p.old as u64;
                match store
                    .read_object(kind, &p.source, at, win)
                    .map_err(InstallError::Store)?
                {
                    Some(k) if k == n => {}
                    Some(_) => {
                        return Err(InstallError::PatchRange {
                            kind,
                            id,
                            offset: p.old,
                            len: n as u64,
                            source_len: p.source_len,
                        })
                    }
                    None => {
                        let source = p.source;
                        return Err(InstallError::PatchSourceMissing { kind, id, source });
                    }
                }
                for (w, d) in win.iter_mut().zip(diff) {
                    *w = w.wrapping_add(*d);
                }
                self.part_pos += n as u64;
                self.out_bytes(store, (kind, id, len, pos), win)?;
                pos += n as u64;
                p.old += n as i64;
                p.step = Step::Add {
                    left: left - n as u64,
                };
            }
            Step::Copy { left } => {
                let n = to_usize(left).min(input.len());
                let (chunk, rest) = input.split_at(n);
                *input = rest;
                self.part_pos += n as u64;
                self.out_bytes(store, (kind, id, len, pos), chunk)?;
                pos += n as u64;
                p.step = Step::Copy {
                    left: left - n as u64,
                };
            }
        }
        loop {
            match p.step {
                Step::Add { left: 0 } => p.step = Step::Copy { left: p.copy },
                Step::Copy { left: 0 } => {
                    let Some(old) = p.old.checked_add(p.seek) else {
                        return Err(InstallError::PatchRange {
                            kind,
                            id,
                            offset: p.old,
                            len: 0,
                            source_len: p.source_len,
                        });
                    };
                    p.old = old;
                    p.step = Step::Control;
                }
                _ => break,
            }
        }
        self.rec = Rec::Body {
            kind,
            id,
            len,
            pos,
            patch: Some(p),
        };
        if matches!(p.step, Step::Control) && pos == len {
            self.end_object(store)?;
        }
        Ok(())
    }

    fn body_bytes<S: Store>(&mut self, store: &mut S, input: &mut &[u8]) -> Res<S::Error> {
        let Rec::Body {
            kind, id, len, pos, ..
        } = self.rec
        else {
            return Ok(());
        };
        let n = to_usize(len.saturating_sub(pos)).min(input.len());
        let (chunk, rest) = input.split_at(n);
        *input = rest;
        self.out_bytes(store, (kind, id, len, pos), chunk)?;
        self.part_pos += n as u64;
        let pos = pos + n as u64;
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

    /// Runs the per-kind structure check over the object's next bytes, which start at offset
    /// `pos` of an object of `len` bytes.
    fn check_bytes<S: Store>(
        &mut self,
        store: &mut S,
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        mut pos: u64,
        mut data: &[u8],
    ) -> Res<S::Error> {
        let obj_err = |error| InstallError::Object { kind, id, error };
        while !data.is_empty() {
            let before = data.len();
            match self.check {
                Check::Rest => data = &[],
                Check::End => {
                    return Err(obj_err(ObjectError::TrailingBytes(to_usize(
                        len.saturating_sub(pos),
                    ))));
                }
                Check::FileHeader => {
                    if fill(&mut self.buf[..FILE_HEADER_LEN], &mut self.have, &mut data) {
                        let h = FileHeader::parse(&self.buf[..FILE_HEADER_LEN]).map_err(obj_err)?;
                        length_agrees(h.object_len(), len).map_err(obj_err)?;
                        self.have = 0;
                        self.file_xattrs = h.xattrs_len;
                        self.check = if h.target_len > 0 {
                            Check::FileTarget { left: h.target_len }
                        } else {
                            xattrs_then(h.xattrs_len, false)
                        };
                    }
                }
                Check::FileTarget { left } => {
                    let n = usize::from(left).min(data.len());
                    let (t, rest) = data.split_at(n);
                    if t.contains(&0) {
                        return Err(obj_err(ObjectError::BadSymlinkTarget));
                    }
                    data = rest;
                    let left = left - n as u16;
                    self.check = if left == 0 {
                        xattrs_then(self.file_xattrs, false)
                    } else {
                        Check::FileTarget { left }
                    };
                }
                Check::Xattrs {
                    left,
                    stage,
                    count,
                    then_end,
                } => {
                    let avail = usize::from(left).min(data.len());
                    let mut block = &data[..avail];
                    let (stage, count) = self
                        .xattr_bytes(stage, count, &mut block)
                        .map_err(obj_err)?;
                    let used = avail - block.len();
                    data = &data[used..];
                    let left = left - used as u16;
                    self.check = if left > 0 {
                        Check::Xattrs {
                            left,
                            stage,
                            count,
                            then_end,
                        }
                    } else if stage != XStage::NameLen {
                        return Err(obj_err(ObjectError::BadXattrs));
                    } else if then_end {
                        Check::End
                    } else {
                        Check::Rest
                    };
                }
                Check::DirMetaHeader => {
                    if fill(
                        &mut self.buf[..DIRMETA_HEADER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        let b = &self.buf[..DIRMETA_HEADER_LEN];
                        let mode = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        if mode & S_IFMT != S_IFDIR || mode & !(S_IFMT | S_IPERM) != 0 {
                            return Err(obj_err(ObjectError::BadMode(mode)));
                        }
                        let xlen = usize::from(le_u16(&b[12..14]));
                        if xlen > MAX_XATTR_BYTES {
                            let error = ObjectError::TooLong {
                                field: "xattr block",
                                len: xlen,
                                max: MAX_XATTR_BYTES,
                            };
                            return Err(obj_err(error));
                        }
                        length_agrees((DIRMETA_HEADER_LEN + xlen) as u64, len).map_err(obj_err)?;
                        self.have = 0;
                        self.check = xattrs_then(xlen as u16, true);
                    }
                }
                Check::TreeCount => {
                    if fill(
                        &mut self.buf[..DIRTREE_HEADER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        let b = &self.buf;
                        let count = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        self.have = 0;
                        self.check = if count == 0 {
                            Check::End
                        } else {
                            Check::TreeEntryHead { left: count }
                        };
                    }
                }
                Check::TreeEntryHead { left } => {
                    if fill(&mut self.buf[..2], &mut self.have, &mut data) {
                        let Some(need) = dir_entry_len(self.buf[0], self.buf[1]) else {
                            return Err(obj_err(ObjectError::BadEntryType(self.buf[0])));
                        };
                        self.check = Check::TreeEntry { left, need };
                    }
                }
                Check::TreeEntry { left, need } => {
                    let need = need.min(MAX_DIR_ENTRY_LEN);
                    if fill(&mut self.buf[..need], &mut self.have, &mut data) {
                        self.have = 0;
                        self.tree_entry(store, need)
                            .map_err(|e| e.for_object(kind, id))?;
                        let left = left - 1;
                        self.check = if left == 0 {
                            Check::End
                        } else {
                            Check::TreeEntryHead { left }
                        };
                    }
                }
                Check::CommitHeader => {
                    if fill(
                        &mut self.buf[..COMMIT_HEADER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        self.have = 0;
                        self.commit_header(store)
                            .map_err(|e| e.for_object(kind, id))?;
                        self.check = Check::CommitLen { field: 0 };
                    }
                }
                Check::CommitLen { field } => {
                    let width = if field == 0 { 1 } else { 2 };
                    if fill(&mut self.buf[..width], &mut self.have, &mut data) {
                        self.have = 0;
                        let (n, max, name) = match field {
                            0 => (u16::from(self.buf[0]), usize::MAX, "version"),
                            1 => (le_u16(&self.buf[..2]), MAX_SUBJECT_LEN, "subject"),
                            _ => (le_u16(&self.buf[..2]), MAX_BODY_LEN, "body"),
                        };
                        if usize::from(n) > max {
                            return Err(obj_err(ObjectError::TooLong {
                                field: name,
                                len: n.into(),
                                max,
                            }));
                        }
                        self.check = next_commit_field(field, n);
                    }
                }
                Check::CommitText { field, left } => {
                    let n = usize::from(left).min(data.len());
                    let (text, rest) = data.split_at(n);
                    data = rest;
                    let left = left - n as u16;
                    let name = match field {
                        0 => "version",
                        1 => "subject",
                        _ => "body",
                    };
                    if !self.utf8.feed(text) || (left == 0 && !self.utf8.at_boundary()) {
                        return Err(obj_err(ObjectError::NotUtf8(name)));
                    }
                    self.check = next_commit_field(field, left);
                }
                Check::CommitTrailer => {
                    if fill(
                        &mut self.buf[..COMMIT_TRAILER_LEN],
                        &mut self.have,
                        &mut data,
                    ) {
                        self.have = 0;
                        let mut v = [0u8; COMMIT_TRAILER_LEN];
                        v.copy_from_slice(&self.buf[..COMMIT_TRAILER_LEN]);
                        let commit = u64::from_le_bytes(v);
                        if commit == 0 {
                            return Err(obj_err(ObjectError::ZeroSecurityVersion));
                        }
                        if commit != self.security_version {
                            return Err(InstallError::SecurityVersionMismatch {
                                superblock: self.security_version,
                                commit,
                            });
                        }
                        self.check = Check::End;
                    }
                }
            }
            pos += (before - data.len()) as u64;
        }
        Ok(())
    }

    /// Checks the next bytes of an xattr block (at least one, none past the block's end): each
    /// name non-empty, without NUL, strictly after the previous one, at most [`MAX_XATTRS`]
    /// entries. Returns where the entry stands after them.
    fn xattr_bytes(
        &mut self,
        stage: XStage,
        count: u8,
        input: &mut &[u8],
    ) -> Result<(XStage, u8), ObjectError> {
        Ok(match stage {
            XStage::NameLen => {
                let Some((&n, rest)) = input.split_first() else {
                    return Ok((stage, count));
                };
                *input = rest;
                if n == 0 || usize::from(count) >= MAX_XATTRS {
                    return Err(ObjectError::BadXattrs);
                }
                self.have = 0;
                (
                    XStage::Name {
                        need: usize::from(n),
                    },
                    count + 1,
                )
            }
            XStage::Name { need } => {
                let need = need.min(MAX_NAME_LEN);
                if !fill(&mut self.buf[..need], &mut self.have, input) {
                    return Ok((stage, count));
                }
                self.have = 0;
                let name = &self.buf[..need];
                let after_prev = match self.prev_len {
                    Some(p) => self.prev_name.get(..usize::from(p)).unwrap_or(&[]) < name,
                    None => true,
                };
                if name.contains(&0) || !after_prev {
                    return Err(ObjectError::BadXattrs);
                }
                self.prev_name[..need].copy_from_slice(name);
                self.prev_len = Some(need as u8);
                (XStage::ValueLen, count)
            }
            XStage::ValueLen => {
                if !fill(&mut self.buf[..2], &mut self.have, input) {
                    return Ok((stage, count));
                }
                self.have = 0;
                match le_u16(&self.buf[..2]) {
                    0 => (XStage::NameLen, count),
                    left => (XStage::Value { left }, count),
                }
            }
            XStage::Value { left } => {
                let n = usize::from(left).min(input.len());
                *input = &input[n..];
                match left - n as u16 {
                    0 => (XStage::NameLen, count),
                    left => (XStage::Value { left }, count),
                }
            }
        })
    }

    /// Checks the dirtree entry held in `buf[..need]`: its name, its order and that what it
    /// names is in place.
    fn tree_entry<S: Store>(
        &mut self,
        store: &mut S,
        need: usize,
    ) -> Result<(), EntryError<S::Error>> {
        let (entry, _) =
            parse_dir_entry(self.buf.get(..need).unwrap_or(&[])).map_err(EntryError::Object)?;
        let name = entry.name();
        if let Some(prev_len) = self.prev_len {
            if self.prev_name.get(..usize::from(prev_len)).unwrap_or(&[]) >= name {
                return Err(EntryError::Object(ObjectError::Unsorted));
            }
        }
        let n = name.len().min(MAX_NAME_LEN);
        self.prev_name[..n].copy_from_slice(&name[..n]);
        self.prev_len = Some(n as u8);
        let present = |store: &mut S, kind, id| match store.has_object(kind, id) {
            Ok(true) => Ok(()),
            Ok(false) => Err(EntryError::Missing(kind, *id)),
            Err(e) => Err(EntryError::Store(e)),
        };
        match entry {
            DirEntry::File { id, .. } => present(store, ObjectKind::File, &id),
            DirEntry::Dir { tree, meta, .. } => {
                present(store, ObjectKind::DirTree, &tree)?;
                present(store, ObjectKind::DirMeta, &meta)?;
                // The depth limit, in fixed memory: the store knows the depth of every dirtree
                // in place (they arrive bottom-up), so a dirtree's depth is one more than its
                // deepest entry's, checked entry by entry.
                match store.tree_depth(&tree) {
                    Ok(Some(d)) if d < MAX_TREE_DEPTH => Ok(()),
                    Ok(Some(d)) => Err(EntryError::TooDeep(d.saturating_add(1))),
                    Ok(None) => Err(EntryError::DepthUnknown(tree)),
                    Err(e) => Err(EntryError::Store(e)),
                }
            }
        }
    }

    /// Checks the fixed part of a commit held in `buf[..COMMIT_HEADER_LEN]`.
    fn commit_header<S: Store>(&mut self, store: &mut S) -> Result<(), EntryError<S::Error>> {
        let mut header = [0u8; COMMIT_HEADER_LEN];
        header.copy_from_slice(&self.buf[..COMMIT_HEADER_LEN]);
        if header[0] > 1 {
            return Err(EntryError::Object(ObjectError::BadFlag(header[0])));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&header[33..41]);
        let ts = u64::from_le_bytes(ts);
        if ts != self.timestamp {
            return Err(EntryError::Timestamp {
                superblock: self.timestamp,
                commit: ts,
            });
        }
        let (tree, meta) = commit_roots(&header);
        for (kind, id) in [(ObjectKind::DirTree, tree), (ObjectKind::DirMeta, meta)] {
            match store.has_object(kind, &id) {
                Ok(true) => {}
                Ok(false) => return Err(EntryError::Missing(kind, id)),
                Err(e) => return Err(EntryError::Store(e)),
            }
        }
        Ok(())
    }
}

/// After text `field` with `left` bytes still to come, what the commit check expects next.
fn next_commit_field(field: u8, left: u16) -> Check {
    match (field, left) {
        (f, l) if l > 0 => Check::CommitText { field: f, left: l },
        (0, _) => Check::CommitLen { field: 1 },
        (1, _) => Check::CommitLen { field: 2 },
        _ => Check::CommitTrailer,
    }
}

/// The object's own header says `expected` bytes; the record said `len`.
fn length_agrees(expected: u64, len: u64) -> Result<(), ObjectError> {
    if expected > len {
        Err(ObjectError::Truncated {
            needed: to_usize(expected),
            have: to_usize(len),
        })
    } else if expected < len {
        Err(ObjectError::TrailingBytes(to_usize(len - expected)))
    } else {
        Ok(())
    }
}

/// Failures of the checks that look beyond the object's own bytes.
enum EntryError<E> {
    Object(ObjectError),
    Missing(ObjectKind, ObjectId),
    Timestamp { superblock: u64, commit: u64 },
    TooDeep(u16),
    DepthUnknown(ObjectId),
    Store(E),
}

impl<E> EntryError<E> {
    fn for_object(self, kind: ObjectKind, id: ObjectId) -> InstallError<E> {
        match self {
            EntryError::Object(error) => InstallError::Object { kind, id, error },
            EntryError::Missing(kind, id) => InstallError::MissingObject { kind, id },
            EntryError::Timestamp { superblock, commit } => {
                InstallError::MetaMismatch { superblock, commit }
            }
            EntryError::TooDeep(depth) => InstallError::TreeTooDeep {
                id,
                depth,
                max: MAX_TREE_DEPTH,
            },
            EntryError::DepthUnknown(id) => InstallError::TreeDepthUnknown { id },
            EntryError::Store(e) => InstallError::Store(e),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn check_split(text: &[u8], at: usize, at2: usize) -> bool {
        let mut u = Utf8::default();
        let (a, rest) = text.split_at(at.min(text.len()));
        let (b, c) = rest.split_at(at2.min(rest.len()));
        u.feed(a) && u.feed(b) && u.feed(c) && u.at_boundary()
    }

    #[test]
    fn utf8_across_any_split() {
        let good = "héllo wörld ✓ 𝄞 end".as_bytes();
        let mut bad = good.to_vec();
        bad[2] = 0xff; // inside "é"
        let cut_char = &"𝄞".as_bytes()[..3];
        for i in 0..=good.len() {
            for j in 0..=good.len() - i {
                assert!(check_split(good, i, j), "{i} {j}");
                assert!(!check_split(&bad, i, j), "{i} {j}");
            }
        }
        assert!(
            !check_split(&good[..good.len() - 5], 3, 3),
            "ends inside the last character"
        );
        for i in 0..=3 {
            assert!(!check_split(cut_char, i, 1));
        }
        // An overlong encoding and a lone continuation byte.
        assert!(!check_split(&[0xc0, 0x80], 1, 0));
        assert!(!check_split(&[0x80], 0, 0));
    }

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
