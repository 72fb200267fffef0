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

mod codec;
mod header;
mod op;
mod superblock;

pub use codec::{
    dictionary_at_most, dictionary_is_valid, lzma2_dictionary_byte, Codec, Filter,
    DEFLATE_DICTIONARY, MAX_DICTIONARY, MIN_DICTIONARY,
};
pub use header::{Header, HeaderRepr};
pub use op::{
    deflate_bound, offtin, DeflateParams, OpCode, OpRepr, MAX_OP_HEADER_LEN, PATCH_CONTROL_LEN,
    PATCH_HEADER_LEN, REDEFLATE_HEADER_LEN, REUSE_ENTRIES_HEADER_LEN, REUSE_LEN, WRITE_HEADER_LEN,
};
pub use superblock::{check_part, PartEntry, Superblock, TargetMeta};

use core::fmt;

use crate::object::{MAX_SUBJECT_LEN, MAX_VERSION_LEN};

/// The first eight bytes of every `.update` file.
pub const MAGIC: [u8; 8] = *b"ECUPDATE";
/// The newest format version this crate reads and writes: 5, which adds reuse-entries records
/// (`docs/FORMAT.md` §6). The writer writes the lowest version that carries an update.
pub const FORMAT_VERSION: u16 = 5;
/// The first format version with patch records (`docs/FORMAT.md` §6); in older files their
/// operation code is unknown ([`FormatError::UnknownOp`]). Version 3 also adds xz parts with a
/// filter byte in each part entry, and the dictionary size at the end of the superblock (after
/// the security version).
pub const PATCH_FORMAT_VERSION: u16 = 3;
/// The first format version with redeflate records (`docs/FORMAT.md` §6); in older files their
/// operation code is unknown ([`FormatError::UnknownOp`]). Its superblock is version 3's.
pub const REDEFLATE_FORMAT_VERSION: u16 = 4;
/// The first format version with reuse-entries records (`docs/FORMAT.md` §6); in older files
/// their operation code is unknown ([`FormatError::UnknownOp`]). Its superblock is version 3's.
pub const REUSE_ENTRIES_FORMAT_VERSION: u16 = 5;
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

code_enum! {
    /// The signature algorithm byte.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub enum SignatureKind ("signature algorithm") {
        /// Unsigned: no signature bytes follow.
        None = 0 => "none",
        /// Ed25519 over `header || superblock`: 64 bytes follow.
        Ed25519 = 1 => "ed25519",
    }
}

impl SignatureKind {
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
    /// A redeflate record's deflate parameters (level, window bits, memory level, strategy)
    /// are out of range.
    BadDeflateParams([u8; 4]),
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
                "format version 1 has no security version; write format version {PATCH_FORMAT_VERSION} or later for a commit whose security version is not 0"
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
            FormatError::BadDeflateParams([l, w, m, s]) => write!(
                f,
                "a redeflate record asks for deflate level {l}, window bits {w}, memory level {m}, strategy {s}: out of range (0..=9, 9..=15, 1..=9, 0..=4)"
            ),
            FormatError::NeedsV3 => f.write_str(
                "format versions 1 and 2 carry only stored and deflate parts with a 32 KiB window; write format version 3"
            ),
        }
    }
}

impl core::error::Error for FormatError {}
