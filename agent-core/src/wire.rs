//! The `.update` file format: header, superblock, signature and operation records.
//!
//! ```text
//! +--------------------+  16 bytes, fixed: magic, format version, flags, superblock length
//! | header             |
//! +--------------------+
//! | superblock         |  postcard: ref, source and target commit, target metadata, parts
//! +--------------------+
//! | signature          |  1 byte algorithm (0 none, 1 ed25519) + 64 bytes for ed25519,
//! +--------------------+  over header || superblock
//! | part 0             |  each part: its codec's stream (raw deflate) of operation records
//! | part 1 ...         |  sizes and SHA-256 of each part are in the superblock
//! +--------------------+
//! ```
//!
//! The complete specification is `docs/FORMAT.md`. Views follow smoltcp's `wire` contract:
//! after [`Header::check_len`] no accessor panics, and `emit` never panics on a buffer of
//! `buffer_len()` bytes.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::object::{ObjectId, ObjectKind, ID_LEN, MAX_SUBJECT_LEN, MAX_VERSION_LEN};

/// The first eight bytes of every `.update` file.
pub const MAGIC: [u8; 8] = *b"ECUPDATE";
/// The format version this crate writes: 3, which adds patch records (`docs/FORMAT.md` §6),
/// xz parts with a filter byte in each part entry, and the dictionary size at the end of the
/// superblock (after the security version).
pub const FORMAT_VERSION: u16 = 3;
/// code is unknown ([`FormatError::UnknownOp`]).
pub const PATCH_FORMAT_VERSION: u16 = 3;
/// The oldest format version this crate reads: 1 (no security version; such a file counts as
/// security version 0).
pub const MIN_FORMAT_VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Largest superblock accepted: 32 KiB less the header. The installer buffers the header and
/// the superblock (the signed message) in the window its caller lends, so this bound costs no
/// memory of its own (a device that lends less refuses a longer superblock).
pub const MAX_SUPERBLOCK_LEN: usize = 32 * 1024 - HEADER_LEN;
/// Most parts in one file. Each costs the installer [`PartEntry`]'s size in RAM.
pub const MAX_PARTS: usize = 64;
/// Longest ref name, in bytes.
pub const MAX_REF_LEN: usize = 255;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const MAGIC: Field = 0..8;
    pub const VERSION: Field = 8..10;
    pub const FLAGS: Field = 10..12;
    pub const SUPERBLOCK_LEN: Field = 12..16;
}

/// A view of the fixed 16-byte header.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps a buffer after [`Header::check_len`].
    pub fn new_checked(buffer: T) -> Result<Header<T>, FormatError> {
        let h = Header::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Fails when the buffer is shorter than [`HEADER_LEN`].
    pub fn check_len(&self) -> Result<(), FormatError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(FormatError::Truncated {
                needed: HEADER_LEN,
                have: len,
            })
        } else {
            Ok(())
        }
    }

    /// The magic bytes.
    pub fn magic(&self) -> [u8; 8] {
        let mut m = [0u8; 8];
        m.copy_from_slice(&self.buffer.as_ref()[field::MAGIC]);
        m
    }

    /// The format version.
    pub fn version(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::VERSION];
        u16::from_le_bytes([b[0], b[1]])
    }

    /// The flags (all zero in versions 1 and 2).
    pub fn flags(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS];
        u16::from_le_bytes([b[0], b[1]])
    }

    /// The superblock's length in bytes.
    pub fn superblock_len(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SUPERBLOCK_LEN];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the magic bytes.
    pub fn set_magic(&mut self, m: [u8; 8]) {
        self.buffer.as_mut()[field::MAGIC].copy_from_slice(&m);
    }
    /// Sets the format version.
    pub fn set_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::VERSION].copy_from_slice(&v.to_le_bytes());
    }
    /// Sets the flags.
    pub fn set_flags(&mut self, v: u16) {
        self.buffer.as_mut()[field::FLAGS].copy_from_slice(&v.to_le_bytes());
    }
    /// Sets the superblock length.
    pub fn set_superblock_len(&mut self, v: u32) {
        self.buffer.as_mut()[field::SUPERBLOCK_LEN].copy_from_slice(&v.to_le_bytes());
    }
}

/// The meaningful, validated content of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HeaderRepr {
    /// The format version, [`MIN_FORMAT_VERSION`]..=[`FORMAT_VERSION`]: it says how the
    /// superblock is encoded.
    pub version: u16,
    /// Length of the superblock that follows, at most [`MAX_SUPERBLOCK_LEN`].
    pub superblock_len: u32,
}

impl HeaderRepr {
    /// Validates a header: magic, version, flags and the superblock bound.
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> Result<HeaderRepr, FormatError> {
        h.check_len()?;
        if h.magic() != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = h.version();
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if h.flags() != 0 {
            return Err(FormatError::UnknownFlags(h.flags()));
        }
        let len = h.superblock_len();
        if len == 0 || len as usize > MAX_SUPERBLOCK_LEN {
            return Err(FormatError::SuperblockLength(len));
        }
        Ok(HeaderRepr {
            version,
            superblock_len: len,
        })
    }

    /// Bytes of the header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut Header<T>) {
        h.set_magic(MAGIC);
        h.set_version(self.version);
        h.set_flags(0);
        h.set_superblock_len(self.superblock_len);
    }
}

/// How a part's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[serde(from = "u8", into = "u8")]
pub enum Codec {
    /// The operation records as they are.
    Stored,
    /// Raw deflate (RFC 1951, no zlib or gzip wrapper).
    Deflate,
    /// A raw LZMA2 stream (format version 3 on), through the part's [`Filter`], with the
    /// superblock's dictionary size ([`Superblock::dictionary`]).
    Xz,
    /// A code this version does not know.
    Unknown(u8),
}

impl From<u8> for Codec {
    fn from(c: u8) -> Codec {
        match c {
            0 => Codec::Stored,
            1 => Codec::Deflate,
            2 => Codec::Xz,
            c => Codec::Unknown(c),
        }
    }
}

impl From<Codec> for u8 {
    fn from(c: Codec) -> u8 {
        match c {
            Codec::Stored => 0,
            Codec::Deflate => 1,
            Codec::Xz => 2,
            Codec::Unknown(c) => c,
        }
    }
}

/// The branch/call/jump filter (BCJ) an [`Codec::Xz`] part's records went through before
/// LZMA2: it turns relative branch targets of one instruction set into absolute ones, so that
/// machine code compresses better. Format version 3 on; other codecs have [`Filter::None`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[serde(from = "u8", into = "u8")]
pub enum Filter {
    /// No filter.
    None,
    /// x86 and x86-64 (xz's filter 0x04).
    X86,
    /// 32-bit ARM (xz's filter 0x07).
    Arm,
    /// ARM Thumb and Thumb-2 (xz's filter 0x08).
    ArmThumb,
    /// 64-bit ARM (xz's filter 0x0A).
    Arm64,
    /// A code this version does not know.
    Unknown(u8),
}

impl Filter {
    /// The xz filter id of a BCJ filter (`None` for no filter or an unknown one).
    pub const fn xz_id(self) -> Option<u8> {
        match self {
            Filter::X86 => Some(0x04),
            Filter::Arm => Some(0x07),
            Filter::ArmThumb => Some(0x08),
            Filter::Arm64 => Some(0x0a),
            Filter::None | Filter::Unknown(_) => None,
        }
    }
}

impl From<u8> for Filter {
    fn from(c: u8) -> Filter {
        match c {
            0 => Filter::None,
            1 => Filter::X86,
            2 => Filter::Arm,
            3 => Filter::ArmThumb,
            4 => Filter::Arm64,
            c => Filter::Unknown(c),
        }
    }
}

impl From<Filter> for u8 {
    fn from(f: Filter) -> u8 {
        match f {
            Filter::None => 0,
            Filter::X86 => 1,
            Filter::Arm => 2,
            Filter::ArmThumb => 3,
            Filter::Arm64 => 4,
            Filter::Unknown(c) => c,
        }
    }
}

/// The window of a format-version-1 or -2 file: deflate's 32 KiB.
pub const DEFLATE_DICTIONARY: u32 = 32 * 1024;
/// The smallest dictionary a file may declare: 4 KiB.
pub const MIN_DICTIONARY: u32 = 4 * 1024;
/// The largest dictionary a file may declare: 1.5 GiB (3 · 2^29).
pub const MAX_DICTIONARY: u32 = 3 << 29;

/// Whether `d` is a dictionary size a file may declare: 2^n or 2^n + 2^(n-1) bytes (the sizes
/// an LZMA2 dictionary byte can say exactly), from [`MIN_DICTIONARY`] to [`MAX_DICTIONARY`].
pub const fn dictionary_is_valid(d: u32) -> bool {
    if d < MIN_DICTIONARY || d > MAX_DICTIONARY {
        return false;
    }
    let low = d.trailing_zeros();
    let rest = d >> low;
    rest == 1 || rest == 3
}

/// The LZMA2 dictionary byte (xz's filter property) for a valid dictionary size `d`: the
/// byte `b` with `(2 | (b & 1)) << (b / 2 + 11) == d`.
pub const fn lzma2_dictionary_byte(d: u32) -> u8 {
    let low = d.trailing_zeros();
    if d >> low == 3 {
        // 3 << (low) = (2 | 1) << (b / 2 + 11) with b odd: b / 2 + 11 = low.
        ((low - 11) * 2 + 1) as u8
    } else {
        // 2 << (low - 1): b even, b / 2 + 11 = low - 1.
        ((low - 12) * 2) as u8
    }
}

/// The largest valid dictionary size (see [`dictionary_is_valid`]) at most `max`, or `None`
/// when `max` is below [`MIN_DICTIONARY`].
pub const fn dictionary_at_most(max: u64) -> Option<u32> {
    if max < MIN_DICTIONARY as u64 {
        return None;
    }
    let max = if max > MAX_DICTIONARY as u64 {
        MAX_DICTIONARY
    } else {
        max as u32
    };
    let pow = 1u32 << (31 - max.leading_zeros());
    let three = pow | (pow >> 1);
    Some(if three <= max { three } else { pow })
}

/// One part as the superblock describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PartEntry {
    /// How the part is encoded.
    pub codec: Codec,
    /// The filter an [`Codec::Xz`] part's records went through (format version 3 on;
    /// [`Filter::None`] for every other codec).
    pub filter: Filter,
    /// Bytes of the part in the file.
    pub size: u32,
    /// Bytes of operation records once decoded.
    pub uncompressed_size: u32,
    /// Operations in the part.
    pub ops: u32,
    /// SHA-256 of the part's bytes as they stand in the file.
    pub sha256: [u8; 32],
}

/// The target commit's metadata, carried in the superblock so that a device can show what a
/// file holds before installing it.
///
/// The installer checks `timestamp` against the commit object's timestamp
/// (`InstallError::MetaMismatch`). `version` and `subject` are informational: they are signed
/// with the superblock, and the commit object that carries the authoritative copies is named
/// by the signed target id and verified by its hash, but the installer does not compare the
/// strings byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMeta<'a> {
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// The commit's version string.
    pub version: &'a str,
    /// The commit's subject.
    pub subject: &'a str,
}

/// The superblock: what the file updates from and to, and its parts. Encoded with postcard,
/// in field order. [`Superblock::security_version`] exists from format version 2 on;
/// [`PartEntry::filter`] and [`Superblock::dictionary`] from version 3 on
/// ([`Superblock::parse_version`], [`Superblock::emit_version`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superblock<'a> {
    /// The ref this update moves, e.g. `ecu/armv7/main`.
    pub ref_name: &'a str,
    /// The commit a delta applies to; `None` for a from-scratch file.
    pub from: Option<ObjectId>,
    /// The commit the file installs.
    pub to: ObjectId,
    /// The target commit's metadata.
    #[serde(borrow)]
    pub meta: TargetMeta<'a>,
    /// Objects the file writes or reuses, over all parts.
    pub objects: u32,
    /// The parts, in file order.
    pub parts: heapless::Vec<PartEntry, MAX_PARTS>,
    /// The target commit's security version (anti-rollback): the installer checks it against
    /// the device's floor before anything reaches the store, and against the commit object.
    /// Format version 2 on; 0 for a version-1 file.
    pub security_version: u64,
    /// The window the parts need, in bytes: every deflate part's back-references reach at most
    /// this far (and never beyond 32 KiB), and every xz part is decoded with an LZMA2
    /// dictionary of exactly this size. A valid size ([`dictionary_is_valid`]); format version
    /// 3 on, [`DEFLATE_DICTIONARY`] for older files. A device that lends less refuses the file
    /// before anything reaches its store.
    pub dictionary: u32,
}

/// A part entry of format versions 1 and 2: [`PartEntry`] without its filter.
type PartEntryV1 = (Codec, u32, u32, u32, [u8; 32]);

/// A format-version-1 superblock: [`Superblock`] without its last two fields, and parts
/// without a filter.
type SuperblockV1<'a> = (
    &'a str,
    Option<ObjectId>,
    ObjectId,
    TargetMeta<'a>,
    u32,
    heapless::Vec<PartEntryV1, MAX_PARTS>,
);

/// A format-version-2 superblock: version 1 and the security version.
type SuperblockV2<'a> = (
    &'a str,
    Option<ObjectId>,
    ObjectId,
    TargetMeta<'a>,
    u32,
    heapless::Vec<PartEntryV1, MAX_PARTS>,
    u64,
);

fn parts_v3(v1: &heapless::Vec<PartEntryV1, MAX_PARTS>) -> heapless::Vec<PartEntry, MAX_PARTS> {
    v1.iter()
        .map(|&(codec, size, uncompressed_size, ops, sha256)| PartEntry {
            codec,
            filter: Filter::None,
            size,
            uncompressed_size,
            ops,
            sha256,
        })
        .collect()
}

impl<'a> Superblock<'a> {
    /// Decodes and validates a superblock of the current format ([`FORMAT_VERSION`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Superblock<'a>, FormatError> {
        Superblock::parse_version(bytes, FORMAT_VERSION)
    }

    /// Decodes and validates a superblock of format `version` (as the header says).
    pub fn parse_version(bytes: &'a [u8], version: u16) -> Result<Superblock<'a>, FormatError> {
        let bad = |_| FormatError::BadSuperblock;
        let (sb, rest) = match version {
            1 => {
                let ((ref_name, from, to, meta, objects, parts), rest): (SuperblockV1<'a>, _) =
                    postcard::take_from_bytes(bytes).map_err(bad)?;
                let sb = Superblock {
                    ref_name,
                    from,
                    to,
                    meta,
                    objects,
                    parts: parts_v3(&parts),
                    security_version: 0,
                    dictionary: DEFLATE_DICTIONARY,
                };
                (sb, rest)
            }
            2 => {
                let ((ref_name, from, to, meta, objects, parts, security_version), rest): (
                    SuperblockV2<'a>,
                    _,
                ) = postcard::take_from_bytes(bytes).map_err(bad)?;
                let sb = Superblock {
                    ref_name,
                    from,
                    to,
                    meta,
                    objects,
                    parts: parts_v3(&parts),
                    security_version,
                    dictionary: DEFLATE_DICTIONARY,
                };
                (sb, rest)
            }
            // Version 3 adds patch records, part filters and the dictionary.
            FORMAT_VERSION => postcard::take_from_bytes(bytes).map_err(bad)?,
            v => return Err(FormatError::UnsupportedVersion(v)),
        };
        if !rest.is_empty() {
            return Err(FormatError::BadSuperblock);
        }
        if sb.ref_name.is_empty() || sb.ref_name.len() > MAX_REF_LEN {
            return Err(FormatError::BadRef);
        }
        if sb.meta.version.len() > MAX_VERSION_LEN || sb.meta.subject.len() > MAX_SUBJECT_LEN {
            return Err(FormatError::BadMeta);
        }
        if sb.parts.is_empty() {
            return Err(FormatError::NoParts);
        }
        for (i, p) in sb.parts.iter().enumerate() {
            check_part(i as u32, p)?;
        }
        if !dictionary_is_valid(sb.dictionary) {
            return Err(FormatError::BadDictionary(sb.dictionary));
        }
        Ok(sb)
    }

    /// Total bytes of all parts.
    pub fn parts_size(&self) -> u64 {
        self.parts.iter().map(|p| u64::from(p.size)).sum()
    }

    /// Encodes the superblock in the current format ([`FORMAT_VERSION`]) into `out`,
    /// returning the bytes used.
    pub fn emit<'o>(&self, out: &'o mut [u8]) -> Result<&'o mut [u8], FormatError> {
        self.emit_version(out, FORMAT_VERSION)
    }

    /// Encodes the superblock in format `version` into `out`, returning the bytes used.
    /// Version 1 has no security version: one other than 0 is
    /// [`FormatError::SecurityVersionNeedsV2`]. Versions 1 and 2 have no filters, no xz parts
    /// and a 32 KiB window: anything else is [`FormatError::NeedsV3`].
    pub fn emit_version<'o>(
        &self,
        out: &'o mut [u8],
        version: u16,
    ) -> Result<&'o mut [u8], FormatError> {
        let full = |_| FormatError::BufferTooSmall;
        if version < FORMAT_VERSION
            && (self.dictionary != DEFLATE_DICTIONARY
                || self
                    .parts
                    .iter()
                    .any(|p| p.codec == Codec::Xz || p.filter != Filter::None))
        {
            return Err(FormatError::NeedsV3);
        }
        let v1_parts = || -> heapless::Vec<PartEntryV1, MAX_PARTS> {
            self.parts
                .iter()
                .map(|p| (p.codec, p.size, p.uncompressed_size, p.ops, p.sha256))
                .collect()
        };
        match version {
            1 if self.security_version != 0 => Err(FormatError::SecurityVersionNeedsV2),
            1 => {
                let v1: SuperblockV1<'_> = (
                    self.ref_name,
                    self.from,
                    self.to,
                    self.meta,
                    self.objects,
                    v1_parts(),
                );
                postcard::to_slice(&v1, out).map_err(full)
            }
            2 => {
                let v2: SuperblockV2<'_> = (
                    self.ref_name,
                    self.from,
                    self.to,
                    self.meta,
                    self.objects,
                    v1_parts(),
                    self.security_version,
                );
                postcard::to_slice(&v2, out).map_err(full)
            }
            FORMAT_VERSION => postcard::to_slice(self, out).map_err(full),
            v => Err(FormatError::UnsupportedVersion(v)),
        }
    }
}

/// The checks of one part entry, in order: a known codec (`UnknownCodec`), a stored part's
/// sizes (`StoredSize`), a known filter (`UnknownFilter`), a filter only on an xz part
/// (`FilterWithoutXz`).
pub fn check_part(part: u32, p: &PartEntry) -> Result<(), FormatError> {
    if let Codec::Unknown(codec) = p.codec {
        return Err(FormatError::UnknownCodec { part, codec });
    }
    if p.codec == Codec::Stored && p.size != p.uncompressed_size {
        return Err(FormatError::StoredSize { part });
    }
    if let Filter::Unknown(filter) = p.filter {
        return Err(FormatError::UnknownFilter { part, filter });
    }
    if p.filter != Filter::None && p.codec != Codec::Xz {
        return Err(FormatError::FilterWithoutXz {
            part,
            codec: p.codec.into(),
        });
    }
    Ok(())
}

/// The signature algorithm byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SignatureKind {
    /// Unsigned: no signature bytes follow.
    None,
    /// Ed25519 over `header || superblock`: 64 bytes follow.
    Ed25519,
    /// A code this version does not know.
    Unknown(u8),
}

impl SignatureKind {
    /// The kind for a wire code.
    pub const fn from_code(c: u8) -> SignatureKind {
        match c {
            0 => SignatureKind::None,
            1 => SignatureKind::Ed25519,
            c => SignatureKind::Unknown(c),
        }
    }
    /// The kind's wire code.
    pub const fn code(self) -> u8 {
        match self {
            SignatureKind::None => 0,
            SignatureKind::Ed25519 => 1,
            SignatureKind::Unknown(c) => c,
        }
    }
    /// Bytes that follow the algorithm byte.
    #[allow(clippy::len_without_is_empty)] // a length in the file, not a container
    pub const fn len(self) -> Option<usize> {
        match self {
            SignatureKind::None => Some(0),
            SignatureKind::Ed25519 => Some(SIGNATURE_LEN),
            SignatureKind::Unknown(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operation records

/// Operation codes. 0x04..=0x7f are reserved for later operations; 0x80..=0xff are never
/// assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpCode {
    /// Write a new object from literal bytes.
    Write,
    /// The target reuses an object the device already has (for a dirtree: the whole tree
    /// under it).
    Reuse,
    /// Build a new object from a source object the device has and a bsdiff-style patch
    /// (format version 3 on).
    Patch,
    /// A code this version does not know.
    Unknown(u8),
}

impl OpCode {
    /// The code for a wire byte.
    pub const fn from_code(c: u8) -> OpCode {
        match c {
            1 => OpCode::Write,
            2 => OpCode::Reuse,
            3 => OpCode::Patch,
            c => OpCode::Unknown(c),
        }
    }
    /// The wire byte.
    pub const fn code(self) -> u8 {
        match self {
            OpCode::Write => 1,
            OpCode::Reuse => 2,
            OpCode::Patch => 3,
            OpCode::Unknown(c) => c,
        }
    }
}

/// Bytes of a `Reuse` record: code, kind, id.
pub const REUSE_LEN: usize = 2 + ID_LEN;
/// Bytes of a `Write` record before the object's bytes: code, kind, id, u64 length.
pub const WRITE_HEADER_LEN: usize = 2 + ID_LEN + 8;
/// Bytes of a `Patch` record before its patch: code, kind, id, u64 length, source id.
pub const PATCH_HEADER_LEN: usize = WRITE_HEADER_LEN + ID_LEN;
/// Largest operation record header.
pub const MAX_OP_HEADER_LEN: usize = PATCH_HEADER_LEN;
/// Bytes of a patch control (`docs/FORMAT.md` §6): add length, copy length, seek, each 8
/// bytes in bsdiff's sign-and-magnitude encoding ([`offtin`]).
pub const PATCH_CONTROL_LEN: usize = 24;

/// Decodes an 8-byte bsdiff integer: little-endian magnitude in the low 63 bits, the sign in
/// the top bit. The magnitude 2^63 does not fit: it saturates to `i64::MIN + 1`'s magnitude
/// (`i64::MIN` is never produced).
pub fn offtin(b: [u8; 8]) -> i64 {
    let v = u64::from_le_bytes(b);
    let mag = (v & (u64::MAX >> 1)) as i64;
    if v >> 63 == 1 {
        -mag
    } else {
        mag
    }
}

/// A decoded operation record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpRepr {
    /// `len` bytes of the object follow.
    Write {
        /// The object's kind.
        kind: ObjectKind,
        /// The id its bytes must hash to.
        id: ObjectId,
        /// Bytes of the object that follow.
        len: u64,
    },
    /// The object (and for a dirtree, everything under it) comes from the source commit.
    Reuse {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// The object's `len` bytes are built from object `source` (same kind, which the device
    /// holds) by the patch controls that follow, until `len` bytes are produced.
    Patch {
        /// The object's kind (and its source's).
        kind: ObjectKind,
        /// The id the built bytes must hash to.
        id: ObjectId,
        /// Bytes the patch builds.
        len: u64,
        /// The object the patch reads from.
        source: ObjectId,
    },
}

impl OpRepr {
    /// Bytes of the record header for an op whose first byte is `code`, or an error for an
    /// unknown code.
    pub fn header_len(code: u8) -> Result<usize, FormatError> {
        match OpCode::from_code(code) {
            OpCode::Write => Ok(WRITE_HEADER_LEN),
            OpCode::Reuse => Ok(REUSE_LEN),
            OpCode::Patch => Ok(PATCH_HEADER_LEN),
            OpCode::Unknown(c) => Err(FormatError::UnknownOp(c)),
        }
    }

    /// Parses a record header; `b` must hold exactly [`OpRepr::header_len`] bytes.
    pub fn parse(b: &[u8]) -> Result<OpRepr, FormatError> {
        let Some(&code) = b.first() else {
            return Err(FormatError::Truncated { needed: 1, have: 0 });
        };
        let need = OpRepr::header_len(code)?;
        if b.len() < need {
            return Err(FormatError::Truncated {
                needed: need,
                have: b.len(),
            });
        }
        let kind = ObjectKind::from_code(b[1]);
        if let ObjectKind::Unknown(k) = kind {
            return Err(FormatError::UnknownKind(k));
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&b[2..2 + ID_LEN]);
        let id = ObjectId(id);
        let mut l = [0u8; 8];
        if let Some(f) = b.get(2 + ID_LEN..WRITE_HEADER_LEN) {
            l.copy_from_slice(f);
        }
        let len = u64::from_le_bytes(l);
        Ok(match OpCode::from_code(code) {
            OpCode::Write => OpRepr::Write { kind, id, len },
            OpCode::Patch => {
                let mut source = [0u8; ID_LEN];
                source.copy_from_slice(&b[WRITE_HEADER_LEN..PATCH_HEADER_LEN]);
                OpRepr::Patch {
                    kind,
                    id,
                    len,
                    source: ObjectId(source),
                }
            }
            _ => OpRepr::Reuse { kind, id },
        })
    }

    /// Bytes [`OpRepr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        match self {
            OpRepr::Write { .. } => WRITE_HEADER_LEN,
            OpRepr::Reuse { .. } => REUSE_LEN,
            OpRepr::Patch { .. } => PATCH_HEADER_LEN,
        }
    }

    /// Writes the record header into `out[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`OpRepr::buffer_len`].
    pub fn emit(&self, out: &mut [u8]) {
        let (code, kind, id) = match self {
            OpRepr::Write { kind, id, .. } => (OpCode::Write, kind, id),
            OpRepr::Reuse { kind, id } => (OpCode::Reuse, kind, id),
            OpRepr::Patch { kind, id, .. } => (OpCode::Patch, kind, id),
        };
        out[0] = code.code();
        out[1] = kind.code();
        out[2..2 + ID_LEN].copy_from_slice(&id.0);
        if let OpRepr::Write { len, .. } | OpRepr::Patch { len, .. } = self {
            out[2 + ID_LEN..WRITE_HEADER_LEN].copy_from_slice(&len.to_le_bytes());
        }
        if let OpRepr::Patch { source, .. } = self {
            out[WRITE_HEADER_LEN..PATCH_HEADER_LEN].copy_from_slice(&source.0);
        }
    }
}

/// Why bytes are not a valid `.update` file. Each variant says where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer bytes than a fixed-size structure needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        have: usize,
    },
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// A format version this agent cannot read.
    UnsupportedVersion(u16),
    /// Header flags this agent does not know.
    UnknownFlags(u16),
    /// A superblock length of zero or over [`MAX_SUPERBLOCK_LEN`].
    SuperblockLength(u32),
    /// The superblock does not decode.
    BadSuperblock,
    /// An empty ref name or one over [`MAX_REF_LEN`] bytes.
    BadRef,
    /// A part codec this agent does not know.
    UnknownCodec {
        /// Which part.
        part: u32,
        /// Its codec code.
        codec: u8,
    },
    /// A signature algorithm this agent does not know.
    UnknownSignature(u8),
    /// An operation code this agent does not know.
    UnknownOp(u8),
    /// An object kind this agent does not know.
    UnknownKind(u8),
    /// The output buffer is too small.
    BufferTooSmall,
    /// The superblock's version or subject is longer than a commit's may be.
    BadMeta,
    /// The superblock lists no part (every file has at least the commit).
    NoParts,
    /// A `Stored` part whose size and decoded size differ.
    StoredSize {
        /// Which part.
        part: u32,
    },
    /// A security version other than 0 cannot be written in format version 1.
    SecurityVersionNeedsV2,
    /// A part filter this agent does not know.
    UnknownFilter {
        /// Which part.
        part: u32,
        /// Its filter code.
        filter: u8,
    },
    /// A filter on a part that is not xz-coded.
    FilterWithoutXz {
        /// Which part.
        part: u32,
        /// Its codec code.
        codec: u8,
    },
    /// A dictionary size that is not 2^n or 2^n + 2^(n-1) bytes from 4 KiB to 1.5 GiB.
    BadDictionary(u32),
    /// Xz parts, filters or a window other than 32 KiB cannot be written in format version 1
    /// or 2.
    NeedsV3,
    /// A part uses a codec this agent knows but was built without (`agent-core`'s feature
    /// `xz`).
    CodecNotBuilt {
        /// Which part.
        part: u32,
        /// Its codec code.
        codec: u8,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { needed, have } => {
                write!(f, "the data is truncated: {needed} bytes needed, {have} present")
            }
            FormatError::BadMagic => f.write_str("this is not an update file (bad magic)"),
            FormatError::UnsupportedVersion(v) => write!(
                f,
                "update format version {v} is not supported (this agent reads versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION}); upgrade the agent"
            ),
            FormatError::UnknownFlags(v) => {
                write!(f, "the header has flags {v:#06x} this agent does not know; upgrade the agent")
            }
            FormatError::SuperblockLength(n) => {
                write!(f, "superblock length {n} is out of range (1..={MAX_SUPERBLOCK_LEN})")
            }
            FormatError::BadSuperblock => f.write_str("the superblock does not decode"),
            FormatError::BadRef => write!(f, "the ref name is empty or longer than {MAX_REF_LEN} bytes"),
            FormatError::UnknownCodec { part, codec } => {
                write!(f, "part {part} uses codec {codec}, which this agent does not know; upgrade the agent")
            }
            FormatError::UnknownSignature(c) => {
                write!(f, "signature algorithm {c} is not known to this agent")
            }
            FormatError::UnknownOp(c) => {
                write!(f, "operation code {c:#04x} is not known to this agent; upgrade the agent")
            }
            FormatError::UnknownKind(k) => write!(f, "object kind {k} is not known to this agent"),
            FormatError::BufferTooSmall => f.write_str("the output buffer is too small"),
            FormatError::BadMeta => write!(
                f,
                "the superblock's version is over {MAX_VERSION_LEN} bytes or its subject over {MAX_SUBJECT_LEN}"
            ),
            FormatError::SecurityVersionNeedsV2 => write!(
                f,
                "format version 1 has no security version; write format version {FORMAT_VERSION} for a commit whose security version is not 0"
            ),
            FormatError::NoParts => f.write_str("the superblock lists no parts, so the update has no commit"),
            FormatError::StoredSize { part } => {
                write!(f, "part {part} is stored uncompressed but declares two different sizes")
            }
            FormatError::UnknownFilter { part, filter } => {
                write!(f, "part {part} uses filter {filter}, which this agent does not know; upgrade the agent")
            }
            FormatError::FilterWithoutXz { part, codec } => {
                write!(f, "part {part} has a filter but codec {codec}; only xz parts (codec 2) have filters")
            }
            FormatError::BadDictionary(d) => write!(
                f,
                "dictionary size {d} is not 2^n or 2^n + 2^(n-1) bytes from {MIN_DICTIONARY} to {MAX_DICTIONARY}"
            ),
            FormatError::CodecNotBuilt { part, codec } => write!(
                f,
                "part {part} uses codec {codec} (xz), which this agent was built without; ask for an update generated with --codec deflate"
            ),
            FormatError::NeedsV3 => f.write_str(
                "format versions 1 and 2 carry only stored and deflate parts with a 32 KiB window; write format version 3"
            ),
        }
    }
}

impl core::error::Error for FormatError {}

#[cfg(test)]
mod test {
    extern crate std;

    use super::*;

    static HEADER_BYTES: [u8; 16] = [
        b'E', b'C', b'U', b'P', b'D', b'A', b'T', b'E', // magic
        1, 0, // version
        0, 0, // flags
        0x34, 0x12, 0, 0, // superblock length 0x1234
    ];

    #[test]
    fn header_deconstruct() {
        let h = Header::new_checked(&HEADER_BYTES[..]).unwrap();
        assert_eq!(h.magic(), MAGIC);
        assert_eq!(h.version(), 1);
        assert_eq!(h.flags(), 0);
        assert_eq!(h.superblock_len(), 0x1234);
    }

    #[test]
    fn header_construct_and_emit() {
        let mut buf = [0xaau8; 16];
        let repr = HeaderRepr {
            version: 1,
            superblock_len: 0x1234,
        };
        repr.emit(&mut Header::new_unchecked(&mut buf[..]));
        assert_eq!(buf, HEADER_BYTES);
    }

    #[test]
    fn header_parse() {
        let h = Header::new_unchecked(&HEADER_BYTES[..]);
        assert_eq!(
            HeaderRepr::parse(&h),
            Ok(HeaderRepr {
                version: 1,
                superblock_len: 0x1234
            })
        );
        let mut b = HEADER_BYTES;
        b[8] = 2;
        let repr = HeaderRepr::parse(&Header::new_unchecked(&b[..])).unwrap();
        assert_eq!(repr.version, 2);
        let mut out = [0u8; 16];
        repr.emit(&mut Header::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
    }

    #[test]
    fn header_bad() {
        assert_eq!(
            Header::new_checked(&HEADER_BYTES[..15]).unwrap_err(),
            FormatError::Truncated {
                needed: 16,
                have: 15
            }
        );
        let mut b = HEADER_BYTES;
        b[0] = b'X';
        assert_eq!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::BadMagic)
        );
        for v in [0u16, 4, 0x0100, u16::MAX] {
            let mut b = HEADER_BYTES;
            b[8..10].copy_from_slice(&v.to_le_bytes());
            let e = HeaderRepr::parse(&Header::new_unchecked(&b[..])).unwrap_err();
            assert_eq!(e, FormatError::UnsupportedVersion(v));
            let msg = std::format!("{e}");
            assert!(msg.contains(&std::format!("version {v} ")), "{msg}");
        }
        let mut b = HEADER_BYTES;
        b[10] = 1;
        assert_eq!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::UnknownFlags(1))
        );
        let mut b = HEADER_BYTES;
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::SuperblockLength(0))
        );
        b[12..16].copy_from_slice(&(MAX_SUPERBLOCK_LEN as u32 + 1).to_le_bytes());
        assert!(matches!(
            HeaderRepr::parse(&Header::new_unchecked(&b[..])),
            Err(FormatError::SuperblockLength(_))
        ));
    }

    #[test]
    fn superblock_round_trip() {
        let mut parts = heapless::Vec::new();
        parts
            .push(PartEntry {
                codec: Codec::Deflate,
                filter: Filter::None,
                size: 10,
                uncompressed_size: 20,
                ops: 2,
                sha256: [7; 32],
            })
            .unwrap();
        let sb = Superblock {
            ref_name: "ecu/main",
            from: Some(ObjectId([1; 32])),
            to: ObjectId([2; 32]),
            meta: TargetMeta {
                timestamp: 5,
                version: "1.0",
                subject: "s",
            },
            objects: 2,
            parts,
            security_version: 0,
            dictionary: DEFLATE_DICTIONARY,
        };
        let mut buf = [0u8; 256];
        let n = sb.emit_version(&mut buf, 2).unwrap().len();
        assert_eq!(Superblock::parse_version(&buf[..n], 2).unwrap(), sb);
        // Version 1: the same fields without the last; version 2 appends it.
        let mut v1 = [0u8; 256];
        let n1 = sb.emit_version(&mut v1, 1).unwrap().len();
        assert_eq!((n1, &v1[..n1]), (n - 1, &buf[..n - 1]));
        assert_eq!(buf[n - 1], 0);
        assert_eq!(Superblock::parse_version(&v1[..n1], 1).unwrap(), sb);
        assert_eq!(
            Superblock::parse_version(&v1[..n1], 2),
            Err(FormatError::BadSuperblock)
        );
        assert_eq!(
            Superblock::parse_version(&buf[..n], 1),
            Err(FormatError::BadSuperblock)
        );
        assert_eq!(
            Superblock::parse_version(&buf[..n], 4),
            Err(FormatError::UnsupportedVersion(4))
        );
        // Version 3: a filter byte after each part's codec, the dictionary after the security
        // version.
        let mut v3 = [0u8; 256];
        let n3 = sb.emit(&mut v3).unwrap().len();
        assert_eq!(n3, n + 1 + 3);
        let codec_at = n - 1 - 32 - 3 - 1;
        assert_eq!(&v3[..=codec_at], &buf[..=codec_at]);
        assert_eq!(v3[codec_at + 1], 0, "filter none");
        assert_eq!(&v3[codec_at + 2..n + 1], &buf[codec_at + 1..n]);
        assert_eq!(&v3[n + 1..n3], &[0x80, 0x80, 0x02], "dictionary 32768");
        assert_eq!(Superblock::parse(&v3[..n3]).unwrap(), sb);
        assert_eq!(
            Superblock::parse_version(&v3[..n3], 2),
            Err(FormatError::BadSuperblock)
        );
        // Version 2 reads and writes as before.
        assert_eq!(Superblock::parse_version(&buf[..n], 2).unwrap(), sb);
        let mut v2 = [0u8; 256];
        let n2 = sb.emit_version(&mut v2, 2).unwrap().len();
        assert_eq!(&v2[..n2], &buf[..n]);
        let sv = Superblock {
            security_version: 300,
            ..sb.clone()
        };
        let mut sv_buf = [0u8; 256];
        let m = sv.emit_version(&mut sv_buf, 2).unwrap().len();
        assert_eq!((m, &sv_buf[m - 2..m]), (n + 1, &[0xac, 0x02][..]));
        assert_eq!(Superblock::parse_version(&sv_buf[..m], 2).unwrap(), sv);
        let m3 = sv.emit(&mut sv_buf).unwrap().len();
        assert_eq!(Superblock::parse(&sv_buf[..m3]).unwrap(), sv);
        assert_eq!(
            sv.emit_version(&mut v1, 1),
            Err(FormatError::SecurityVersionNeedsV2)
        );
        assert_eq!(
            Superblock::parse_version(&buf[..n - 1], 2),
            Err(FormatError::BadSuperblock)
        );
        assert_eq!(
            Superblock::parse(&v3[..n3 - 1]),
            Err(FormatError::BadSuperblock)
        );
        let mut longer = buf;
        longer[n] = 0;
        assert_eq!(
            Superblock::parse_version(&longer[..n + 1], 2),
            Err(FormatError::BadSuperblock)
        );
        let mut longer = v3;
        longer[n3] = 0;
        assert_eq!(
            Superblock::parse(&longer[..n3 + 1]),
            Err(FormatError::BadSuperblock)
        );
        // What only version 3 carries.
        let mut xz = sb.clone();
        xz.parts[0].codec = Codec::Xz;
        assert_eq!(xz.emit_version(&mut v1, 2), Err(FormatError::NeedsV3));
        let mut small = sb.clone();
        small.dictionary = 8192;
        assert_eq!(small.emit_version(&mut v1, 1), Err(FormatError::NeedsV3));
        let n = small.emit(&mut v3).unwrap().len();
        assert_eq!(Superblock::parse(&v3[..n]).unwrap(), small);
    }

    #[test]
    fn superblock_validation() {
        let part = PartEntry {
            codec: Codec::Stored,
            filter: Filter::None,
            size: 10,
            uncompressed_size: 10,
            ops: 1,
            sha256: [0; 32],
        };
        let sb = |parts: &[PartEntry], version: &'static str, subject: &'static str| {
            let mut v = heapless::Vec::new();
            for p in parts {
                v.push(*p).unwrap();
            }
            Superblock {
                ref_name: "r",
                from: None,
                to: ObjectId::ZERO,
                meta: TargetMeta {
                    timestamp: 0,
                    version,
                    subject,
                },
                objects: 1,
                parts: v,
                security_version: 0,
                dictionary: DEFLATE_DICTIONARY,
            }
        };
        let check = |s: Superblock<'_>| {
            let mut buf = [0u8; 4096];
            let n = s.emit(&mut buf).unwrap().len();
            Superblock::parse(&buf[..n]).map(|_| ())
        };
        assert_eq!(check(sb(&[part], "1", "s")), Ok(()));
        assert_eq!(check(sb(&[], "1", "s")), Err(FormatError::NoParts));
        let long_version: &'static str = "v".repeat(256).leak();
        assert_eq!(
            check(sb(&[part], long_version, "s")),
            Err(FormatError::BadMeta)
        );
        let long_subject: &'static str = "s".repeat(1025).leak();
        assert_eq!(
            check(sb(&[part], "1", long_subject)),
            Err(FormatError::BadMeta)
        );
        let odd = PartEntry {
            uncompressed_size: 11,
            ..part
        };
        assert_eq!(
            check(sb(&[part, odd], "1", "s")),
            Err(FormatError::StoredSize { part: 1 })
        );
        let deflated = PartEntry {
            codec: Codec::Deflate,
            ..odd
        };
        assert_eq!(check(sb(&[deflated], "1", "s")), Ok(()));
        let unknown = PartEntry {
            codec: Codec::Unknown(3),
            ..part
        };
        assert_eq!(
            check(sb(&[part, unknown], "1", "s")),
            Err(FormatError::UnknownCodec { part: 1, codec: 3 })
        );
        // Filters: known, and only on xz parts.
        let xz = PartEntry {
            codec: Codec::Xz,
            filter: Filter::Arm64,
            ..odd
        };
        assert_eq!(check(sb(&[xz], "1", "s")), Ok(()));
        let strange = PartEntry {
            filter: Filter::Unknown(5),
            ..xz
        };
        let e = check(sb(&[xz, strange], "1", "s")).unwrap_err();
        assert_eq!(e, FormatError::UnknownFilter { part: 1, filter: 5 });
        assert!(std::format!("{e}").contains("filter 5"), "{e}");
        let misplaced = PartEntry {
            codec: Codec::Deflate,
            ..xz
        };
        assert_eq!(
            check(sb(&[misplaced], "1", "s")),
            Err(FormatError::FilterWithoutXz { part: 0, codec: 1 })
        );
        // The dictionary: 2^n or 3 * 2^(n-1), 4 KiB ..= 1.5 GiB.
        for (d, ok) in [
            (4096, true),
            (6144, true),
            (8 << 20, true),
            (12 << 20, true),
            (MAX_DICTIONARY, true),
            (2048, false),
            (5000, false),
            (5 << 12, false),
            (1 << 31, false),
            (0, false),
        ] {
            let mut s = sb(&[xz], "1", "s");
            s.dictionary = d;
            let want = if ok {
                Ok(())
            } else {
                Err(FormatError::BadDictionary(d))
            };
            assert_eq!(check(s), want, "{d}");
        }
    }

    #[test]
    fn dictionary_sizes_and_their_lzma2_bytes() {
        // xz's own table: byte b means (2 | (b & 1)) << (b / 2 + 11).
        for b in 0u8..=37 {
            let d = (2u32 | u32::from(b & 1)) << (u32::from(b) / 2 + 11);
            assert!(dictionary_is_valid(d), "{d}");
            assert_eq!(lzma2_dictionary_byte(d), b, "{d}");
            assert_eq!(dictionary_at_most(u64::from(d)), Some(d));
            assert_eq!(dictionary_at_most(u64::from(d) + 1), Some(d));
        }
        assert_eq!(dictionary_at_most(4095), None);
        assert_eq!(dictionary_at_most(100_000), Some(98_304));
        assert_eq!(dictionary_at_most(u64::MAX), Some(MAX_DICTIONARY));
    }

    static PATCH_RECORD: [u8; PATCH_HEADER_LEN] = {
        let mut b = [0u8; PATCH_HEADER_LEN];
        b[0] = 3; // Patch
        b[1] = 1; // file
        let mut i = 0;
        while i < 32 {
            b[2 + i] = 0xaa; // id
            b[42 + i] = 0xbb; // source
            i += 1;
        }
        b[34] = 0x10; // length 0x10 + 0x02 << 8
        b[35] = 0x02;
        b
    };

    #[test]
    fn patch_record_deconstruct_and_construct() {
        let repr = OpRepr::parse(&PATCH_RECORD).unwrap();
        assert_eq!(
            repr,
            OpRepr::Patch {
                kind: ObjectKind::File,
                id: ObjectId([0xaa; 32]),
                len: 0x210,
                source: ObjectId([0xbb; 32]),
            }
        );
        let mut out = [0u8; PATCH_HEADER_LEN];
        repr.emit(&mut out);
        assert_eq!(out, PATCH_RECORD);
        assert_eq!(MAX_OP_HEADER_LEN, 74);
    }

    #[test]
    fn offtin_is_sign_and_magnitude() {
        assert_eq!(offtin(5u64.to_le_bytes()), 5);
        assert_eq!(offtin((5u64 | 1 << 63).to_le_bytes()), -5);
        assert_eq!(offtin((1u64 << 63).to_le_bytes()), 0);
        assert_eq!(offtin(u64::MAX.to_le_bytes()), -i64::MAX);
    }

    #[test]
    fn op_round_trip_and_unknown() {
        for op in [
            OpRepr::Write {
                kind: ObjectKind::File,
                id: ObjectId([3; 32]),
                len: 99,
            },
            OpRepr::Reuse {
                kind: ObjectKind::DirTree,
                id: ObjectId([4; 32]),
            },
            OpRepr::Patch {
                kind: ObjectKind::File,
                id: ObjectId([5; 32]),
                len: 0x0102_0304,
                source: ObjectId([6; 32]),
            },
        ] {
            let mut buf = [0u8; MAX_OP_HEADER_LEN];
            op.emit(&mut buf);
            assert_eq!(OpRepr::header_len(buf[0]), Ok(op.buffer_len()));
            assert_eq!(OpRepr::parse(&buf[..op.buffer_len()]), Ok(op));
            assert!(matches!(
                OpRepr::parse(&buf[..op.buffer_len() - 1]),
                Err(FormatError::Truncated { .. })
            ));
        }
        assert_eq!(OpRepr::header_len(4), Err(FormatError::UnknownOp(4)));
        assert_eq!(OpRepr::header_len(0), Err(FormatError::UnknownOp(0)));
        let mut buf = [0u8; REUSE_LEN];
        buf[0] = 2;
        buf[1] = 9;
        assert_eq!(OpRepr::parse(&buf), Err(FormatError::UnknownKind(9)));
    }
}
