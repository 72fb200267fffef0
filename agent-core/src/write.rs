//! Writing `.update` files (feature `std`; never needed on a device).
//!
//! [`UpdateWriter`] takes the operations of one update in install order (bottom-up: every
//! object before anything that names it, the commit last), spools their records to an
//! anonymous temporary file, and at [`UpdateWriter::finish`] groups them into parts, deflates
//! each part, hashes it, fills in and signs the superblock and writes the file.
//!
//! Grouping: consecutive records are packed into one part until it would exceed the part size
//! ([`UpdateWriter::part_size`], 512 KiB by default) so that many small objects compress
//! together; a record larger than the part size gets a part of its own. When a file would need
//! more than [`MAX_PARTS`] parts, the part size is doubled until it does not. A part that does
//! not get smaller by deflating is stored as it is.
//!
//! Memory stays bounded whatever the tree's size: object bytes go to the spool file as they are
//! read ([`UpdateWriter::write_object_from`] streams), and parts are compressed from the spool
//! into a second temporary file in 64 KiB steps. What stays in memory is 8 bytes per operation.

use std::boxed::Box;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use core::fmt;

use ed25519_dalek::{Signer, SigningKey};
use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use sha2::{Digest, Sha256};

use crate::object::{
    Commit, ObjectId, ObjectKind, MAX_COMMIT_LEN, MAX_SUBJECT_LEN, MAX_VERSION_LEN,
};
use crate::wire::{
    Codec, Header, HeaderRepr, OpRepr, PartEntry, SignatureKind, Superblock, TargetMeta,
    FORMAT_VERSION, HEADER_LEN, MAX_PARTS, MAX_REF_LEN, MAX_SUPERBLOCK_LEN, MIN_FORMAT_VERSION,
    PATCH_CONTROL_LEN, PATCH_FORMAT_VERSION, PATCH_HEADER_LEN, REUSE_LEN, SIGNATURE_LEN,
    WRITE_HEADER_LEN,
};

/// Default target for the decoded size of a part: 512 KiB.
pub const DEFAULT_PART_SIZE: usize = 512 * 1024;

/// Bytes read or compressed per step.
const STEP: usize = 64 * 1024;

/// What [`UpdateWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Bytes of the file.
    pub bytes: u64,
    /// Parts in the file.
    pub parts: u32,
    /// Operations (objects written or reused) in the file.
    pub objects: u32,
}

/// Why an update could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteError {
    /// Reading an object, the spool files or writing the output failed.
    Io(io::Error),
    /// The ref name is empty or longer than [`MAX_REF_LEN`].
    BadRef,
    /// The version or subject is longer than a commit's may be.
    BadMeta,
    /// No commit object was written last.
    NoCommit,
    /// Operations follow the commit object.
    CommitNotLast,
    /// The commit object written is not the target the writer was made for.
    CommitNotTarget {
        /// The writer's `to`.
        expected: ObjectId,
        /// The commit written.
        found: ObjectId,
    },
    /// The commit object's timestamp is not the one given to [`UpdateWriter::new`].
    MetaMismatch {
        /// Given to the writer.
        writer: u64,
        /// In the commit object.
        commit: u64,
    },
    /// More than `u32::MAX` operations.
    TooManyObjects,
    /// The update does not fit in [`MAX_PARTS`] parts of at most 4 GiB.
    TooLarge,
    /// The superblock does not fit in [`MAX_SUPERBLOCK_LEN`] bytes.
    SuperblockTooLarge,
    /// The format version asked for ([`UpdateWriter::format_version`]) has no patch records
    /// (version 3 on), but the update has some.
    PatchNeedsV3 {
        /// The version asked for.
        version: u16,
    },
    /// The format version asked for ([`UpdateWriter::format_version`]) cannot carry the
    /// commit: version 1 has no security version, other versions are unknown.
    FormatVersion {
        /// The version asked for.
        version: u16,
        /// The commit's security version.
        security_version: u64,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Io(e) => write!(f, "writing the update failed: {e}"),
            WriteError::BadRef => write!(
                f,
                "the ref name is empty or longer than {MAX_REF_LEN} bytes"
            ),
            WriteError::BadMeta => write!(
                f,
                "the version is over {MAX_VERSION_LEN} bytes or the subject over {MAX_SUBJECT_LEN}"
            ),
            WriteError::NoCommit => {
                f.write_str("the update has no commit object: write the commit last")
            }
            WriteError::CommitNotLast => {
                f.write_str("operations follow the commit object: write the commit last")
            }
            WriteError::CommitNotTarget { expected, found } => {
                write!(f, "the commit object written is {found}, but the update was created for {expected}")
            }
            WriteError::MetaMismatch { writer, commit } => write!(
                f,
                "the update was created with timestamp {writer} but the commit object has {commit}"
            ),
            WriteError::TooManyObjects => {
                f.write_str("an update holds at most 4294967295 operations")
            }
            WriteError::TooLarge => {
                write!(f, "the update does not fit in {MAX_PARTS} parts of 4 GiB")
            }
            WriteError::SuperblockTooLarge => {
                write!(f, "the superblock is over {MAX_SUPERBLOCK_LEN} bytes")
            }
            WriteError::PatchNeedsV3 { version } => write!(
                f,
                "format version {version} has no patch records; write format version {PATCH_FORMAT_VERSION} or later, or write the objects whole"
            ),
            WriteError::FormatVersion {
                version,
                security_version,
            } => write!(
                f,
                "format version {version} cannot carry a commit at security version {security_version}; write format version {FORMAT_VERSION}"
            ),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Writes one `.update` file. See the [module docs](self).
pub struct UpdateWriter {
    ref_name: String,
    from: Option<ObjectId>,
    to: ObjectId,
    timestamp: u64,
    version: String,
    subject: String,
    part_size: usize,
    level: u8,
    /// `None`: the lowest version that carries the update.
    format_version: Option<u16>,
    spool: Option<BufWriter<File>>,
    /// Record lengths (header + object bytes), in order.
    records: Vec<u64>,
    /// The commit written: id, timestamp and security version, and whether operations
    /// followed it.
    commit: Option<(ObjectId, u64, u64)>,
    after_commit: bool,
    /// Patch records were added.
    patches: bool,
    /// The first error of an operation that cannot return one (`reuse_object`) or that left
    /// the spool in an unknown state.
    deferred: Option<io::Error>,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A part decodes to at most `u32::MAX` bytes, so an object must fit in that with its record
/// header.
fn check_len(len: u64) -> io::Result<()> {
    if len > u64::from(u32::MAX) - WRITE_HEADER_LEN as u64 {
        Err(invalid(
            "object too large for one part (4 GiB less a record header)",
        ))
    } else {
        Ok(())
    }
}

impl UpdateWriter {
    /// A writer for an update of `ref_name` to commit `to` (from `from` for a delta).
    /// `timestamp`, `version` and `subject` are the target commit's, shown by devices before
    /// installing.
    pub fn new(
        ref_name: &str,
        from: Option<ObjectId>,
        to: ObjectId,
        timestamp: u64,
        version: &str,
        subject: &str,
    ) -> Self {
        UpdateWriter {
            ref_name: ref_name.into(),
            from,
            to,
            timestamp,
            version: version.into(),
            subject: subject.into(),
            part_size: DEFAULT_PART_SIZE,
            level: 6,
            format_version: None,
            spool: None,
            records: Vec::new(),
            commit: None,
            after_commit: false,
            patches: false,
            deferred: None,
        }
    }

    /// Sets the target decoded size of a part (default [`DEFAULT_PART_SIZE`]). Records are
    /// packed into a part up to this size; a larger one gets a part of its own. Raised
    /// automatically when the update would need more than [`MAX_PARTS`] parts.
    pub fn part_size(mut self, target_uncompressed_bytes: usize) -> Self {
        self.part_size = target_uncompressed_bytes.max(1);
        self
    }

    /// Sets the format version written (default: the lowest that carries the update, 3 when
    /// it has patch records, else 2). Version 1 is for devices whose agent predates security
    /// versions (and for tests); it cannot carry a commit whose security version is not 0
    /// ([`WriteError::FormatVersion`]); versions 1 and 2 cannot carry patch records
    /// ([`WriteError::PatchNeedsV3`]).
    pub fn format_version(mut self, version: u16) -> Self {
        self.format_version = Some(version);
        self
    }

    /// Sets the deflate level, 0 (fastest) to 10 (smallest); default 6.
    pub fn compression(mut self, level: u8) -> Self {
        self.level = level.min(10);
        self
    }

    fn spool(&mut self) -> io::Result<&mut BufWriter<File>> {
        if let Some(e) = &self.deferred {
            return Err(io::Error::new(
                e.kind(),
                std::format!("an earlier write failed: {e}"),
            ));
        }
        if self.spool.is_none() {
            self.spool = Some(BufWriter::with_capacity(STEP, tempfile::tempfile()?));
        }
        self.spool.as_mut().ok_or_else(|| invalid("no spool"))
    }

    /// `commit_meta`: a commit's timestamp and security version.
    fn note_op(
        &mut self,
        kind: ObjectKind,
        id: ObjectId,
        record_len: u64,
        commit_meta: Option<(u64, u64)>,
    ) {
        self.records.push(record_len);
        if self.commit.is_some() {
            self.after_commit = true;
        }
        if kind == ObjectKind::Commit {
            if let Some((ts, sv)) = commit_meta {
                self.commit = Some((id, ts, sv));
            }
        }
    }

    /// Adds an object held in memory. `bytes` must hash to `id` (checked).
    pub fn write_object(&mut self, kind: ObjectKind, id: ObjectId, bytes: &[u8]) -> io::Result<()> {
        if let ObjectKind::Unknown(_) = kind {
            return Err(invalid("unknown object kind"));
        }
        if ObjectId::of(bytes) != id {
            return Err(invalid("object bytes do not hash to the id given"));
        }
        let commit_meta = if kind == ObjectKind::Commit {
            let c = Commit::parse(bytes)
                .map_err(|e| invalid(&std::format!("commit object is invalid: {e}")))?;
            Some((c.timestamp, c.security_version))
        } else {
            None
        };
        let len = bytes.len() as u64;
        check_len(len)?;
        let mut header = [0u8; WRITE_HEADER_LEN];
        OpRepr::Write { kind, id, len }.emit(&mut header);
        let spool = self.spool()?;
        let r = spool
            .write_all(&header)
            .and_then(|()| spool.write_all(bytes));
        if let Err(e) = r {
            self.deferred = Some(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        self.note_op(
            kind,
            id,
            (WRITE_HEADER_LEN as u64).saturating_add(len),
            commit_meta,
        );
        Ok(())
    }

    /// Adds an object of `len` bytes read from `reader`, without holding it in memory (except
    /// a commit, which is small). The bytes must hash to `id` (checked). After an error the
    /// writer is unusable: [`UpdateWriter::finish`] fails.
    pub fn write_object_from(
        &mut self,
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        reader: &mut dyn Read,
    ) -> io::Result<()> {
        if kind == ObjectKind::Commit {
            if len > MAX_COMMIT_LEN as u64 {
                return Err(invalid("commit object too long"));
            }
            let mut bytes = Vec::new();
            reader.take(len).read_to_end(&mut bytes)?;
            if bytes.len() as u64 != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object shorter than declared",
                ));
            }
            return self.write_object(kind, id, &bytes);
        }
        if let ObjectKind::Unknown(_) = kind {
            return Err(invalid("unknown object kind"));
        }
        check_len(len)?;
        let mut header = [0u8; WRITE_HEADER_LEN];
        OpRepr::Write { kind, id, len }.emit(&mut header);
        let r = (|| {
            let spool = self.spool()?;
            spool.write_all(&header)?;
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; STEP];
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(STEP).min(STEP);
                let n = reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object shorter than declared",
                    ));
                }
                hash.update(&buf[..n]);
                spool.write_all(&buf[..n])?;
                left -= n as u64;
            }
            if ObjectId(hash.finalize().into()) != id {
                return Err(invalid("object bytes do not hash to the id given"));
            }
            Ok(())
        })();
        if let Err(e) = r {
            // The spool holds part of a record: nothing written after it can be trusted.
            self.deferred = Some(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        self.note_op(
            kind,
            id,
            (WRITE_HEADER_LEN as u64).saturating_add(len),
            None,
        );
        Ok(())
    }

    /// Adds an object of `len` bytes built by `patch` from object `source` (of the same kind,
    /// which the device holds: an object of the delta's source commit). `patch` is a stream
    /// of controls and their bytes as [`diff`] makes it; its framing is checked (its
    /// controls build exactly `len` bytes and nothing follows the last), not its result,
    /// which the caller checks ([`apply_patch`]) if it did not make the patch itself. Needs
    /// format version 3 ([`WriteError::PatchNeedsV3`]). Commits are always written whole.
    pub fn patch_object(
        &mut self,
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        source: ObjectId,
        patch: &[u8],
    ) -> io::Result<()> {
        if matches!(kind, ObjectKind::Unknown(_) | ObjectKind::Commit) {
            return Err(invalid("only files, dirtrees and dirmetas can be patched"));
        }
        check_len(len)?;
        if patch_len(patch) != Some(len) {
            return Err(invalid(
                "the patch does not build exactly the object's length",
            ));
        }
        let record = (PATCH_HEADER_LEN as u64).saturating_add(patch.len() as u64);
        if record > u64::from(u32::MAX) {
            return Err(invalid("patch too large for one part"));
        }
        let mut header = [0u8; PATCH_HEADER_LEN];
        OpRepr::Patch {
            kind,
            id,
            len,
            source,
        }
        .emit(&mut header);
        let spool = self.spool()?;
        let r = spool
            .write_all(&header)
            .and_then(|()| spool.write_all(patch));
        if let Err(e) = r {
            self.deferred = Some(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        self.patches = true;
        self.note_op(kind, id, record, None);
        Ok(())
    }

    /// Adds a reuse of an object the device already has (for a dirtree: its whole tree).
    /// An error spooling it is reported by [`UpdateWriter::finish`].
    pub fn reuse_object(&mut self, kind: ObjectKind, id: ObjectId) {
        let mut rec = [0u8; REUSE_LEN];
        OpRepr::Reuse { kind, id }.emit(&mut rec);
        let r = self.spool().and_then(|s| s.write_all(&rec));
        match r {
            Ok(()) => self.note_op(kind, id, REUSE_LEN as u64, None),
            Err(e) => {
                if self.deferred.is_none() {
                    self.deferred = Some(e);
                }
            }
        }
    }

    /// The format version written: the one asked for, else the lowest that carries the
    /// update (3 with patch records, else 2), so that an agent that predates patches still
    /// reads every file without them.
    fn version(&self) -> u16 {
        match self.format_version {
            Some(v) => v,
            None if self.patches => PATCH_FORMAT_VERSION,
            None => PATCH_FORMAT_VERSION - 1,
        }
    }

    fn check(&self) -> Result<(), WriteError> {
        if self.ref_name.is_empty() || self.ref_name.len() > MAX_REF_LEN {
            return Err(WriteError::BadRef);
        }
        if self.version.len() > MAX_VERSION_LEN || self.subject.len() > MAX_SUBJECT_LEN {
            return Err(WriteError::BadMeta);
        }
        let Some((id, ts, sv)) = self.commit else {
            return Err(WriteError::NoCommit);
        };
        if self.after_commit {
            return Err(WriteError::CommitNotLast);
        }
        if id != self.to {
            return Err(WriteError::CommitNotTarget {
                expected: self.to,
                found: id,
            });
        }
        if ts != self.timestamp {
            return Err(WriteError::MetaMismatch {
                writer: self.timestamp,
                commit: ts,
            });
        }
        if u32::try_from(self.records.len()).is_err() {
            return Err(WriteError::TooManyObjects);
        }
        let v = self.version();
        if self.patches && v < PATCH_FORMAT_VERSION {
            return Err(WriteError::PatchNeedsV3 { version: v });
        }
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&v) || (v == 1 && sv != 0) {
            return Err(WriteError::FormatVersion {
                version: v,
                security_version: sv,
            });
        }
        Ok(())
    }

    /// Groups, compresses, signs (with the ed25519 secret seed `signing_key`, or unsigned) and
    /// writes the file to `out`.
    pub fn finish(
        mut self,
        signing_key: Option<&[u8; 32]>,
        out: &mut dyn Write,
    ) -> Result<WriteSummary, WriteError> {
        if let Some(e) = self.deferred.take() {
            return Err(WriteError::Io(e));
        }
        self.check()?;
        let Some(spool) = self.spool.take() else {
            return Err(WriteError::NoCommit);
        };
        let mut spool = spool
            .into_inner()
            .map_err(|e| WriteError::Io(e.into_error()))?;
        spool.seek(SeekFrom::Start(0))?;

        let plan = plan_parts(&self.records, self.part_size as u64)?;

        // Compress each part into the second spool.
        let mut packed = tempfile::tempfile()?;
        let mut compressor = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
            i32::from(self.level),
            -15,
            0,
        )));
        let mut parts: heapless::Vec<PartEntry, MAX_PARTS> = heapless::Vec::new();
        let mut raw = vec![0u8; STEP];
        let mut deflated = vec![0u8; STEP];
        let mut at = 0usize;
        for &count in &plan {
            let uncompressed: u64 = self.records[at..at + count].iter().sum();
            at += count;
            let start = packed.stream_position()?;
            compressor.reset();
            let mut hash = Sha256::new();
            let mut size = 0u64;
            let mut left = uncompressed;
            let mut finished = false;
            while !finished {
                let n = usize::try_from(left).unwrap_or(STEP).min(STEP);
                spool.read_exact(&mut raw[..n])?;
                left -= n as u64;
                let flush = if left == 0 {
                    TDEFLFlush::Finish
                } else {
                    TDEFLFlush::None
                };
                let mut input = &raw[..n];
                loop {
                    let (status, used, written) =
                        compress(&mut compressor, input, &mut deflated, flush);
                    input = &input[used..];
                    packed.write_all(&deflated[..written])?;
                    hash.update(&deflated[..written]);
                    size += written as u64;
                    match status {
                        TDEFLStatus::Done => {
                            finished = true;
                            break;
                        }
                        TDEFLStatus::Okay if input.is_empty() && flush == TDEFLFlush::None => break,
                        TDEFLStatus::Okay => {}
                        _ => return Err(WriteError::Io(io::Error::other("deflate failed"))),
                    }
                }
            }
            let (codec, size, sha256) = if size < uncompressed {
                (Codec::Deflate, size, hash.finalize().into())
            } else {
                // Not worth it: store the records as they are.
                packed.set_len(start)?;
                packed.seek(SeekFrom::Start(start))?;
                spool.seek(SeekFrom::Current(-(uncompressed as i64)))?;
                let mut hash = Sha256::new();
                let mut left = uncompressed;
                while left > 0 {
                    let n = usize::try_from(left).unwrap_or(STEP).min(STEP);
                    spool.read_exact(&mut raw[..n])?;
                    packed.write_all(&raw[..n])?;
                    hash.update(&raw[..n]);
                    left -= n as u64;
                }
                (Codec::Stored, uncompressed, hash.finalize().into())
            };
            let entry = PartEntry {
                codec,
                size: u32::try_from(size).map_err(|_| WriteError::TooLarge)?,
                uncompressed_size: u32::try_from(uncompressed).map_err(|_| WriteError::TooLarge)?,
                ops: count as u32,
                sha256,
            };
            parts.push(entry).map_err(|_| WriteError::TooLarge)?;
        }

        let sb = Superblock {
            ref_name: &self.ref_name,
            from: self.from,
            to: self.to,
            meta: TargetMeta {
                timestamp: self.timestamp,
                version: &self.version,
                subject: &self.subject,
            },
            objects: self.records.len() as u32,
            parts,
            security_version: self.commit.map_or(0, |(_, _, sv)| sv),
        };
        let mut head = vec![0u8; HEADER_LEN + MAX_SUPERBLOCK_LEN];
        let sb_len = sb
            .emit_version(&mut head[HEADER_LEN..], self.version())
            .map_err(|_| WriteError::SuperblockTooLarge)?
            .len();
        HeaderRepr {
            version: self.version(),
            superblock_len: sb_len as u32,
        }
        .emit(&mut Header::new_unchecked(&mut head[..HEADER_LEN]));
        head.truncate(HEADER_LEN + sb_len);
        match signing_key {
            Some(seed) => {
                let signature = SigningKey::from_bytes(seed).sign(&head);
                head.push(SignatureKind::Ed25519.code());
                head.extend_from_slice(&signature.to_bytes());
            }
            None => head.push(SignatureKind::None.code()),
        }
        out.write_all(&head)?;
        packed.seek(SeekFrom::Start(0))?;
        let parts_len = io::copy(&mut packed, out)?;
        out.flush()?;
        let bytes = head.len() as u64 + parts_len;
        debug_assert_eq!(
            head.len(),
            HEADER_LEN + sb_len + 1 + signing_key.map_or(0, |_| SIGNATURE_LEN)
        );
        Ok(WriteSummary {
            bytes,
            parts: plan.len() as u32,
            objects: self.records.len() as u32,
        })
    }
}

/// A patch that builds `new` from `old`, as a `Patch` record carries it (`docs/FORMAT.md`
/// §6): bsdiff's suffix-array matching (the `bsdiff` crate), written as one stream of
/// controls, each followed by its bytes to add to the source's and its bytes to copy.
pub fn diff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut patch = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = bsdiff::diff(old, new, &mut patch);
    patch
}

/// Applies a patch as [`diff`] makes it to `old` (host side: checks and tests; the device
/// applies patches in the installer, in fixed memory).
pub fn apply_patch(old: &[u8], patch: &[u8]) -> io::Result<Vec<u8>> {
    let mut new = Vec::new();
    bsdiff::patch(old, &mut &patch[..], &mut new)?;
    Ok(new)
}

/// The bytes a patch builds, when its framing is sound: every control complete, its add and
/// copy bytes present, nothing after the last. `None` otherwise.
pub fn patch_len(mut patch: &[u8]) -> Option<u64> {
    let mut built = 0u64;
    while !patch.is_empty() {
        let control = patch.get(..PATCH_CONTROL_LEN)?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&control[i..i + 8]);
            w
        };
        // As the installer reads them: a sign bit makes a length too long.
        let (add, copy) = (u64::from_le_bytes(word(0)), u64::from_le_bytes(word(8)));
        let data = add.checked_add(copy)?;
        patch = patch.get(PATCH_CONTROL_LEN + usize::try_from(data).ok()?..)?;
        built = built.checked_add(data)?;
    }
    Some(built)
}

/// Whether writing `new` as a patch pays: the patch, deflated, is smaller than `new`
/// deflated, both at level 3 (a quick stand-in for the part's codec, which compresses both
/// the same way).
pub fn patch_pays(new: &[u8], patch: &[u8]) -> bool {
    use miniz_oxide::deflate::compress_to_vec;
    let patch = compress_to_vec(patch, 3).len() + PATCH_HEADER_LEN;
    let whole = compress_to_vec(new, 3).len() + WRITE_HEADER_LEN;
    patch < whole
}

/// Splits records (by length) into parts of at most `target` decoded bytes each (a larger
/// record alone), doubling `target` until at most [`MAX_PARTS`] parts are needed. Returns the
/// number of records in each part.
fn plan_parts(records: &[u64], mut target: u64) -> Result<Vec<usize>, WriteError> {
    loop {
        let mut plan = Vec::new();
        let mut count = 0usize;
        let mut size = 0u64;
        for &len in records {
            if count > 0 && (size.saturating_add(len) > target || len > target) {
                plan.push(count);
                count = 0;
                size = 0;
            }
            count += 1;
            size = size.saturating_add(len);
            if size > u64::from(u32::MAX) {
                return Err(WriteError::TooLarge);
            }
        }
        if count > 0 {
            plan.push(count);
        }
        if plan.len() <= MAX_PARTS {
            return Ok(plan);
        }
        if target >= u64::from(u32::MAX) {
            return Err(WriteError::TooLarge);
        }
        target = target.saturating_mul(2).min(u64::from(u32::MAX));
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn diff_apply_and_framing() {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = old.clone();
        new[100..110].fill(9);
        new.splice(2000..2000, b"inserted".iter().copied());
        let p = diff(&old, &new);
        assert_eq!(apply_patch(&old, &p).unwrap(), new);
        assert_eq!(patch_len(&p), Some(new.len() as u64));
        assert!(patch_pays(&new, &p));
        assert_eq!(patch_len(&p[..p.len() - 1]), None);
        let mut longer = p.clone();
        longer.push(0);
        assert_eq!(patch_len(&longer), None);
        assert_eq!(patch_len(&[]), Some(0));
        let mut negative = p.clone();
        negative[7] |= 0x80;
        assert_eq!(patch_len(&negative), None);
    }

    #[test]
    fn plan_groups_small_and_isolates_large() {
        assert_eq!(plan_parts(&[10, 10, 10], 100).unwrap(), vec![3]);
        assert_eq!(plan_parts(&[60, 60, 60], 100).unwrap(), vec![1, 1, 1]);
        assert_eq!(plan_parts(&[10, 500, 10, 10], 100).unwrap(), vec![1, 1, 2]);
        // 200 records of 10 bytes with a 10-byte target would need 200 parts: the target grows.
        let many = vec![10u64; 200];
        let plan = plan_parts(&many, 10).unwrap();
        assert!(plan.len() <= MAX_PARTS);
        assert_eq!(plan.iter().sum::<usize>(), 200);
    }
}
