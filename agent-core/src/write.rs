//! Writing `.update` files (feature `std`; never needed on a device).
//!
//! [`UpdateWriter`] takes the operations of one update in install order (bottom-up: every
//! object before anything that names it, the commit last), spools their records to an
//! anonymous temporary file, and at [`UpdateWriter::finish`] groups them into parts,
//! compresses each part (xz by default, or deflate: [`UpdateWriter::codec`]) on every core,
//! hashes it, fills in and signs the superblock and writes the file.
//!
//! Grouping (deflate, and xz with [`Locality::Name`]): consecutive records are packed into one
//! part until it would exceed the part size ([`UpdateWriter::part_size`]: 512 KiB for deflate,
//! the dictionary for xz) so that many small objects compress together; a record larger than
//! the part size gets a part of its own. When a file would need more than [`MAX_PARTS`] parts,
//! the part size is doubled until it does not. A part that does not get smaller by
//! compressing is stored as it is.
//!
//! Locality (xz, [`UpdateWriter::locality`]): by default ([`Locality::Tree`]) the records keep
//! the order they were given in (the generator's: each directory's files, then the directory,
//! bottom-up, as a tar of the tree has them), and the file is split into [`XZ_PARTS`] parts of
//! equal size (more when that makes them larger than the dictionary), each through the BCJ
//! filter of the instruction set most of its ELF bytes are for (read from their `e_machine`).
//! A dirtree then follows its files within the dictionary, so the ids it names are matches,
//! and a part holds a whole subtree. With [`Locality::Name`] the writer moves every written
//! file ahead of the dirtrees, dirmetas, reuses and the commit (files name nothing, so the file
//! stays bottom-up), grouped by ELF instruction set (each group's parts with its filter) and
//! by file name extension and name ([`UpdateWriter::name_next`]).
//!
//! Dictionary: [`UpdateWriter::max_dictionary`] bounds what a device must lend. Xz parts use an
//! LZMA2 dictionary no larger (and no larger than the part needs); deflate's back-references
//! reach at most as far (below 32 KiB the compressor's dictionary is reset with a full flush
//! every that many bytes).
//!
//! Memory stays bounded whatever the tree's size: object bytes go to the spool file as they are
//! read ([`UpdateWriter::write_object_from`] streams), and parts are compressed from the spool
//! into a temporary file each, in 64 KiB steps (the xz encoder holds its dictionary, about ten
//! times its size, per core). What stays in memory is 24 bytes per operation.

use std::boxed::Box;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

use core::fmt;

use ed25519_dalek::{Signer, SigningKey};
use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use sha2::{Digest, Sha256};

use crate::object::{
    Commit, FileHeader, ObjectId, ObjectKind, FILE_HEADER_LEN, MAX_COMMIT_LEN, MAX_SUBJECT_LEN,
    MAX_SYMLINK_TARGET, MAX_VERSION_LEN, MAX_XATTR_BYTES,
};
use crate::wire::{
    dictionary_at_most, Codec, Filter, Header, HeaderRepr, OpRepr, PartEntry, SignatureKind,
    Superblock, TargetMeta, DEFLATE_DICTIONARY, FORMAT_VERSION, HEADER_LEN, MAX_PARTS, MAX_REF_LEN,
    MAX_SUPERBLOCK_LEN, MIN_DICTIONARY, MIN_FORMAT_VERSION, PATCH_CONTROL_LEN,
    PATCH_FORMAT_VERSION, PATCH_HEADER_LEN, REUSE_LEN, SIGNATURE_LEN, WRITE_HEADER_LEN,
};

/// Default target for the decoded size of a deflate part: 512 KiB. (An xz part's default is
/// the dictionary.)
pub const DEFAULT_PART_SIZE: usize = 512 * 1024;

/// Default [`UpdateWriter::max_dictionary`]: 8 MiB, what `xz -6` uses and what the Linux agent
/// lends (`ecu-agent apply` stays within 16 MiB of memory with it).
pub const DEFAULT_MAX_DICTIONARY: u32 = 8 << 20;

/// How many parts of equal size [`Locality::Tree`] splits an xz update into (more when they
/// would be smaller than the dictionary): few, since each part starts with an empty
/// dictionary (on the default corpus 2 parts instead of 17 saved 1.1%), but enough to keep
/// the cores of the generating host and of a device that decodes parts in parallel busy.
pub const XZ_PARTS: u64 = 4;

/// The largest decoded size [`Locality::Tree`] aims at for one xz part: 1 GiB.
const MAX_XZ_PART: u64 = 1 << 30;

/// How xz parts are laid out ([`UpdateWriter::locality`]). See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Locality {
    /// The records in the order given, [`XZ_PARTS`] parts of equal size, each with the BCJ
    /// filter of most of its ELF bytes (the default: the smallest files on a Debian system).
    #[default]
    Tree,
    /// Written files first, grouped by ELF instruction set and by file name, parts split where
    /// the filter changes.
    Name,
}

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
    /// [`UpdateWriter::max_dictionary`] is below the 4 KiB every codec needs.
    DictionaryTooSmall(u64),
    /// The format version asked for ([`UpdateWriter::format_version`]) cannot carry the
    /// update: version 1 has no security version, versions 1 and 2 no xz and no dictionary
    /// other than 32 KiB, other versions are unknown.
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
            WriteError::DictionaryTooSmall(d) => write!(
                f,
                "a dictionary of {d} bytes is too small: every codec needs at least {MIN_DICTIONARY}"
            ),
            WriteError::FormatVersion {
                version,
                security_version,
            } => write!(
                f,
                "format version {version} cannot carry this update (security version {security_version}, or xz parts, or a dictionary other than 32 KiB); write format version {FORMAT_VERSION}"
            ),
        }
    }
}

/// Transparent to the I/O error its message includes: `source()` is that error's source, so
/// that each message appears once in a chain.
impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Io(e) => e.source(),
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
    part_size: Option<usize>,
    locality: Locality,
    level: u8,
    /// `None`: the lowest version that carries the update.
    format_version: Option<u16>,
    codec: Option<Codec>,
    max_dictionary: u64,
    spool: Option<BufWriter<File>>,
    /// The records, in the order written.
    records: Vec<Rec>,
    /// Sort key of the next object ([`UpdateWriter::name_next`]).
    next_key: u64,
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

/// One record as the writer remembers it: 24 bytes.
#[derive(Debug, Clone, Copy)]
struct Rec {
    /// Header and object bytes.
    len: u64,
    /// Locality key of a written file: file name extension and name (0 for the rest).
    key: u64,
    /// Whether it writes a file object (which may move ahead, see the module docs).
    file: bool,
    /// The BCJ filter for a written ELF file.
    filter: Filter,
}

/// The filter for an ELF file object's content (`object` starts with the file object's
/// header): by its `e_machine`, x86 for `EM_386` and `EM_X86_64`, ARM-Thumb for `EM_ARM` with
/// an odd entry point (Thumb code, as Cortex-M firmware and Debian's armhf are), ARM for other
/// `EM_ARM`, ARM64 for `EM_AARCH64`; none for anything else. Little-endian ELF only (the BCJ
/// filters are for little-endian code).
pub fn elf_filter(object: &[u8]) -> Filter {
    let Some(h) = object
        .get(..FILE_HEADER_LEN)
        .and_then(|b| FileHeader::parse(b).ok())
    else {
        return Filter::None;
    };
    let start = FILE_HEADER_LEN + usize::from(h.target_len) + usize::from(h.xattrs_len);
    let Some(elf) = object.get(start..start.saturating_add(28)) else {
        return Filter::None;
    };
    if elf[..4] != *b"\x7fELF" || elf[5] != 1 {
        return Filter::None;
    }
    let machine = u16::from_le_bytes([elf[18], elf[19]]);
    let entry = u32::from_le_bytes([elf[24], elf[25], elf[26], elf[27]]);
    match machine {
        3 | 62 => Filter::X86,
        40 if entry & 1 == 1 => Filter::ArmThumb,
        40 => Filter::Arm,
        183 => Filter::Arm64,
        _ => Filter::None,
    }
}

/// Bytes of a file object [`elf_filter`] may need to read: header, the longest symlink target
/// and xattr block, the ELF header's first 28 bytes.
const SNIFF_LEN: usize = FILE_HEADER_LEN + MAX_SYMLINK_TARGET + MAX_XATTR_BYTES + 28;

/// The locality key for a file named `name`: its extension's hash, then the name's first four
/// bytes.
fn name_key(name: &[u8]) -> u64 {
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => &name[dot..],
        _ => &b""[..],
    };
    // FNV-1a, 24 bits: enough to keep extensions apart.
    let mut h: u32 = 0x811c_9dc5;
    for &b in ext {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let mut prefix = [0u8; 4];
    for (d, s) in prefix.iter_mut().zip(name) {
        *d = *s;
    }
    (u64::from(h & 0xff_ffff) << 32) | u64::from(u32::from_be_bytes(prefix))
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
            part_size: None,
            locality: Locality::Tree,
            level: 6,
            format_version: None,
            codec: None,
            max_dictionary: u64::from(DEFAULT_MAX_DICTIONARY),
            spool: None,
            records: Vec::new(),
            next_key: 0,
            commit: None,
            after_commit: false,
            patches: false,
            deferred: None,
        }
    }

    /// Sets the target decoded size of a part (default: [`DEFAULT_PART_SIZE`] for deflate, the
    /// dictionary for xz with [`Locality::Name`], and with [`Locality::Tree`] parts of equal
    /// size, a [`XZ_PARTS`]th of the update or the dictionary if that is larger). Records
    /// are packed into a part up to this size; a larger one gets a part of its own. Raised
    /// automatically when the update would need more than [`MAX_PARTS`] parts.
    pub fn part_size(mut self, target_uncompressed_bytes: usize) -> Self {
        self.part_size = Some(target_uncompressed_bytes.max(1));
        self
    }

    /// Sets how xz parts are laid out (default [`Locality::Tree`]; deflate parts always keep
    /// the order given).
    pub fn locality(mut self, locality: Locality) -> Self {
        self.locality = locality;
        self
    }

    /// Sets the codec of the parts: [`Codec::Xz`] (the default for format version 3: LZMA2,
    /// with a BCJ filter for parts of executables) or [`Codec::Deflate`] (for devices built
    /// without xz; the default, and the only codec, for format versions 1 and 2). Parts that
    /// do not get smaller are stored either way. Any other value means deflate.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = Some(if codec == Codec::Xz {
            Codec::Xz
        } else {
            Codec::Deflate
        });
        self
    }

    /// The codec the parts get.
    fn effective_codec(&self) -> Codec {
        match (self.codec, self.format_version) {
            (Some(c), _) => c,
            (None, Some(v)) if v < FORMAT_VERSION => Codec::Deflate,
            (None, _) => Codec::Xz,
        }
    }

    /// Sets the largest dictionary a device must lend to install the file (default
    /// [`DEFAULT_MAX_DICTIONARY`]): the xz parts' LZMA2 dictionary is the largest valid size
    /// (2^n or 2^n + 2^(n-1)) no larger, and deflate's back-references reach at most the
    /// largest power of two no larger (at most 32 KiB). At least 4 KiB
    /// ([`WriteError::DictionaryTooSmall`] from [`UpdateWriter::finish`]).
    pub fn max_dictionary(mut self, bytes: u64) -> Self {
        self.max_dictionary = bytes;
        self
    }

    /// Names the next object written (its file name in the tree, for a file object), so that
    /// xz parts keep files of one kind together. Optional; a hint only.
    pub fn name_next(&mut self, name: &[u8]) {
        self.next_key = name_key(name);
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

    /// Sets the compression level: deflate's 0 (fastest) to 10 (smallest), or xz's preset 0 to
    /// 9 (10 means 9) with that preset's dictionary (256 KiB at 0, 1 MiB at 1, 8 MiB at 6,
    /// 64 MiB at 9) within [`UpdateWriter::max_dictionary`]; default 6.
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

    /// `commit_meta`: a commit's timestamp and security version; `filter`: a written file's.
    fn note_op(
        &mut self,
        kind: ObjectKind,
        id: ObjectId,
        record_len: u64,
        commit_meta: Option<(u64, u64)>,
        write_filter: Option<Filter>,
    ) {
        let key = core::mem::take(&mut self.next_key);
        let file = kind == ObjectKind::File && write_filter.is_some();
        self.records.push(Rec {
            len: record_len,
            key: if file { key } else { 0 },
            file,
            filter: if file {
                write_filter.unwrap_or(Filter::None)
            } else {
                Filter::None
            },
        });
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
        let filter = if kind == ObjectKind::File {
            elf_filter(bytes)
        } else {
            Filter::None
        };
        self.note_op(
            kind,
            id,
            (WRITE_HEADER_LEN as u64).saturating_add(len),
            commit_meta,
            Some(filter),
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
        let mut sniff: Vec<u8> = Vec::new();
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
                if kind == ObjectKind::File && sniff.len() < SNIFF_LEN {
                    let take = n.min(SNIFF_LEN - sniff.len());
                    sniff.extend_from_slice(&buf[..take]);
                }
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
            Some(elf_filter(&sniff)),
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
        // A patched file names nothing either: it may move ahead with the written files (its
        // bytes are a patch, not code: no filter).
        self.note_op(kind, id, record, None, Some(Filter::None));
        Ok(())
    }

    /// Adds a reuse of an object the device already has (for a dirtree: its whole tree).
    /// An error spooling it is reported by [`UpdateWriter::finish`].
    pub fn reuse_object(&mut self, kind: ObjectKind, id: ObjectId) {
        let mut rec = [0u8; REUSE_LEN];
        OpRepr::Reuse { kind, id }.emit(&mut rec);
        let r = self.spool().and_then(|s| s.write_all(&rec));
        match r {
            Ok(()) => self.note_op(kind, id, REUSE_LEN as u64, None, None),
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
        let needs_v3 = self.patches
            || self.effective_codec() == Codec::Xz
            || self.deflate_dictionary().ok() != Some(DEFLATE_DICTIONARY);
        match self.format_version {
            Some(v) => v,
            None if needs_v3 => FORMAT_VERSION,
            None => FORMAT_VERSION - 1,
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
        let old = v < FORMAT_VERSION
            && (self.effective_codec() == Codec::Xz
                || self.deflate_dictionary()? != DEFLATE_DICTIONARY);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&v) || (v == 1 && sv != 0) || old {
            return Err(WriteError::FormatVersion {
                version: v,
                security_version: sv,
            });
        }
        Ok(())
    }

    /// Deflate's window: the largest power of two within the dictionary, at most 32 KiB.
    fn deflate_dictionary(&self) -> Result<u32, WriteError> {
        let d = dictionary_at_most(self.max_dictionary)
            .ok_or(WriteError::DictionaryTooSmall(self.max_dictionary))?;
        Ok(1 << d.min(DEFLATE_DICTIONARY).ilog2())
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
        let spool = spool
            .into_inner()
            .map_err(|e| WriteError::Io(e.into_error()))?;
        let max_dictionary = dictionary_at_most(self.max_dictionary)
            .ok_or(WriteError::DictionaryTooSmall(self.max_dictionary))?;
        let deflate_dictionary = self.deflate_dictionary()?;
        let codec = self.effective_codec();
        let xz = codec == Codec::Xz;

        // Where each record starts in the spool, and the order they go into the file.
        let mut offsets = Vec::with_capacity(self.records.len());
        let mut at = 0u64;
        for r in &self.records {
            offsets.push(at);
            at += r.len;
        }
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        let by_name = xz && self.locality == Locality::Name;
        if by_name {
            let group = |f: Filter| match f {
                Filter::X86 => 0u8,
                Filter::Arm => 1,
                Filter::ArmThumb => 2,
                Filter::Arm64 => 3,
                _ => 4,
            };
            // Written files first (by filter, then name), the rest in their order: still
            // bottom-up, as files name nothing.
            order.sort_by_key(|&i| {
                let r = &self.records[i];
                if r.file {
                    (0u8, group(r.filter), r.key)
                } else {
                    (1, 0, 0)
                }
            });
        }
        let ordered: Vec<(u64, Filter)> = order
            .iter()
            .map(|&i| {
                let r = &self.records[i];
                (r.len, if xz { r.filter } else { Filter::None })
            })
            .collect();
        let plan = if xz && !by_name {
            match self.part_size {
                None => {
                    let total: u64 = ordered.iter().map(|r| r.0).sum();
                    let target = total
                        .div_ceil(XZ_PARTS)
                        .min(MAX_XZ_PART)
                        .max(u64::from(max_dictionary));
                    plan_even(&ordered, target)?
                }
                // Packed up to the size asked for, each part with the filter of most of its
                // code.
                Some(p) => {
                    let lens: Vec<(u64, Filter)> =
                        ordered.iter().map(|r| (r.0, Filter::None)).collect();
                    let mut next = 0usize;
                    let mut plan = plan_parts(&lens, p as u64)?;
                    for (count, filter) in &mut plan {
                        *filter = majority_filter(&ordered[next..next + *count]);
                        next += *count;
                    }
                    plan
                }
            }
        } else {
            let target = self.part_size.map_or(
                if xz {
                    max_dictionary as u64
                } else {
                    DEFAULT_PART_SIZE as u64
                },
                |p| p as u64,
            );
            plan_parts(&ordered, target)?
        };

        // The parts, each a list of spool ranges.
        let mut jobs = Vec::with_capacity(plan.len());
        let mut next = 0usize;
        for &(count, filter) in &plan {
            let ranges: Vec<(u64, u64)> = order[next..next + count]
                .iter()
                .map(|&i| (offsets[i], self.records[i].len))
                .collect();
            next += count;
            jobs.push(Job {
                ranges,
                filter,
                ops: count as u32,
            });
        }
        let settings = Settings {
            codec,
            level: self.level,
            max_dictionary,
            deflate_dictionary,
        };
        let done = compress_parts(&spool, &jobs, &settings)?;

        let mut parts: heapless::Vec<PartEntry, MAX_PARTS> = heapless::Vec::new();
        let mut dictionary = if xz {
            MIN_DICTIONARY
        } else {
            deflate_dictionary
        };
        for d in &done {
            if d.entry.codec == Codec::Xz {
                dictionary = dictionary.max(d.dictionary);
            }
            parts.push(d.entry).map_err(|_| WriteError::TooLarge)?;
        }
        if self.version() < FORMAT_VERSION {
            dictionary = DEFLATE_DICTIONARY;
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
            dictionary,
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
        let mut parts_len = 0u64;
        for d in done {
            let mut f = d.file;
            f.seek(SeekFrom::Start(0))?;
            parts_len += io::copy(&mut f, out)?;
        }
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
/// §6): bsdiff's suffix-array matching, written as one stream of controls, each followed by
/// its bytes to add to the source's and its bytes to copy. The bytes are those of the `bsdiff`
/// crate (Colin Percival's matcher over the same suffix array), but the suffix array comes
/// from `divsufsort` (several times faster than bsdiff's qsufsort, and 4 bytes of memory per
/// source byte instead of 16).
pub fn diff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut patch = Vec::new();
    let Ok(n) = i32::try_from(old.len()) else {
        // Past divsufsort's 2 GiB: bsdiff's own suffix sort (writing into a Vec cannot fail).
        let _ = bsdiff::diff(old, new, &mut patch);
        return patch;
    };
    // The suffix array of `old` with the empty suffix first, as qsufsort makes it (suffix
    // arrays are unique, so the matches and the patch are bsdiff's).
    let mut sa = vec![0i32; old.len() + 1];
    divsufsort::sort_in_place(old, &mut sa[1..]);
    sa[0] = n;
    bsdiff_matches(old, new, &sa, &mut patch);
    patch
}

/// How many leading bytes `a` and `b` share.
fn match_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The suffix of `old` (its start and the match length) sharing the longest prefix with
/// `new`, by binary search in the suffix array `sa` (bsdiff's `search`, without recursion).
fn longest_match(sa: &[i32], old: &[u8], new: &[u8]) -> (usize, usize) {
    let at = |i: usize| sa[i] as usize;
    let (mut lo, mut hi) = (0usize, sa.len() - 1);
    while hi - lo >= 2 {
        let mid = lo + (hi - lo) / 2;
        let left = &old[at(mid)..];
        let n = left.len().min(new.len());
        if left[..n] < new[..n] {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let x = match_len(&old[at(lo)..], new);
    let y = match_len(&old[at(hi)..], new);
    if x > y {
        (at(lo), x)
    } else {
        (at(hi), y)
    }
}

/// bsdiff's sign-and-magnitude 64-bit integer.
fn offt(x: i64) -> [u8; 8] {
    if x >= 0 {
        x.to_le_bytes()
    } else {
        (x.unsigned_abs() | (1 << 63)).to_le_bytes()
    }
}

/// Colin Percival's bsdiff matcher over the suffix array `sa` of `old` (with the empty suffix
/// first), writing controls and their bytes into `patch`.
fn bsdiff_matches(old: &[u8], new: &[u8], sa: &[i32], patch: &mut Vec<u8>) {
    let (oldlen, newlen) = (old.len() as i64, new.len());
    let (mut scan, mut len, mut pos) = (0usize, 0usize, 0usize);
    let (mut lastscan, mut lastpos, mut lastoffset) = (0usize, 0usize, 0i64);
    let old_eq = |i: usize, off: i64, b: u8| {
        let j = i as i64 + off;
        j >= 0 && j < oldlen && old[j as usize] == b
    };
    while scan < newlen {
        let mut oldscore = 0i64;
        scan += len;
        let mut scsc = scan;
        while scan < newlen {
            (pos, len) = longest_match(sa, old, &new[scan..]);
            while scsc < scan + len {
                if old_eq(scsc, lastoffset, new[scsc]) {
                    oldscore += 1;
                }
                scsc += 1;
            }
            if (len as i64 == oldscore && len != 0) || len as i64 > oldscore + 8 {
                break;
            }
            if old_eq(scan, lastoffset, new[scan]) {
                oldscore -= 1;
            }
            scan += 1;
        }
        if len as i64 == oldscore && scan != newlen {
            continue;
        }
        // Extend the previous match forwards...
        let (mut s, mut sf, mut lenf) = (0i64, 0i64, 0usize);
        let mut i = 0usize;
        while lastscan + i < scan && lastpos + i < old.len() {
            if old[lastpos + i] == new[lastscan + i] {
                s += 1;
            }
            i += 1;
            if s * 2 - i as i64 > sf * 2 - lenf as i64 {
                sf = s;
                lenf = i;
            }
        }
        // ...and this one backwards...
        let mut lenb = 0usize;
        if scan < newlen {
            let (mut s, mut sb) = (0i64, 0i64);
            let mut i = 1usize;
            while scan >= lastscan + i && pos >= i {
                if old[pos - i] == new[scan - i] {
                    s += 1;
                }
                if s * 2 - i as i64 > sb * 2 - lenb as i64 {
                    sb = s;
                    lenb = i;
                }
                i += 1;
            }
        }
        // ...and split where they overlap.
        if lastscan + lenf > scan - lenb {
            let overlap = lastscan + lenf - (scan - lenb);
            let (mut s, mut ss, mut lens) = (0i64, 0i64, 0usize);
            for i in 0..overlap {
                if new[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i] {
                    s += 1;
                }
                if new[scan - lenb + i] == old[pos - lenb + i] {
                    s -= 1;
                }
                if s > ss {
                    ss = s;
                    lens = i + 1;
                }
            }
            lenf = lenf + lens - overlap;
            lenb -= lens;
        }
        let copy = scan - lenb - (lastscan + lenf);
        patch.extend_from_slice(&offt(lenf as i64));
        patch.extend_from_slice(&offt(copy as i64));
        patch.extend_from_slice(&offt((pos - lenb) as i64 - (lastpos + lenf) as i64));
        patch.extend(
            new[lastscan..lastscan + lenf]
                .iter()
                .zip(&old[lastpos..lastpos + lenf])
                .map(|(n, o)| n.wrapping_sub(*o)),
        );
        patch.extend_from_slice(&new[lastscan + lenf..lastscan + lenf + copy]);
        lastscan = scan - lenb;
        lastpos = pos - lenb;
        lastoffset = pos as i64 - scan as i64;
    }
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

/// One part to compress: where its records are in the spool, in order.
struct Job {
    ranges: Vec<(u64, u64)>,
    filter: Filter,
    ops: u32,
}

/// How parts are compressed.
struct Settings {
    codec: Codec,
    level: u8,
    max_dictionary: u32,
    deflate_dictionary: u32,
}

/// A compressed part: its entry, its bytes (in a temporary file), and for xz the dictionary it
/// was compressed with.
struct Done {
    entry: PartEntry,
    file: File,
    dictionary: u32,
}

/// Compresses every part on every core (a worker per core takes the next part), in the file's
/// order.
fn compress_parts(
    spool: &File,
    jobs: &[Job],
    settings: &Settings,
) -> Result<Vec<Done>, WriteError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Done, WriteError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = compress_part(spool, job, settings);
                let failed = r.is_err();
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
                if failed {
                    // Let the other workers stop too.
                    next.store(jobs.len(), Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| WriteError::Io(io::Error::other("a compression worker panicked")))?;
    let mut done = Vec::with_capacity(jobs.len());
    for r in results {
        match r {
            Some(r) => done.push(r?),
            None => {
                return Err(WriteError::Io(io::Error::other(
                    "a part was not compressed",
                )))
            }
        }
    }
    Ok(done)
}

/// Reads a part's records from the spool in [`STEP`]-byte pieces.
fn for_each_piece(
    spool: &File,
    job: &Job,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; STEP];
    let mut total = 0u64;
    for &(offset, len) in &job.ranges {
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).unwrap_or(STEP).min(STEP);
            spool.read_exact_at(&mut buf[..n], offset + done)?;
            f(&buf[..n])?;
            done += n as u64;
        }
        total += len;
    }
    Ok(total)
}

/// A writer that hashes and counts what it passes on.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The dictionary of xz's presets 0 to 9 (`xz --help`): 256 KiB to 64 MiB.
const XZ_PRESET_DICTIONARY: [u32; 10] = [
    256 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    4 << 20,
    8 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
];

/// Compresses one part into a temporary file; stores it instead when that is not smaller.
fn compress_part(spool: &File, job: &Job, settings: &Settings) -> Result<Done, WriteError> {
    let uncompressed: u64 = job.ranges.iter().map(|r| r.1).sum();
    let uncompressed32 = u32::try_from(uncompressed).map_err(|_| WriteError::TooLarge)?;
    let mut out = Hashing {
        inner: BufWriter::with_capacity(STEP, tempfile::tempfile()?),
        hash: Sha256::new(),
        size: 0,
    };
    let mut dictionary = 0;
    if settings.codec == Codec::Xz {
        // A dictionary no larger than the part needs, than the level's (`xz -1` uses 1 MiB:
        // the encoder's memory is about ten times its dictionary), nor than allowed.
        dictionary = dictionary_at_most(uncompressed.next_power_of_two())
            .unwrap_or(MIN_DICTIONARY)
            .min(XZ_PRESET_DICTIONARY[usize::from(settings.level.min(9))])
            .min(settings.max_dictionary);
        xz_compress(spool, job, settings.level, job.filter, dictionary, &mut out)?;
    } else {
        deflate(spool, job, settings, &mut out)?;
    }
    let (codec, filter) = if out.size < uncompressed {
        (settings.codec, job.filter)
    } else {
        // Not worth it: store the records as they are.
        out = Hashing {
            inner: BufWriter::with_capacity(STEP, tempfile::tempfile()?),
            hash: Sha256::new(),
            size: 0,
        };
        for_each_piece(spool, job, |b| out.write_all(b))?;
        (Codec::Stored, Filter::None)
    };
    let filter = if codec == Codec::Xz {
        filter
    } else {
        Filter::None
    };
    let size = u32::try_from(out.size).map_err(|_| WriteError::TooLarge)?;
    let sha256 = out.hash.finalize().into();
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    Ok(Done {
        entry: PartEntry {
            codec,
            filter,
            size,
            uncompressed_size: uncompressed32,
            ops: job.ops,
            sha256,
        },
        file,
        dictionary,
    })
}

/// A raw LZMA2 stream (liblzma's raw encoder: the BCJ filter, then LZMA2 with `dictionary`,
/// xz's preset `level`) of the part's records.
fn xz_compress(
    spool: &File,
    job: &Job,
    level: u8,
    filter: Filter,
    dictionary: u32,
    out: &mut dyn Write,
) -> Result<(), WriteError> {
    use liblzma::stream::{Filters, LzmaOptions, Stream};
    let lzma = |e: liblzma::stream::Error| WriteError::Io(io::Error::other(e));
    let mut opts = LzmaOptions::new_preset(u32::from(level.min(9))).map_err(lzma)?;
    opts.dict_size(dictionary);
    let mut filters = Filters::new();
    match filter {
        Filter::X86 => {
            filters.x86();
        }
        Filter::Arm => {
            filters.arm();
        }
        Filter::ArmThumb => {
            filters.arm_thumb();
        }
        Filter::Arm64 => {
            filters.arm64();
        }
        Filter::None | Filter::Unknown(_) => {}
    }
    filters.lzma2(&opts);
    let stream = Stream::new_raw_encoder(&filters).map_err(lzma)?;
    let mut enc = liblzma::write::XzEncoder::new_stream(out, stream);
    for_each_piece(spool, job, |b| enc.write_all(b))?;
    enc.finish()?;
    Ok(())
}

/// `records` as an xz part holds them (a raw LZMA2 stream through `filter`, with an LZMA2
/// dictionary of `dictionary` bytes, xz's preset `level`): for tests and tools that build files
/// by hand.
pub fn xz_raw(records: &[u8], filter: Filter, dictionary: u32, level: u8) -> io::Result<Vec<u8>> {
    let mut spool = tempfile::tempfile()?;
    spool.write_all(records)?;
    let job = Job {
        ranges: vec![(0, records.len() as u64)],
        filter,
        ops: 0,
    };
    let mut out = Vec::new();
    xz_compress(&spool, &job, level, filter, dictionary, &mut out).map_err(|e| match e {
        WriteError::Io(e) => e,
        e => io::Error::other(e.to_string()),
    })?;
    Ok(out)
}

/// One raw deflate stream of the part's records; below a 32 KiB dictionary, a full flush every
/// `deflate_dictionary` bytes keeps back-references within it.
fn deflate(
    spool: &File,
    job: &Job,
    settings: &Settings,
    out: &mut dyn Write,
) -> Result<(), WriteError> {
    let mut compressor = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
        i32::from(settings.level),
        -15,
        0,
    )));
    let reset_every = if settings.deflate_dictionary < DEFLATE_DICTIONARY {
        settings.deflate_dictionary as u64
    } else {
        u64::MAX
    };
    let total: u64 = job.ranges.iter().map(|r| r.1).sum();
    let mut deflated = vec![0u8; STEP];
    let mut fed = 0u64;
    let mut since_reset = 0u64;
    let mut run = |input: &[u8], flush: TDEFLFlush| -> io::Result<()> {
        let mut input = input;
        loop {
            let (status, used, written) = compress(&mut compressor, input, &mut deflated, flush);
            input = &input[used..];
            out.write_all(&deflated[..written])?;
            match status {
                TDEFLStatus::Done => return Ok(()),
                TDEFLStatus::Okay if input.is_empty() && flush == TDEFLFlush::None => return Ok(()),
                // A flush is complete when it wrote less than the buffer.
                TDEFLStatus::Okay
                    if input.is_empty()
                        && flush == TDEFLFlush::Full
                        && written < deflated.len() =>
                {
                    return Ok(())
                }
                TDEFLStatus::Okay => {}
                _ => return Err(io::Error::other("deflate failed")),
            }
        }
    };
    for_each_piece(spool, job, |mut b| {
        while !b.is_empty() {
            let n = (b.len() as u64).min(reset_every - since_reset) as usize;
            fed += n as u64;
            since_reset += n as u64;
            let flush = if fed == total {
                TDEFLFlush::Finish
            } else if since_reset == reset_every {
                since_reset = 0;
                TDEFLFlush::Full
            } else {
                TDEFLFlush::None
            };
            run(&b[..n], flush)?;
            b = &b[n..];
        }
        Ok(())
    })?;
    if total == 0 {
        run(&[], TDEFLFlush::Finish)?;
    }
    Ok(())
}

/// Splits records (by length and filter) into parts of at most `target` decoded bytes each (a
/// larger record alone), a new part wherever the filter changes, doubling `target` until at
/// most [`MAX_PARTS`] parts are needed. Returns each part's record count and filter.
fn plan_parts(
    records: &[(u64, Filter)],
    mut target: u64,
) -> Result<Vec<(usize, Filter)>, WriteError> {
    loop {
        let mut plan = Vec::new();
        let mut count = 0usize;
        let mut size = 0u64;
        let mut filter = Filter::None;
        for &(len, f) in records {
            if count > 0 && (size.saturating_add(len) > target || len > target || f != filter) {
                plan.push((count, filter));
                count = 0;
                size = 0;
            }
            if count == 0 {
                filter = f;
            }
            count += 1;
            size = size.saturating_add(len);
            if size > u64::from(u32::MAX) {
                return Err(WriteError::TooLarge);
            }
        }
        if count > 0 {
            plan.push((count, filter));
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

/// The filter for a part of `records` (length and filter each): the one most of its bytes
/// of ELF code are for, none without any.
fn majority_filter(records: &[(u64, Filter)]) -> Filter {
    let mut bytes = [0u64; 4];
    let filters = [Filter::X86, Filter::Arm, Filter::ArmThumb, Filter::Arm64];
    for &(len, f) in records {
        if let Some(i) = filters.iter().position(|&g| g == f) {
            bytes[i] = bytes[i].saturating_add(len);
        }
    }
    let mut best = (0u64, Filter::None);
    for (i, &b) in bytes.iter().enumerate() {
        if b > best.0 {
            best = (b, filters[i]);
        }
    }
    best.1
}

/// Splits records (by length and filter), in their order, into parts of equal decoded size
/// about `target` bytes each: as many as `target` makes (at most [`MAX_PARTS`]), each ending
/// at the record that crosses its share of the total; each part's filter is that of most of
/// its ELF bytes ([`majority_filter`]). A part larger than `u32::MAX` bytes makes more parts,
/// or [`WriteError::TooLarge`] at [`MAX_PARTS`]. Returns each part's record count and filter.
fn plan_even(records: &[(u64, Filter)], target: u64) -> Result<Vec<(usize, Filter)>, WriteError> {
    let total: u128 = records.iter().map(|r| u128::from(r.0)).sum();
    let mut n = total
        .div_ceil(u128::from(target.max(1)))
        .clamp(1, MAX_PARTS as u128);
    loop {
        let mut plan = Vec::new();
        let mut fits = true;
        let (mut start, mut size, mut done) = (0usize, 0u128, 0u128);
        // The boundary the current part ends at: the k-th n-th of the total.
        let mut k = 1u128;
        for (i, &(len, _)) in records.iter().enumerate() {
            size += u128::from(len);
            done += u128::from(len);
            if i + 1 < records.len() && done * n >= k * total && k < n {
                fits &= size <= u128::from(u32::MAX);
                plan.push((i + 1 - start, majority_filter(&records[start..=i])));
                start = i + 1;
                size = 0;
                k = done * n / total.max(1) + 1;
            }
        }
        if start < records.len() {
            fits &= size <= u128::from(u32::MAX);
            plan.push((records.len() - start, majority_filter(&records[start..])));
        }
        if fits {
            return Ok(plan);
        }
        if n >= MAX_PARTS as u128 {
            return Err(WriteError::TooLarge);
        }
        n = (n * 2).min(MAX_PARTS as u128);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn plain(lens: &[u64]) -> Vec<(u64, Filter)> {
        lens.iter().map(|&l| (l, Filter::None)).collect()
    }

    fn counts(plan: Vec<(usize, Filter)>) -> Vec<usize> {
        plan.into_iter().map(|p| p.0).collect()
    }

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

    /// Pseudo-random bytes with repeats, as code and data are.
    fn lumpy(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out: Vec<u8> = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if out.len() > 64 && x.is_multiple_of(3) {
                let from = (x >> 8) as usize % (out.len() - 32);
                let n = 4 + (x >> 40) as usize % 28;
                for i in 0..n {
                    out.push(out[from + i]);
                }
            } else {
                out.push((x >> 24) as u8 & 0x3f);
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn diff_writes_the_bytes_of_the_bsdiff_crate() {
        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![], vec![]),
            (vec![], b"new".to_vec()),
            (b"old".to_vec(), vec![]),
            (b"a".to_vec(), b"a".to_vec()),
            (b"ab".to_vec(), b"ba".to_vec()),
            (vec![7; 1000], vec![7; 1500]),
            (b"hello world\n".to_vec(), b"hello, world!\n".to_vec()),
        ];
        for seed in 1..6u64 {
            let old = lumpy(seed, 20_000 + seed as usize * 3_000);
            let mut new = old.clone();
            new[1_000..1_040].fill(seed as u8);
            new.splice(5_000..5_000, lumpy(seed + 100, 700));
            new.drain(12_000..12_500);
            cases.push((old.clone(), new));
            cases.push((old, lumpy(seed + 50, 9_000)));
        }
        for (old, new) in &cases {
            let mut want = Vec::new();
            bsdiff::diff(old, new, &mut want).unwrap();
            let p = diff(old, new);
            assert_eq!(p, want, "old {} new {}", old.len(), new.len());
            assert_eq!(apply_patch(old, &p).unwrap(), *new);
        }
    }

    #[test]
    fn plan_groups_small_and_isolates_large() {
        assert_eq!(
            counts(plan_parts(&plain(&[10, 10, 10]), 100).unwrap()),
            vec![3]
        );
        assert_eq!(
            counts(plan_parts(&plain(&[60, 60, 60]), 100).unwrap()),
            vec![1, 1, 1]
        );
        assert_eq!(
            counts(plan_parts(&plain(&[10, 500, 10, 10]), 100).unwrap()),
            vec![1, 1, 2]
        );
        // 200 records of 10 bytes with a 10-byte target would need 200 parts: the target grows.
        let many = plain(&[10u64; 200]);
        let plan = plan_parts(&many, 10).unwrap();
        assert!(plan.len() <= MAX_PARTS);
        assert_eq!(plan.iter().map(|p| p.0).sum::<usize>(), 200);
    }

    #[test]
    fn even_plan_splits_into_equal_parts_in_order() {
        let counts = |p: Vec<(usize, Filter)>| p.into_iter().map(|p| p.0).collect::<Vec<_>>();
        // 12 records of 10 bytes, target 40: three parts of four.
        assert_eq!(
            counts(plan_even(&plain(&[10; 12]), 40).unwrap()),
            vec![4, 4, 4]
        );
        // Target 50 makes three parts too (120 / 50, rounded up), of equal size.
        assert_eq!(
            counts(plan_even(&plain(&[10; 12]), 50).unwrap()),
            vec![4, 4, 4]
        );
        // A large record crossing several boundaries ends one part; the rest share the others.
        assert_eq!(
            counts(plan_even(&plain(&[10, 500, 10, 10, 10, 10]), 100).unwrap()),
            vec![2, 4]
        );
        // One part when everything fits; nothing for nothing.
        assert_eq!(counts(plan_even(&plain(&[10; 3]), 100).unwrap()), vec![3]);
        assert!(plan_even(&[], 100).unwrap().is_empty());
        // Never more than MAX_PARTS.
        let many = plan_even(&plain(&[10u64; 200]), 1).unwrap();
        assert_eq!(many.len(), MAX_PARTS);
        assert_eq!(many.iter().map(|p| p.0).sum::<usize>(), 200);
        // A part over 4 GiB splits further: one part is too large, two are (three records of
        // half of it each), four fit.
        let huge = plan_even(&plain(&[u64::from(u32::MAX) / 2; 6]), u64::MAX).unwrap();
        assert_eq!(counts(huge), vec![2, 1, 2, 1]);
    }

    #[test]
    fn a_part_gets_the_filter_of_most_of_its_code() {
        let recs = [
            (10, Filter::Arm64),
            (30, Filter::X86),
            (50, Filter::None),
            (25, Filter::Arm64),
        ];
        assert_eq!(majority_filter(&recs), Filter::Arm64);
        assert_eq!(majority_filter(&recs[1..3]), Filter::X86);
        assert_eq!(majority_filter(&recs[2..3]), Filter::None);
        // Two parts (115 bytes, target 60): the first ends at the record crossing 57.5 bytes.
        assert_eq!(
            plan_even(&recs, 60).unwrap(),
            vec![(3, Filter::X86), (1, Filter::Arm64)]
        );
    }

    #[test]
    fn plan_splits_where_the_filter_changes() {
        let recs = [
            (10, Filter::X86),
            (10, Filter::X86),
            (10, Filter::Arm64),
            (10, Filter::None),
            (10, Filter::None),
        ];
        assert_eq!(
            plan_parts(&recs, 100).unwrap(),
            vec![(2, Filter::X86), (1, Filter::Arm64), (2, Filter::None)]
        );
    }

    fn file_with(content: &[u8], target: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; FILE_HEADER_LEN];
        FileHeader {
            mode: if target.is_empty() {
                0o100755
            } else {
                0o120777
            },
            uid: 0,
            gid: 0,
            size: if target.is_empty() {
                content.len() as u64
            } else {
                0
            },
            target_len: target.len() as u16,
            xattrs_len: 0,
        }
        .emit(&mut b);
        b.extend_from_slice(target);
        if target.is_empty() {
            b.extend_from_slice(content);
        }
        b
    }

    fn elf(machine: u16, entry: u32, data: u8) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = data;
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[24..28].copy_from_slice(&entry.to_le_bytes());
        e
    }

    #[test]
    fn elf_machines_choose_their_filter() {
        for (machine, entry, want) in [
            (62, 0x1000, Filter::X86),
            (3, 0x1000, Filter::X86),
            (183, 0x1000, Filter::Arm64),
            (40, 0x1001, Filter::ArmThumb),
            (40, 0x1000, Filter::Arm),
            (243, 0x1000, Filter::None), // RISC-V: no filter chosen
        ] {
            assert_eq!(
                elf_filter(&file_with(&elf(machine, entry, 1), b"")),
                want,
                "{machine}"
            );
        }
        // Big-endian, not ELF, a symlink, too short.
        assert_eq!(elf_filter(&file_with(&elf(62, 0, 2), b"")), Filter::None);
        assert_eq!(elf_filter(&file_with(b"#!/bin/sh\n", b"")), Filter::None);
        assert_eq!(elf_filter(&file_with(b"", b"libc.so.6")), Filter::None);
        assert_eq!(
            elf_filter(&file_with(&elf(62, 0, 1)[..20], b"")),
            Filter::None
        );
        assert_eq!(elf_filter(&[1, 2, 3]), Filter::None);
    }

    #[test]
    fn names_group_by_extension_then_name() {
        assert_eq!(name_key(b"a.so") >> 32, name_key(b"zz.so") >> 32);
        assert_ne!(name_key(b"a.so") >> 32, name_key(b"a.py") >> 32);
        assert!(name_key(b"libc.so") < name_key(b"libm.so"));
        assert_eq!(name_key(b".bashrc") >> 32, name_key(b"README") >> 32);
    }
}
