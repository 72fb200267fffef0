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
//! the part size gets a part of its own. When a file would need more than [`MAX_PARTS`](crate::wire::MAX_PARTS) parts,
//! the part size is doubled until it does not. A part that does not get smaller by
//! compressing is stored as it is.
//!
//! Locality (xz, [`UpdateWriter::locality`]): by default ([`Locality::Tree`]) the records keep
//! the order they were given in (the generator's: each directory's files, by size, then the
//! directory, bottom-up, as a tar of the tree has them), and the file is split into [`XZ_PARTS`] parts of
//! equal size once each would hold at least a dictionary's worth, else into two (one below
//! twice [`MIN_XZ_SPLIT_PART`]; more parts past 1 GiB each), each through the BCJ
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

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use sha2::{Digest, Sha256};

use crate::install::Deflaters;
use crate::object::{Commit, FileHeader, ObjectId, ObjectKind, FILE_HEADER_LEN, MAX_COMMIT_LEN};
use crate::wire::{
    Codec, Filter, OpRepr, PATCH_HEADER_LEN, REDEFLATE_FORMAT_VERSION, REDEFLATE_HEADER_LEN,
    REUSE_ENTRIES_HEADER_LEN, REUSE_LEN, WRITE_HEADER_LEN,
};

mod compress;
mod error;
mod finish;
mod parts;
mod patch;
mod redeflate;

pub use compress::xz_raw;
pub use error::WriteError;
pub use parts::elf_filter;
pub use patch::{apply_patch, diff, patch_len, patch_pays};

use parts::{name_key, SNIFF_LEN};

/// Default target for the decoded size of a deflate part: 512 KiB. (An xz part's default is
/// the dictionary.)
pub const DEFAULT_PART_SIZE: usize = 512 * 1024;

/// Default [`UpdateWriter::max_dictionary`]: 8 MiB, what `xz -6` uses and what the Linux agent
/// lends (`ecu-agent apply` stays within 16 MiB of memory with it).
pub const DEFAULT_MAX_DICTIONARY: u32 = 8 << 20;

/// How many parts of equal size [`Locality::Tree`] splits an xz update into once each holds at
/// least the dictionary's size (a smaller update is two parts, [`MIN_XZ_SPLIT_PART`]): few,
/// since each part starts with an empty
/// dictionary (on the default corpus 2 parts instead of 17 saved 1.1%), but enough to keep
/// the cores of the generating host and of a device that decodes parts in parallel busy.
pub const XZ_PARTS: u64 = 4;

/// The largest decoded size [`Locality::Tree`] aims at for one xz part: 1 GiB.
const MAX_XZ_PART: u64 = 1 << 30;

/// An xz update of at least twice this many decoded bytes (256 KiB) is split into at least
/// two parts of equal size with [`Locality::Tree`], one per core of the generating host,
/// even when the dictionary would hold it all. The second part starts without the first
/// one's bytes in its dictionary: on the default corpus's delta V2→V3 (875,782 bytes of
/// records) that cost 348 bytes (0.21%), and xz's time on the critical path went from about
/// 110 ms to 85 ms. Below it an update stays one part: splitting would save little time and
/// cost a larger share of bytes.
pub const MIN_XZ_SPLIT_PART: u64 = 256 * 1024;

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

/// Which gzip files the writer carries inflated, in redeflate records (`docs/FORMAT.md` §6;
/// [`UpdateWriter::redeflate_mode`]). The device deflates their text again: about 0.15 s of
/// CPU for the 7.4 MB of text of the 1,108 small manuals zlib rebuilds in the benchmark's
/// Debian tree, about 1.2 s for the 25.5 MB of its 181 large manuals and changelogs that only
/// GNU gzip's deflate rebuilds (level 9's long hash chains on large text), and the writer
/// compresses the text with xz, several times the bytes of the gzip files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedeflateMode {
    /// None: every file as it is (for a device without a deflate encoder).
    Off,
    /// Those whose stream zlib's deflate rebuilds (from `gzip -9`, the files under about 64
    /// KiB of text): the default.
    #[default]
    Zlib,
    /// Those zlib's or GNU gzip's deflate rebuilds ([`DeflateParams::gzip`](crate::wire::DeflateParams::gzip)):
    /// on the benchmark's corpus 3.2% fewer bytes for the delta V1→V3 and 5.6% for the file
    /// from scratch, for 0.5 s and 12 s more to generate them and about 0.1 s and 1.2 s more
    /// CPU to install them. `gzip -9` is tried first, so that a tree whose gzip files GNU gzip
    /// wrote needs only its encoder on the device.
    All,
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
    /// File objects carried in redeflate records ([`UpdateWriter::redeflate`]).
    pub redeflated: u32,
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
    /// Reuse-entries records were added.
    reuse_entries: bool,
    /// The encoders that check redeflate records ([`UpdateWriter::redeflate_mode`]), from the
    /// first gzip file.
    redeflate: Option<Deflaters>,
    /// Which gzip files become redeflate records.
    redeflate_mode: RedeflateMode,
    /// Redeflate records added.
    redeflated: u32,
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

/// Exactly `len` bytes of `reader`, or `UnexpectedEof`.
fn read_whole(reader: &mut dyn Read, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(STEP * 1024));
    reader.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "object shorter than declared",
        ));
    }
    Ok(bytes)
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
            reuse_entries: false,
            redeflate: None,
            redeflate_mode: RedeflateMode::Zlib,
            redeflated: 0,
            deferred: None,
        }
    }

    /// Whether gzip files are carried inflated in redeflate records (`docs/FORMAT.md` §6) when
    /// a deflate encoder rebuilds their stream byte for byte: [`RedeflateMode::Zlib`] when on
    /// (the default), [`RedeflateMode::Off`] when off.
    pub fn redeflate(self, on: bool) -> Self {
        self.redeflate_mode(if on {
            RedeflateMode::Zlib
        } else {
            RedeflateMode::Off
        })
    }

    /// Which gzip files are carried inflated in redeflate records (default
    /// [`RedeflateMode::Zlib`]). Only with xz parts and format version 4 or later (the default
    /// version then); the device needs a deflate encoder (`Installer::with_redeflate`; the
    /// Linux agent lends [`Deflaters`]: zlib's and GNU gzip's). [`RedeflateMode::Off`] for a
    /// device without one: a firmware installer built without the `redeflate` feature.
    pub fn redeflate_mode(mut self, mode: RedeflateMode) -> Self {
        self.redeflate_mode = mode;
        self
    }

    /// Whether the next file object may become a redeflate record.
    fn redeflating(&self) -> bool {
        self.redeflate_mode != RedeflateMode::Off
            && self
                .format_version
                .is_none_or(|v| v >= REDEFLATE_FORMAT_VERSION)
            && self.effective_codec() == Codec::Xz
    }

    /// Sets the target decoded size of a part (default: [`DEFAULT_PART_SIZE`] for deflate, the
    /// dictionary for xz with [`Locality::Name`], and with [`Locality::Tree`] parts of equal
    /// size: a [`XZ_PARTS`]th of the update when that is at least the dictionary, else half
    /// of it from twice [`MIN_XZ_SPLIT_PART`], else all of it). Records
    /// are packed into a part up to this size; a larger one gets a part of its own. Raised
    /// automatically when the update would need more than [`MAX_PARTS`](crate::wire::MAX_PARTS) parts.
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

    /// Sets the format version written (default: the lowest that carries the update, 4 when
    /// it has redeflate records, 3 when it has patch records or xz parts, else 2). Version 1
    /// is for devices whose agent predates security versions (and for tests); it cannot carry
    /// a commit whose security version is not 0
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

    /// Appends one record, in `pieces`, to the spool. A failure part way leaves part of a
    /// record there: it is kept, so that nothing written after it is trusted.
    fn spool_record(&mut self, pieces: &[&[u8]]) -> io::Result<()> {
        let spool = self.spool()?;
        let r = pieces.iter().try_for_each(|p| spool.write_all(p));
        if let Err(e) = &r {
            self.deferred = Some(io::Error::new(e.kind(), e.to_string()));
        }
        r
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
        if kind == ObjectKind::File && self.redeflating() {
            let gzip = self.redeflate_mode == RedeflateMode::All;
            let z = self.redeflate.get_or_insert_with(Deflaters::new);
            let split = redeflate::split(z, bytes, gzip);
            if let Some(split) = split {
                return self.write_redeflate(id, bytes, split);
            }
        }
        let mut header = [0u8; WRITE_HEADER_LEN];
        OpRepr::Write { kind, id, len }.emit(&mut header);
        self.spool_record(&[&header, bytes])?;
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
    /// a commit, which is small, and with redeflate records on, a file object up to 64 MiB
    /// whose content starts as a gzip member). The bytes must hash to `id` (checked). After
    /// an error of the streaming path the writer is unusable: [`UpdateWriter::finish`] fails.
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
            let bytes = read_whole(reader, len)?;
            return self.write_object(kind, id, &bytes);
        }
        if let ObjectKind::Unknown(_) = kind {
            return Err(invalid("unknown object kind"));
        }
        check_len(len)?;
        if kind == ObjectKind::File && self.redeflating() && len <= redeflate::MAX_PLAIN as u64 {
            // The object's metadata and the first bytes of its content: a gzip member is held
            // whole (at most 64 MiB) to be split for a redeflate record, anything else streams.
            let mut peek = Vec::new();
            reader.take(FILE_HEADER_LEN as u64).read_to_end(&mut peek)?;
            let want = FileHeader::parse(&peek)
                .map_or(0, |h| h.meta_len().saturating_add(3))
                .min(len);
            let more = want.saturating_sub(peek.len() as u64);
            reader.take(more).read_to_end(&mut peek)?;
            let gzip =
                peek.len() as u64 == want && want > 3 && peek.ends_with(redeflate::GZIP_MAGIC);
            let mut rest = io::Cursor::new(peek).chain(reader);
            if !gzip {
                return self.stream_object(kind, id, len, &mut rest);
            }
            let bytes = read_whole(&mut rest, len)?;
            return self.write_object(kind, id, &bytes);
        }
        self.stream_object(kind, id, len, reader)
    }

    /// [`UpdateWriter::write_object_from`]'s streaming path: the record straight to the spool.
    fn stream_object(
        &mut self,
        kind: ObjectKind,
        id: ObjectId,
        len: u64,
        reader: &mut dyn Read,
    ) -> io::Result<()> {
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
        self.spool_record(&[&header, patch])?;
        self.patches = true;
        // A patched file names nothing either: it may move ahead with the written files (its
        // bytes are a patch, not code: no filter).
        self.note_op(kind, id, record, None, Some(Filter::None));
        Ok(())
    }

    /// Spools the redeflate record of file object `bytes` (checked to hash to `id`), split as
    /// `split` says.
    fn write_redeflate(
        &mut self,
        id: ObjectId,
        bytes: &[u8],
        split: redeflate::Split,
    ) -> io::Result<()> {
        let (head, tail) = (split.head, split.tail);
        let (Ok(head32), Ok(tail32)) = (u32::try_from(head), u32::try_from(tail)) else {
            return Err(invalid("gzip header or trailer over 4 GiB"));
        };
        let record = (REDEFLATE_HEADER_LEN + head + split.plain.len() + tail) as u64;
        check_len(record)?;
        let mut header = [0u8; REDEFLATE_HEADER_LEN];
        OpRepr::Redeflate {
            kind: ObjectKind::File,
            id,
            len: bytes.len() as u64,
            head: head32,
            plain: split.plain.len() as u64,
            tail: tail32,
            params: split.params,
        }
        .emit(&mut header);
        self.spool_record(&[
            &header,
            &bytes[..head],
            &split.plain,
            &bytes[bytes.len() - tail..],
        ])?;
        self.redeflated += 1;
        // Its plaintext is text, not code: no filter.
        self.note_op(ObjectKind::File, id, record, None, Some(Filter::None));
        Ok(())
    }

    /// Adds a reuse of the objects that chosen references of dirtree `source` (which the
    /// device holds: a dirtree of the delta's source commit) name: `bitmap` has one bit for
    /// each reference in entry order (a file entry's file, a directory entry's dirtree and
    /// then its dirmeta), the lowest bit of each byte first, and is exactly as long as they
    /// need (`docs/FORMAT.md` §6). Each set bit stands for a [`UpdateWriter::reuse_object`]
    /// of that object, in one record of a few bytes instead of 34 for each. Needs format
    /// version 5 ([`WriteError::ReuseEntriesNeedsV5`]); the bitmap is not checked against
    /// the dirtree here (the device checks it).
    pub fn reuse_entries(&mut self, source: ObjectId, bitmap: &[u8]) -> io::Result<()> {
        let mut header = [0u8; REUSE_ENTRIES_HEADER_LEN];
        let len = bitmap.len() as u64;
        OpRepr::ReuseEntries { source, len }.emit(&mut header);
        self.spool_record(&[&header, bitmap])?;
        self.reuse_entries = true;
        self.note_op(
            ObjectKind::DirTree,
            source,
            (REUSE_ENTRIES_HEADER_LEN as u64).saturating_add(len),
            None,
            None,
        );
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
}
