//! [`InstallError`]: why an install failed, one variant for each check, each with the numbers
//! and ids involved and one sentence saying what to do.

use core::fmt;

#[cfg(doc)]
use super::{Installer, Policy};
use crate::object::{ObjectError, ObjectId, ObjectKind};
#[cfg(doc)]
use crate::store::Store;
use crate::wire::dictionary_at_most;
use crate::wire::{FormatError, PUBLIC_KEY_LEN};

/// Bytes of a ref kept in [`InstallError::RefNotFollowed`]: 64, enough for the refs a car
/// uses (`cs9/x86_64/qemu-minimal` is 23) while the error stays small (it is returned by
/// value through every step of the installer).
pub const ERROR_REF_LEN: usize = 64;

/// Why an install failed. Each variant says what and where; `E` is the store's error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InstallError<E> {
    /// The file's framing is wrong (header, superblock, unknown codes).
    Format(FormatError),
    /// An object's bytes are not a valid object of its kind.
    Object {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// What is wrong.
        error: ObjectError,
    },
    /// The file is not signed and the policy does not allow unsigned files.
    Unsigned,
    /// The signature verifies against none of the trusted keys.
    BadSignature,
    /// The file is signed and the policy lists no trusted key to verify it with.
    NoTrustedKeys,
    /// The file is signed by a key the policy revokes.
    RevokedKey {
        /// The revoked public key.
        key: [u8; PUBLIC_KEY_LEN],
    },
    /// The file's security version is below the device's anti-rollback floor.
    BelowFloor {
        /// The file's security version (0 for a format-version-1 file).
        security_version: u64,
        /// The lowest security version the device accepts.
        floor: u64,
    },
    /// The file is for a ref the device does not follow.
    RefNotFollowed {
        /// The file's ref, its first [`ERROR_REF_LEN`] bytes at most (cut at a character
        /// boundary), so that the error stays small.
        ref_name: heapless::String<ERROR_REF_LEN, u8>,
        /// Whether `ref_name` was cut.
        cut: bool,
    },
    /// A configured trusted key is not a valid ed25519 public key.
    BadTrustedKey {
        /// Its index in the policy's key list.
        index: usize,
    },
    /// A delta whose source commit is not in the store.
    MissingSource(ObjectId),
    /// An object the update references (a dirtree entry, a commit root, a reuse) is not in
    /// place.
    MissingObject {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// A dirtree would nest deeper than [`crate::object::MAX_TREE_DEPTH`] directories (refused
    /// at the entry that makes it so, before the dirtree reaches the store).
    TreeTooDeep {
        /// The dirtree being written.
        id: ObjectId,
        /// The depth it would have (its deepest subdirectory's depth plus one).
        depth: u16,
        /// The limit.
        max: u16,
    },
    /// The store cannot tell how deep a dirtree it holds is, so the depth limit cannot be
    /// checked ([`Store::tree_depth`] answered `None`).
    TreeDepthUnknown {
        /// The dirtree whose depth is unknown.
        id: ObjectId,
    },
    /// A patch record's source object is not in the store.
    PatchSourceMissing {
        /// The kind of both objects.
        kind: ObjectKind,
        /// The object the patch builds.
        id: ObjectId,
        /// The source it reads.
        source: ObjectId,
    },
    /// A patch record's or a reuse-entries record's source object is in the store but its
    /// bytes do not hash to its id.
    PatchSourceDamaged {
        /// Its kind.
        kind: ObjectKind,
        /// The source object's id.
        source: ObjectId,
        /// The SHA-256 of the bytes the store holds.
        found: ObjectId,
    },
    /// A patch control reads outside its source object.
    PatchRange {
        /// The kind of the object being built.
        kind: ObjectKind,
        /// The object being built.
        id: ObjectId,
        /// Source offset of the read (negative after a seek before the start).
        offset: i64,
        /// Bytes it reads.
        len: u64,
        /// Bytes of the source object.
        source_len: u64,
    },
    /// A patch control produces more bytes than the record's length.
    PatchOverrun {
        /// The kind of the object being built.
        kind: ObjectKind,
        /// The object being built.
        id: ObjectId,
        /// The record's length.
        len: u64,
        /// Bytes built before the control.
        at: u64,
    },
    /// A patch record names a commit (commits are always written).
    PatchCommit {
        /// Its id.
        id: ObjectId,
    },
    /// A redeflate record builds an object that is not a file.
    RedeflateNotFile {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// A redeflate record's object is longer than its head, its tail and the most a deflate
    /// stream of its plaintext can take ([`crate::wire::deflate_bound`]), or the stream
    /// deflated from its plaintext does not end where the record says (its length less its
    /// tail).
    RedeflateLength {
        /// The object.
        id: ObjectId,
        /// The object's declared length.
        len: u64,
        /// The object offset where the stream must end.
        end: u64,
        /// Where it ends (or could end at most, for a declared length over the bound).
        found: u64,
    },
    /// The lent deflate encoder reported a failure while deflating a redeflate record's
    /// plaintext.
    RedeflateFailed {
        /// The object.
        id: ObjectId,
    },
    /// The update has redeflate records and this installer was given no deflate encoder
    /// (`Installer::with_redeflate`, feature `redeflate`), or the encoder cannot deflate with
    /// the record's parameters.
    RedeflateUnsupported {
        /// The object.
        id: ObjectId,
        /// The record's parameters.
        params: crate::wire::DeflateParams,
    },
    /// A reuse-entries record's source dirtree is not in the store.
    EntriesSourceMissing {
        /// The dirtree whose references the record selects.
        source: ObjectId,
    },
    /// A reuse-entries record's bitmap does not fit its source dirtree's references: it must
    /// have one bit for each, ⌈`refs` / 8⌉ bytes, with no bit set past the last.
    EntriesBitmap {
        /// The source dirtree.
        source: ObjectId,
        /// Bytes of the record's bitmap.
        len: u64,
        /// References of the source dirtree read when the mismatch showed (all of them when
        /// the bitmap is short).
        refs: u64,
    },
    /// An object's bytes do not hash to its id.
    ObjectHash {
        /// The object's kind.
        kind: ObjectKind,
        /// The id the record names.
        expected: ObjectId,
        /// The SHA-256 of the bytes received.
        found: ObjectId,
    },
    /// An object's declared length does not fit in what is left of its part.
    ObjectTooLong {
        /// The object's kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Its declared length.
        len: u64,
        /// Bytes left in the part.
        room: u64,
    },
    /// A part's bytes do not hash to the SHA-256 in the superblock.
    PartHash {
        /// Which part.
        part: u32,
    },
    /// A part decodes to fewer bytes than the superblock declares.
    PartSize {
        /// Which part.
        part: u32,
        /// Declared decoded size.
        declared: u32,
        /// Bytes it decoded to.
        found: u64,
    },
    /// A part decodes to more bytes than the superblock declares.
    PartOverrun {
        /// Which part.
        part: u32,
        /// Declared decoded size.
        declared: u32,
    },
    /// A part's deflate stream ends before the part's bytes do.
    PartTrailing {
        /// Which part.
        part: u32,
    },
    /// A part's deflate stream is invalid or ends early.
    Inflate {
        /// Which part.
        part: u32,
    },
    /// An xz part's LZMA2 stream is invalid, ends early, or does not end at the part's end.
    Lzma {
        /// Which part.
        part: u32,
    },
    /// The file's parts need a larger window or dictionary than the caller lent the
    /// installer (refused before anything reaches the store).
    DictionaryTooLarge {
        /// Bytes the file needs (a deflate window, or an LZMA2 dictionary).
        needed: u32,
        /// Bytes lent for it (4 GiB or more count as `u32::MAX`).
        lent: u32,
    },
    /// The file's header and superblock do not fit in the window lent to the installer.
    WindowTooSmall {
        /// Bytes of header and superblock.
        needed: u32,
        /// Bytes lent (the part of the window that holds them: at most 32 KiB).
        lent: u32,
    },
    /// A part ends inside an operation record.
    PartEndsInsideOp {
        /// Which part.
        part: u32,
    },
    /// A part holds another number of operations than the superblock declares.
    OpCount {
        /// Which part.
        part: u32,
        /// Declared.
        declared: u32,
        /// Found (when more, the count at the first one too many).
        found: u32,
    },
    /// The file holds another number of operations than the superblock declares.
    ObjectCount {
        /// Declared.
        declared: u32,
        /// Found (when more, the count at the first one too many).
        found: u32,
    },
    /// The commit object is not the last operation of the last part.
    CommitNotLast {
        /// Its id.
        id: ObjectId,
    },
    /// The file writes a commit other than the one its superblock names.
    CommitNotTarget {
        /// The superblock's target.
        expected: ObjectId,
        /// The commit written.
        found: ObjectId,
    },
    /// A reuse operation names a commit (commits are always written).
    ReuseCommit {
        /// Its id.
        id: ObjectId,
    },
    /// The file ends without writing its commit object.
    NoCommit,
    /// The superblock's security version is not the commit object's.
    SecurityVersionMismatch {
        /// The superblock's security version (0 for a format-version-1 file).
        superblock: u64,
        /// The commit's security version (0 when it carries none).
        commit: u64,
    },
    /// The superblock's timestamp is not the commit object's.
    MetaMismatch {
        /// The superblock's timestamp.
        superblock: u64,
        /// The commit's timestamp.
        commit: u64,
    },
    /// The input ended before the file did.
    Truncated {
        /// The file's length, once the superblock was read.
        expected: Option<u64>,
        /// Bytes received.
        got: u64,
    },
    /// Bytes after the end of the file.
    TrailingData {
        /// Offset of the first extra byte.
        offset: u64,
    },
    /// The installer already failed; [`Installer::reset`] it to start again.
    Failed,
    /// The store failed.
    Store(E),
}

impl<E: fmt::Display> fmt::Display for InstallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use InstallError as I;
        match self {
            I::Format(e) => fmt::Display::fmt(e, f),
            I::Object { kind, id, error } => write!(f, "{kind} object {id} is malformed: {error}"),
            I::Unsigned => f.write_str(
                "the update is not signed and this device only accepts signed updates; sign it with a trusted key",
            ),
            I::BadSignature => f.write_str(
                "the update's signature does not verify against any trusted key: it was signed with another key or altered",
            ),
            I::NoTrustedKeys => f.write_str(
                "the update is signed but no trusted key is configured to verify it; configure the signer's public key as trusted",
            ),
            I::RevokedKey { key } => write!(
                f,
                "the update is signed by key {}…, which this device has revoked; ask for an update signed with a current key",
                HexPrefix(key)
            ),
            I::BelowFloor { security_version, floor } => write!(
                f,
                "the update's security version {security_version} is below this device's floor {floor}; an update at security version {floor} or later is needed"
            ),
            I::RefNotFollowed { ref_name, cut } => write!(
                f,
                "the update is for ref {:?}{}, which this device does not follow; use an update for a ref it follows",
                ref_name.as_str(),
                if *cut { " (cut)" } else { "" }
            ),
            I::BadTrustedKey { index } => write!(f, "trusted key {index} is not a valid ed25519 public key"),
            I::MissingSource(id) => write!(f, "commit {id}, the source of this delta, is not in the store"),
            I::MissingObject { kind, id } => {
                write!(f, "{kind} object {id}, which the update references, is not in the store")
            }
            I::TreeTooDeep { id, depth, max } => write!(
                f,
                "dirtree {id} nests {depth} directories deep, deeper than the {max} this device accepts; flatten the image's tree"
            ),
            I::TreeDepthUnknown { id } => write!(
                f,
                "the store cannot tell how deep dirtree {id} is, so the depth limit cannot be checked; the store must implement tree_depth"
            ),
            I::PatchSourceMissing { kind, id, source } => write!(
                f,
                "{kind} object {id} is a patch of {kind} object {source}, which is not in the store; install a from-scratch update"
            ),
            I::PatchSourceDamaged { kind, source, found } => write!(
                f,
                "{kind} object {source}, the source of a patch or of reused entries, is damaged in the store (its bytes hash to {found}); install a from-scratch update"
            ),
            I::PatchRange { kind, id, offset, len, source_len } => write!(
                f,
                "the patch of {kind} object {id} reads {len} bytes at offset {offset} of a source of {source_len} bytes"
            ),
            I::PatchOverrun { kind, id, len, at } => write!(
                f,
                "the patch of {kind} object {id} builds more than its {len} bytes (a control at byte {at} goes past the end)"
            ),
            I::PatchCommit { id } => write!(f, "the update patches commit object {id}; a commit must be written"),
            I::RedeflateNotFile { kind, id } => {
                write!(f, "a redeflate record builds {kind} object {id}; only file objects can be redeflated")
            }
            I::RedeflateLength { id, len, end, found } => write!(
                f,
                "file object {id} ({len} bytes) must have its deflate stream end at byte {end}, but the stream deflated from its plaintext ends at byte {found}"
            ),
            I::RedeflateFailed { id } => {
                write!(f, "the deflate encoder failed while rebuilding file object {id}")
            }
            I::RedeflateUnsupported { id, params } => write!(
                f,
                "file object {id} is carried inflated, to be deflated again at level {}, window bits {}, memory level {}, strategy {}, which this installer cannot do; ask for an update generated with --no-redeflate",
                params.level, params.window_bits, params.mem_level, params.strategy
            ),
            I::EntriesSourceMissing { source } => write!(
                f,
                "the update reuses entries of dirtree object {source}, which is not in the store; install a from-scratch update"
            ),
            I::EntriesBitmap { source, len, refs } => write!(
                f,
                "the reuse-entries record of dirtree object {source} has a bitmap of {len} bytes, which does not fit the dirtree's references ({refs} read): it needs one bit for each, and none set past the last"
            ),
            I::ObjectHash { kind, expected, found } => {
                write!(f, "{kind} object {expected} is corrupt: its bytes hash to {found}")
            }
            I::ObjectTooLong { kind, id, len, room } => write!(
                f,
                "{kind} object {id} declares {len} bytes but only {room} are left in its part"
            ),
            I::PartHash { part } => write!(
                f,
                "the file is damaged: part {part} does not hash to the SHA-256 its superblock gives; get the file again"
            ),
            I::PartSize { part, declared, found } => {
                write!(f, "part {part} decodes to {found} bytes, the superblock declares {declared}")
            }
            I::PartOverrun { part, declared } => {
                write!(f, "part {part} decodes to more than the {declared} bytes the superblock declares")
            }
            I::PartTrailing { part } => write!(f, "part {part} has bytes after the end of its deflate stream"),
            I::Inflate { part } => write!(f, "part {part} is not a valid deflate stream (corrupt or cut short)"),
            I::Lzma { part } => write!(f, "part {part} is not a valid LZMA2 stream (corrupt, cut short or with bytes after its end)"),
            I::DictionaryTooLarge { needed, lent } => match dictionary_at_most(u64::from(*lent)) {
                Some(fits) => write!(
                    f,
                    "the update needs a {needed}-byte dictionary but this device lends {lent} bytes; ask for an update generated with --max-dictionary {fits}"
                ),
                None => write!(
                    f,
                    "the update needs a {needed}-byte dictionary but this device lends {lent} bytes, too little for any compressed update; lend more or ask for an uncompressed one"
                ),
            },
            I::WindowTooSmall { needed, lent } => write!(
                f,
                "the update's header and superblock take {needed} bytes but this device lends a {lent}-byte window; lend a larger window or ask for an update with fewer parts"
            ),
            I::PartEndsInsideOp { part } => write!(f, "part {part} ends inside an operation record"),
            I::OpCount { part, declared, found } if found > declared => {
                write!(f, "part {part} holds more than the {declared} operations the superblock declares")
            }
            I::OpCount { part, declared, found } => {
                write!(f, "part {part} holds {found} operations, the superblock declares {declared}")
            }
            I::ObjectCount { declared, found } if found > declared => {
                write!(f, "the update holds more than the {declared} operations its superblock declares")
            }
            I::ObjectCount { declared, found } => {
                write!(f, "the update holds {found} operations, its superblock declares {declared}")
            }
            I::CommitNotLast { id } => {
                write!(f, "commit object {id} is not the last operation of the last part")
            }
            I::CommitNotTarget { expected, found } => {
                write!(f, "the update writes commit {found}, but its superblock names {expected}")
            }
            I::ReuseCommit { id } => write!(f, "the update reuses commit object {id}; a commit must be written"),
            I::NoCommit => f.write_str("the update ends without its commit object"),
            I::SecurityVersionMismatch { superblock, commit } => write!(
                f,
                "the superblock's security version {superblock} differs from the commit's {commit}; the file was built wrongly, rebuild it"
            ),
            I::MetaMismatch { superblock, commit } => write!(
                f,
                "the superblock's timestamp {superblock} differs from the commit's {commit}"
            ),
            I::Truncated { expected: Some(n), got } => {
                write!(f, "the update is truncated: {got} of {n} bytes received")
            }
            I::Truncated { expected: None, got } => {
                write!(f, "the update is truncated: it ends after {got} bytes, inside its header or signature")
            }
            I::TrailingData { offset } => {
                write!(f, "the update has extra bytes after its end, from offset {offset}")
            }
            I::Failed => f.write_str("this install already failed; reset the installer to start again"),
            I::Store(e) => write!(f, "the store failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for InstallError<E> {}

/// The first 8 bytes of a key in hex, enough to tell keys apart in a message.
struct HexPrefix<'a>(&'a [u8; PUBLIC_KEY_LEN]);

impl fmt::Display for HexPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<E> From<FormatError> for InstallError<E> {
    fn from(e: FormatError) -> Self {
        InstallError::Format(e)
    }
}
