//! The object model: content-addressed objects named by SHA-256.
//!
//! Four kinds of object make up a commit, as in OSTree:
//!
//! | kind | what it holds |
//! | --- | --- |
//! | [`ObjectKind::File`] | a regular file or a symlink: mode, uid, gid, symlink target, xattrs, then the content |
//! | [`ObjectKind::DirTree`] | a directory's entries: name → file id, or name → (dirtree id, dirmeta id) |
//! | [`ObjectKind::DirMeta`] | a directory's own metadata: mode, uid, gid, xattrs |
//! | [`ObjectKind::Commit`] | parent, timestamp, root dirtree and dirmeta, version, subject, body |
//!
//! An object's id is the SHA-256 of its canonical bytes. Every layout is little-endian and
//! laid out by hand (it is hashed, so it must never depend on a serializer's choices); the byte
//! tables are in `docs/FORMAT.md`. Parsing validates everything a later step relies on, so a
//! value returned by a `parse` function is well-formed.

use core::fmt;

use sha2::{Digest, Sha256};

/// Bytes in an object id (SHA-256).
pub const ID_LEN: usize = 32;
/// Longest name of a directory entry, in bytes (one path component, as on Linux).
pub const MAX_NAME_LEN: usize = 255;
/// Longest symlink target, in bytes.
pub const MAX_SYMLINK_TARGET: usize = 1024;
/// Largest extended-attribute block of one file or directory, in bytes.
pub const MAX_XATTR_BYTES: usize = 4096;
/// Most extended attributes on one file or directory.
pub const MAX_XATTRS: usize = 32;
/// Longest commit version string, in bytes.
pub const MAX_VERSION_LEN: usize = 255;
/// Longest commit subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;
/// Longest commit body, in bytes.
pub const MAX_BODY_LEN: usize = 8192;
/// Deepest directory nesting of a commit's tree: the number of directories below the root on
/// the longest path (a root with no subdirectory has depth 0, `a/b/` has depth 2). The
/// installer refuses a dirtree deeper than this ([`crate::install::InstallError::TreeTooDeep`]),
/// and every command of the Linux agent (commit, checkout, verify, fsck, cleanup, deployment
/// removal) uses the same limit, so that any tree the installer accepts can be deployed,
/// verified and removed.
///
/// Why 2048: real root filesystems nest a few dozen levels; 2048 levels of one-byte names
/// already make paths longer than Linux's `PATH_MAX` (4096 bytes), which the Linux agent
/// handles by working through directory descriptors, a bounded number of them open
/// whatever the depth. A depth is a `u16` everywhere, with room above the limit.
pub const MAX_TREE_DEPTH: u16 = 2048;
/// Size of the fixed part of a file object's header.
pub const FILE_HEADER_LEN: usize = 24;
/// Size of the fixed part of a dirmeta object.
pub const DIRMETA_HEADER_LEN: usize = 14;
/// Size of the fixed part of a commit object.
pub const COMMIT_HEADER_LEN: usize = 105;
/// Bytes of a commit's optional security-version trailer.
pub const COMMIT_TRAILER_LEN: usize = 8;
/// Largest possible commit object.
pub const MAX_COMMIT_LEN: usize = COMMIT_HEADER_LEN
    + 1
    + MAX_VERSION_LEN
    + 2
    + MAX_SUBJECT_LEN
    + 2
    + MAX_BODY_LEN
    + COMMIT_TRAILER_LEN;

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Permission and set-id bits of `st_mode` (what a tree may carry besides the type).
pub const S_IPERM: u32 = 0o7777;

/// The SHA-256 name of an object. Prints as 64 lowercase hex characters.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectId(pub [u8; ID_LEN]);

impl ObjectId {
    /// The all-zero id, used where a layout has a slot for an id that is absent.
    pub const ZERO: ObjectId = ObjectId([0; ID_LEN]);

    /// The id of the object whose canonical bytes are `bytes`.
    pub fn of(bytes: &[u8]) -> ObjectId {
        ObjectId(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<ObjectId, IdError> {
        let s = s.as_bytes();
        if s.len() != 2 * ID_LEN {
            return Err(IdError::Length(s.len()));
        }
        let mut id = [0u8; ID_LEN];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = (hex_val(s[2 * i])? << 4) | hex_val(s[2 * i + 1])?;
        }
        Ok(ObjectId(id))
    }

    /// True when this id's hex form starts with `prefix` (either case), as a person types a
    /// short id. An empty prefix or one with a non-hex character matches nothing.
    pub fn matches_prefix(&self, prefix: &str) -> bool {
        let p = prefix.as_bytes();
        if p.is_empty() || p.len() > 2 * ID_LEN {
            return false;
        }
        let hex = self.to_hex();
        p.iter()
            .zip(hex.as_str().as_bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    }

    /// The id as 64 lowercase hex characters, without allocating.
    pub fn to_hex(&self) -> HexId {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 2 * ID_LEN];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        HexId(out)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

fn hex_val(c: u8) -> Result<u8, IdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(IdError::NotHex(c)),
    }
}

/// An object id in hex, on the stack.
#[derive(Clone, Copy)]
pub struct HexId([u8; 2 * ID_LEN]);

impl HexId {
    /// The 64 hex characters.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ObjectId {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=str}", self.to_hex().as_str())
    }
}

/// A string that is not an object id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum IdError {
    /// Not 64 characters long.
    Length(usize),
    /// A character that is not a hex digit.
    NotHex(u8),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length(n) => write!(f, "an object id has 64 hex characters, this has {n}"),
            IdError::NotHex(c) => {
                write!(f, "an object id has only hex digits, found byte {c:#04x}")
            }
        }
    }
}

impl core::error::Error for IdError {}

/// The kind of an object. Unknown codes keep their value so that a newer file is reported
/// precisely.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ObjectKind {
    /// A regular file or symlink with its metadata.
    File,
    /// A directory listing.
    DirTree,
    /// A directory's metadata.
    DirMeta,
    /// A commit.
    Commit,
    /// A code this version does not know.
    Unknown(u8),
}

impl ObjectKind {
    /// The kind's wire code.
    pub const fn code(self) -> u8 {
        match self {
            ObjectKind::File => 1,
            ObjectKind::DirTree => 2,
            ObjectKind::DirMeta => 3,
            ObjectKind::Commit => 4,
            ObjectKind::Unknown(c) => c,
        }
    }

    /// The kind for a wire code.
    pub const fn from_code(code: u8) -> ObjectKind {
        match code {
            1 => ObjectKind::File,
            2 => ObjectKind::DirTree,
            3 => ObjectKind::DirMeta,
            4 => ObjectKind::Commit,
            c => ObjectKind::Unknown(c),
        }
    }

    /// The file-name suffix a repository uses for objects of this kind (as OSTree does).
    pub const fn suffix(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::DirTree => "dirtree",
            ObjectKind::DirMeta => "dirmeta",
            ObjectKind::Commit => "commit",
            ObjectKind::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectKind::Unknown(c) => write!(f, "unknown object kind {c}"),
            k => f.write_str(k.suffix()),
        }
    }
}

/// Why an object's bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ObjectError {
    /// The object ends before its fixed header or a declared field does.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        have: usize,
    },
    /// Bytes left over after the last declared field.
    TrailingBytes(usize),
    /// The mode's file type is not allowed for this kind of object.
    BadMode(u32),
    /// A declared length is over its bound.
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its declared length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A directory entry name that is not one path component.
    BadName(NameError),
    /// Directory entries out of order or repeated (they are sorted by name, each once).
    Unsorted,
    /// An entry type code that is not file (1) or directory (2).
    BadEntryType(u8),
    /// A text field that is not UTF-8.
    NotUtf8(&'static str),
    /// A symlink with an empty target, or a target with a NUL.
    BadSymlinkTarget,
    /// A flag byte that is neither 0 nor 1.
    BadFlag(u8),
    /// A commit's security-version trailer holds 0 (a commit at security version 0 has no
    /// trailer, so that each commit has one encoding).
    ZeroSecurityVersion,
    /// Extended attributes out of order, repeated, empty-named or too many.
    BadXattrs,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::Truncated { needed, have } => {
                write!(
                    f,
                    "object is truncated: {needed} bytes needed, {have} present"
                )
            }
            ObjectError::TrailingBytes(n) => write!(f, "object has {n} bytes after its last field"),
            ObjectError::BadMode(m) => write!(f, "mode {m:o} is not allowed for this object"),
            ObjectError::TooLong { field, len, max } => {
                write!(f, "{field} is {len} bytes long, at most {max} are allowed")
            }
            ObjectError::BadName(e) => write!(f, "bad directory entry name: {e}"),
            ObjectError::Unsorted => {
                f.write_str("directory entries are not sorted by name or repeat a name")
            }
            ObjectError::BadEntryType(t) => write!(
                f,
                "directory entry type {t} is neither file (1) nor directory (2)"
            ),
            ObjectError::NotUtf8(field) => write!(f, "{field} is not UTF-8"),
            ObjectError::BadSymlinkTarget => {
                f.write_str("symlink target is empty or holds a NUL byte")
            }
            ObjectError::BadFlag(b) => write!(f, "flag byte {b} is neither 0 nor 1"),
            ObjectError::ZeroSecurityVersion => f.write_str(
                "the commit's security-version trailer is 0; a commit at security version 0 must leave it out",
            ),
            ObjectError::BadXattrs => {
                f.write_str("extended attributes are unsorted, repeated, empty-named or too many")
            }
        }
    }
}

impl core::error::Error for ObjectError {}

/// Why a name is not a single path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NameError {
    /// The empty name.
    Empty,
    /// `.` or `..`.
    Dots,
    /// A `/` inside the name.
    Slash,
    /// A NUL byte inside the name.
    Nul,
    /// Longer than [`MAX_NAME_LEN`].
    TooLong(usize),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the name is empty"),
            NameError::Dots => f.write_str("the name is `.` or `..`"),
            NameError::Slash => f.write_str("the name holds a `/`"),
            NameError::Nul => f.write_str("the name holds a NUL byte"),
            NameError::TooLong(n) => write!(
                f,
                "the name is {n} bytes, at most {MAX_NAME_LEN} are allowed"
            ),
        }
    }
}

impl core::error::Error for NameError {}

/// Checks that `name` is a single path component: not empty, not `.` or `..`, no `/`, no NUL,
/// at most [`MAX_NAME_LEN`] bytes.
pub fn validate_name(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.len() > MAX_NAME_LEN {
        Err(NameError::TooLong(name.len()))
    } else if name == b"." || name == b".." {
        Err(NameError::Dots)
    } else if name.contains(&b'/') {
        Err(NameError::Slash)
    } else if name.contains(&0) {
        Err(NameError::Nul)
    } else {
        Ok(())
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn id_at(b: &[u8], at: usize) -> ObjectId {
    let mut a = [0u8; ID_LEN];
    a.copy_from_slice(&b[at..at + ID_LEN]);
    ObjectId(a)
}
fn need(b: &[u8], n: usize) -> Result<(), ObjectError> {
    if b.len() < n {
        Err(ObjectError::Truncated {
            needed: n,
            have: b.len(),
        })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Extended attributes

/// An extended-attribute block: entries `u8 name_len, name, u16 value_len, value`, sorted by
/// name, each name once, at most [`MAX_XATTRS`] entries and [`MAX_XATTR_BYTES`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Xattrs<'a>(&'a [u8]);

impl<'a> Xattrs<'a> {
    /// No extended attributes.
    pub const EMPTY: Xattrs<'static> = Xattrs(&[]);

    /// Validates a block.
    pub fn parse(block: &'a [u8]) -> Result<Xattrs<'a>, ObjectError> {
        if block.len() > MAX_XATTR_BYTES {
            return Err(ObjectError::TooLong {
                field: "xattr block",
                len: block.len(),
                max: MAX_XATTR_BYTES,
            });
        }
        let mut rest = block;
        let mut prev: Option<&[u8]> = None;
        let mut count = 0;
        while !rest.is_empty() {
            let (name, value, tail) = split_xattr(rest)?;
            if name.is_empty() || name.contains(&0) || prev.is_some_and(|p| p >= name) {
                return Err(ObjectError::BadXattrs);
            }
            let _ = value;
            count += 1;
            if count > MAX_XATTRS {
                return Err(ObjectError::BadXattrs);
            }
            prev = Some(name);
            rest = tail;
        }
        Ok(Xattrs(block))
    }

    /// The raw block, as hashed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `(name, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            // The block was validated by `parse`.
            let (n, v, tail) = split_xattr(rest).ok()?;
            rest = tail;
            Some((n, v))
        })
    }
}

/// An xattr entry's name, its value and the bytes after it.
type XattrSplit<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn split_xattr(b: &[u8]) -> Result<XattrSplit<'_>, ObjectError> {
    need(b, 1)?;
    let nlen = usize::from(b[0]);
    need(b, 1 + nlen + 2)?;
    let vlen = usize::from(le_u16(b, 1 + nlen));
    let end = 1 + nlen + 2 + vlen;
    need(b, end)?;
    Ok((&b[1..1 + nlen], &b[3 + nlen..end], &b[end..]))
}

// ---------------------------------------------------------------------------------------------
// File objects

/// The fixed 24-byte header at the start of a file object.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 4 | mode (`S_IFREG` or `S_IFLNK` plus permission bits) |
/// | 4 | 4 | uid |
/// | 8 | 4 | gid |
/// | 12 | 8 | content size (0 for a symlink) |
/// | 20 | 2 | symlink target length (0 for a regular file) |
/// | 22 | 2 | xattr block length |
///
/// The target, the xattr block and the content follow, in that order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileHeader {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content size in bytes (0 for a symlink).
    pub size: u64,
    /// Length of the symlink target (0 for a regular file).
    pub target_len: u16,
    /// Length of the xattr block.
    pub xattrs_len: u16,
}

impl FileHeader {
    /// Parses and validates the fixed header (the first [`FILE_HEADER_LEN`] bytes).
    pub fn parse(b: &[u8]) -> Result<FileHeader, ObjectError> {
        need(b, FILE_HEADER_LEN)?;
        let h = FileHeader {
            mode: le_u32(b, 0),
            uid: le_u32(b, 4),
            gid: le_u32(b, 8),
            size: le_u64(b, 12),
            target_len: le_u16(b, 20),
            xattrs_len: le_u16(b, 22),
        };
        if h.mode & !(S_IFMT | S_IPERM) != 0 {
            return Err(ObjectError::BadMode(h.mode));
        }
        match h.mode & S_IFMT {
            S_IFREG if h.target_len == 0 => {}
            S_IFLNK if h.size == 0 && h.target_len != 0 => {}
            S_IFLNK => return Err(ObjectError::BadSymlinkTarget),
            _ => return Err(ObjectError::BadMode(h.mode)),
        }
        if usize::from(h.target_len) > MAX_SYMLINK_TARGET {
            return Err(ObjectError::TooLong {
                field: "symlink target",
                len: h.target_len.into(),
                max: MAX_SYMLINK_TARGET,
            });
        }
        if usize::from(h.xattrs_len) > MAX_XATTR_BYTES {
            return Err(ObjectError::TooLong {
                field: "xattr block",
                len: h.xattrs_len.into(),
                max: MAX_XATTR_BYTES,
            });
        }
        Ok(h)
    }

    /// Writes the fixed header into `out[..FILE_HEADER_LEN]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`FILE_HEADER_LEN`].
    pub fn emit(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.mode.to_le_bytes());
        out[4..8].copy_from_slice(&self.uid.to_le_bytes());
        out[8..12].copy_from_slice(&self.gid.to_le_bytes());
        out[12..20].copy_from_slice(&self.size.to_le_bytes());
        out[20..22].copy_from_slice(&self.target_len.to_le_bytes());
        out[22..24].copy_from_slice(&self.xattrs_len.to_le_bytes());
    }

    /// True for a symlink.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Bytes of the header, target and xattrs: where the content starts.
    pub fn meta_len(&self) -> u64 {
        FILE_HEADER_LEN as u64 + u64::from(self.target_len) + u64::from(self.xattrs_len)
    }

    /// Bytes of the whole object.
    pub fn object_len(&self) -> u64 {
        self.meta_len().saturating_add(self.size)
    }
}

/// A whole file object held in memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileObject<'a> {
    /// The fixed header.
    pub header: FileHeader,
    /// The symlink target (empty for a regular file).
    pub target: &'a [u8],
    /// Extended attributes.
    pub xattrs: Xattrs<'a>,
    /// The content (empty for a symlink).
    pub content: &'a [u8],
}

impl<'a> FileObject<'a> {
    /// Parses and validates a whole file object.
    pub fn parse(b: &'a [u8]) -> Result<FileObject<'a>, ObjectError> {
        let header = FileHeader::parse(b)?;
        let meta_end = header.meta_len() as usize;
        need(b, meta_end)?;
        let target = &b[FILE_HEADER_LEN..FILE_HEADER_LEN + usize::from(header.target_len)];
        if header.is_symlink() && target.contains(&0) {
            return Err(ObjectError::BadSymlinkTarget);
        }
        let xattrs = Xattrs::parse(&b[FILE_HEADER_LEN + target.len()..meta_end])?;
        let rest = &b[meta_end..];
        if (rest.len() as u64) < header.size {
            return Err(ObjectError::Truncated {
                needed: meta_end + header.size as usize,
                have: b.len(),
            });
        }
        if rest.len() as u64 > header.size {
            return Err(ObjectError::TrailingBytes(
                rest.len() - header.size as usize,
            ));
        }
        Ok(FileObject {
            header,
            target,
            xattrs,
            content: rest,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Dirmeta objects

/// A directory's metadata: `u32 mode, u32 uid, u32 gid, u16 xattr_len, xattr block`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DirMeta<'a> {
    /// `st_mode` (type `S_IFDIR` plus permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Extended attributes.
    pub xattrs: Xattrs<'a>,
}

impl<'a> DirMeta<'a> {
    /// Parses and validates a whole dirmeta object.
    pub fn parse(b: &'a [u8]) -> Result<DirMeta<'a>, ObjectError> {
        need(b, DIRMETA_HEADER_LEN)?;
        let mode = le_u32(b, 0);
        if mode & S_IFMT != S_IFDIR || mode & !(S_IFMT | S_IPERM) != 0 {
            return Err(ObjectError::BadMode(mode));
        }
        let xlen = usize::from(le_u16(b, 12));
        need(b, DIRMETA_HEADER_LEN + xlen)?;
        if b.len() > DIRMETA_HEADER_LEN + xlen {
            return Err(ObjectError::TrailingBytes(
                b.len() - DIRMETA_HEADER_LEN - xlen,
            ));
        }
        Ok(DirMeta {
            mode,
            uid: le_u32(b, 4),
            gid: le_u32(b, 8),
            xattrs: Xattrs::parse(&b[DIRMETA_HEADER_LEN..])?,
        })
    }

    /// Bytes [`DirMeta::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        DIRMETA_HEADER_LEN + self.xattrs.as_bytes().len()
    }

    /// Writes the object into `out[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`DirMeta::buffer_len`].
    pub fn emit(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.mode.to_le_bytes());
        out[4..8].copy_from_slice(&self.uid.to_le_bytes());
        out[8..12].copy_from_slice(&self.gid.to_le_bytes());
        let x = self.xattrs.as_bytes();
        out[12..14].copy_from_slice(&(x.len() as u16).to_le_bytes());
        out[14..14 + x.len()].copy_from_slice(x);
    }
}

// ---------------------------------------------------------------------------------------------
// Dirtree objects

/// One entry of a directory listing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DirEntry<'a> {
    /// A file or symlink.
    File {
        /// Its name (one path component).
        name: &'a [u8],
        /// Its file object.
        id: ObjectId,
    },
    /// A subdirectory.
    Dir {
        /// Its name (one path component).
        name: &'a [u8],
        /// Its dirtree object.
        tree: ObjectId,
        /// Its dirmeta object.
        meta: ObjectId,
    },
}

impl<'a> DirEntry<'a> {
    /// The entry's name.
    pub fn name(&self) -> &'a [u8] {
        match self {
            DirEntry::File { name, .. } | DirEntry::Dir { name, .. } => name,
        }
    }

    /// Bytes this entry takes in a dirtree object.
    pub fn buffer_len(&self) -> usize {
        match self {
            DirEntry::File { name, .. } => 2 + name.len() + ID_LEN,
            DirEntry::Dir { name, .. } => 2 + name.len() + 2 * ID_LEN,
        }
    }

    /// Writes the entry into `out[..self.buffer_len()]`: `u8 type (1 file, 2 dir), u8
    /// name_len, name, id, [meta id]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`DirEntry::buffer_len`] or the name is longer than 255 bytes.
    pub fn emit(&self, out: &mut [u8]) {
        let name = self.name();
        out[1] = u8::try_from(name.len()).expect("name longer than 255 bytes");
        out[2..2 + name.len()].copy_from_slice(name);
        let at = 2 + name.len();
        match self {
            DirEntry::File { id, .. } => {
                out[0] = 1;
                out[at..at + ID_LEN].copy_from_slice(&id.0);
            }
            DirEntry::Dir { tree, meta, .. } => {
                out[0] = 2;
                out[at..at + ID_LEN].copy_from_slice(&tree.0);
                out[at + ID_LEN..at + 2 * ID_LEN].copy_from_slice(&meta.0);
            }
        }
    }
}

/// Parses one dirtree entry at the start of `b`; returns it and the bytes it took.
///
/// The name is validated ([`validate_name`]); ordering is the caller's to check.
pub fn parse_dir_entry(b: &[u8]) -> Result<(DirEntry<'_>, usize), ObjectError> {
    need(b, 2)?;
    let kind = b[0];
    let nlen = usize::from(b[1]);
    let name_end = 2 + nlen;
    let len = match kind {
        1 => name_end + ID_LEN,
        2 => name_end + 2 * ID_LEN,
        t => return Err(ObjectError::BadEntryType(t)),
    };
    need(b, len)?;
    let name = &b[2..name_end];
    validate_name(name).map_err(ObjectError::BadName)?;
    let entry = if kind == 1 {
        DirEntry::File {
            name,
            id: id_at(b, name_end),
        }
    } else {
        DirEntry::Dir {
            name,
            tree: id_at(b, name_end),
            meta: id_at(b, name_end + ID_LEN),
        }
    };
    Ok((entry, len))
}

/// The bytes a dirtree entry of type `kind` with a name of `name_len` bytes takes, or `None`
/// for an unknown type. Lets a streaming parser know how much to buffer.
pub const fn dir_entry_len(kind: u8, name_len: u8) -> Option<usize> {
    match kind {
        1 => Some(2 + name_len as usize + ID_LEN),
        2 => Some(2 + name_len as usize + 2 * ID_LEN),
        _ => None,
    }
}

/// Largest encoded dirtree entry.
pub const MAX_DIR_ENTRY_LEN: usize = 2 + MAX_NAME_LEN + 2 * ID_LEN;

/// A dirtree object held in memory: `u32 count`, then `count` entries sorted by name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DirTree<'a> {
    count: u32,
    entries: &'a [u8],
}

/// Size of a dirtree's fixed header (the entry count).
pub const DIRTREE_HEADER_LEN: usize = 4;

impl<'a> DirTree<'a> {
    /// Parses and validates a whole dirtree object: every name a single component, names
    /// strictly ascending, no bytes left over.
    pub fn parse(b: &'a [u8]) -> Result<DirTree<'a>, ObjectError> {
        need(b, DIRTREE_HEADER_LEN)?;
        let count = le_u32(b, 0);
        let mut rest = &b[DIRTREE_HEADER_LEN..];
        let mut prev: Option<&[u8]> = None;
        for _ in 0..count {
            let (e, n) = parse_dir_entry(rest)?;
            if prev.is_some_and(|p| p >= e.name()) {
                return Err(ObjectError::Unsorted);
            }
            prev = Some(e.name());
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            return Err(ObjectError::TrailingBytes(rest.len()));
        }
        Ok(DirTree {
            count,
            entries: &b[DIRTREE_HEADER_LEN..],
        })
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True for an empty directory.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = DirEntry<'a>> {
        let mut rest = self.entries;
        core::iter::from_fn(move || {
            let (e, n) = parse_dir_entry(rest).ok()?;
            rest = &rest[n..];
            Some(e)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Commit objects

/// A commit.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 1 | 1 if there is a parent, else 0 |
/// | 1 | 32 | parent id (zero when none) |
/// | 33 | 8 | timestamp, seconds since 1970-01-01 UTC |
/// | 41 | 32 | root dirtree id |
/// | 73 | 32 | root dirmeta id |
/// | 105 | 1 + n | version: `u8` length, UTF-8 |
/// | | 2 + n | subject: `u16` length, UTF-8 |
/// | | 2 + n | body: `u16` length, UTF-8 |
/// | | 0 or 8 | security version, `u64` LE: present only when not 0 |
///
/// The trailer keeps the id of every commit at security version 0 what it was before security
/// versions existed (`docs/FORMAT.md` section 7).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commit<'a> {
    /// The previous commit on the ref, if any.
    pub parent: Option<ObjectId>,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// The root directory's listing.
    pub root_tree: ObjectId,
    /// The root directory's metadata.
    pub root_meta: ObjectId,
    /// A version string, e.g. `9.1`.
    pub version: &'a str,
    /// One-line subject.
    pub subject: &'a str,
    /// Longer description.
    pub body: &'a str,
    /// The anti-rollback security version: a device refuses commits below its floor. 0 (no
    /// trailer) for commits made before security versions existed.
    pub security_version: u64,
}

impl<'a> Commit<'a> {
    /// Parses and validates a whole commit object.
    pub fn parse(b: &'a [u8]) -> Result<Commit<'a>, ObjectError> {
        need(b, COMMIT_HEADER_LEN + 1)?;
        let parent = match b[0] {
            0 => None,
            1 => Some(id_at(b, 1)),
            f => return Err(ObjectError::BadFlag(f)),
        };
        let vlen = usize::from(b[COMMIT_HEADER_LEN]);
        let mut at = COMMIT_HEADER_LEN + 1;
        need(b, at + vlen)?;
        let version =
            core::str::from_utf8(&b[at..at + vlen]).map_err(|_| ObjectError::NotUtf8("version"))?;
        at += vlen;
        let (subject, next) = text16(b, at, "subject", MAX_SUBJECT_LEN)?;
        let (body, next) = text16(b, next, "body", MAX_BODY_LEN)?;
        let security_version = match b.len() - next {
            0 => 0,
            COMMIT_TRAILER_LEN => match le_u64(b, next) {
                0 => return Err(ObjectError::ZeroSecurityVersion),
                v => v,
            },
            n if n < COMMIT_TRAILER_LEN => return Err(ObjectError::TrailingBytes(n)),
            n => return Err(ObjectError::TrailingBytes(n - COMMIT_TRAILER_LEN)),
        };
        Ok(Commit {
            parent,
            timestamp: le_u64(b, 33),
            root_tree: id_at(b, 41),
            root_meta: id_at(b, 73),
            version,
            subject,
            body,
            security_version,
        })
    }

    /// Bytes [`Commit::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let trailer = if self.security_version == 0 {
            0
        } else {
            COMMIT_TRAILER_LEN
        };
        COMMIT_HEADER_LEN
            + 1
            + self.version.len()
            + 2
            + self.subject.len()
            + 2
            + self.body.len()
            + trailer
    }

    /// Checks the bounds [`Commit::emit`] relies on.
    pub fn check(&self) -> Result<(), ObjectError> {
        for (field, len, max) in [
            ("version", self.version.len(), MAX_VERSION_LEN),
            ("subject", self.subject.len(), MAX_SUBJECT_LEN),
            ("body", self.body.len(), MAX_BODY_LEN),
        ] {
            if len > max {
                return Err(ObjectError::TooLong { field, len, max });
            }
        }
        Ok(())
    }

    /// Writes the commit into `out[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`Commit::buffer_len`] or [`Commit::check`] fails.
    pub fn emit(&self, out: &mut [u8]) {
        self.check().expect("commit fields over their bounds");
        out[0] = u8::from(self.parent.is_some());
        out[1..33].copy_from_slice(&self.parent.unwrap_or(ObjectId::ZERO).0);
        out[33..41].copy_from_slice(&self.timestamp.to_le_bytes());
        out[41..73].copy_from_slice(&self.root_tree.0);
        out[73..105].copy_from_slice(&self.root_meta.0);
        let mut at = COMMIT_HEADER_LEN;
        out[at] = self.version.len() as u8;
        at += 1;
        out[at..at + self.version.len()].copy_from_slice(self.version.as_bytes());
        at += self.version.len();
        for text in [self.subject, self.body] {
            out[at..at + 2].copy_from_slice(&(text.len() as u16).to_le_bytes());
            at += 2;
            out[at..at + text.len()].copy_from_slice(text.as_bytes());
            at += text.len();
        }
        if self.security_version != 0 {
            out[at..at + COMMIT_TRAILER_LEN].copy_from_slice(&self.security_version.to_le_bytes());
        }
    }
}

fn text16<'a>(
    b: &'a [u8],
    at: usize,
    field: &'static str,
    max: usize,
) -> Result<(&'a str, usize), ObjectError> {
    need(b, at + 2)?;
    let len = usize::from(le_u16(b, at));
    if len > max {
        return Err(ObjectError::TooLong { field, len, max });
    }
    let start = at + 2;
    need(b, start + len)?;
    let s =
        core::str::from_utf8(&b[start..start + len]).map_err(|_| ObjectError::NotUtf8(field))?;
    Ok((s, start + len))
}

/// Reads the root dirtree and dirmeta ids from the fixed part of a commit object (its first
/// [`COMMIT_HEADER_LEN`] bytes), as a streaming reader that does not hold the whole commit
/// needs.
pub fn commit_roots(header: &[u8; COMMIT_HEADER_LEN]) -> (ObjectId, ObjectId) {
    (id_at(header, 41), id_at(header, 73))
}

// ---------------------------------------------------------------------------------------------
// Whole objects into a `Vec` (feature `std`)

#[cfg(feature = "std")]
mod encode {
    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// Encodes a regular file object without xattrs: type `S_IFREG` plus the permission bits
    /// of `perm` (other bits are ignored), the owner and the content.
    pub fn file_object(perm: u32, uid: u32, gid: u32, content: &[u8]) -> Vec<u8> {
        let header = FileHeader {
            mode: S_IFREG | (perm & S_IPERM),
            uid,
            gid,
            size: content.len() as u64,
            target_len: 0,
            xattrs_len: 0,
        };
        let mut b = vec![0u8; FILE_HEADER_LEN];
        header.emit(&mut b);
        b.extend_from_slice(content);
        b
    }

    /// Encodes a symlink object without xattrs (mode `S_IFLNK | 0o777`).
    ///
    /// Fails with [`ObjectError::BadSymlinkTarget`] for an empty target or one holding a NUL,
    /// and [`ObjectError::TooLong`] for one over [`MAX_SYMLINK_TARGET`] bytes.
    pub fn symlink_object(uid: u32, gid: u32, target: &[u8]) -> Result<Vec<u8>, ObjectError> {
        if target.len() > MAX_SYMLINK_TARGET {
            return Err(ObjectError::TooLong {
                field: "symlink target",
                len: target.len(),
                max: MAX_SYMLINK_TARGET,
            });
        }
        if target.is_empty() || target.contains(&0) {
            return Err(ObjectError::BadSymlinkTarget);
        }
        let header = FileHeader {
            mode: S_IFLNK | 0o777,
            uid,
            gid,
            size: 0,
            target_len: target.len() as u16,
            xattrs_len: 0,
        };
        let mut b = vec![0u8; FILE_HEADER_LEN];
        header.emit(&mut b);
        b.extend_from_slice(target);
        Ok(b)
    }

    /// Encodes a dirtree object from entries in any order: they are sorted by name, and each
    /// name is checked to be one path component ([`ObjectError::BadName`]) and to occur once
    /// ([`ObjectError::Unsorted`]), so the result always parses.
    pub fn dirtree_object(entries: &[DirEntry<'_>]) -> Result<Vec<u8>, ObjectError> {
        let mut sorted = entries.to_vec();
        sorted.sort_by(|a, b| a.name().cmp(b.name()));
        for (i, e) in sorted.iter().enumerate() {
            validate_name(e.name()).map_err(ObjectError::BadName)?;
            if i > 0 && sorted[i - 1].name() == e.name() {
                return Err(ObjectError::Unsorted);
            }
        }
        if u32::try_from(sorted.len()).is_err() {
            return Err(ObjectError::TooLong {
                field: "dirtree",
                len: sorted.len(),
                max: u32::MAX as usize,
            });
        }
        Ok(dirtree_object_unchecked(&sorted))
    }

    /// Encodes a dirtree object from entries exactly in the order given, checking nothing: for
    /// tests that need a dirtree a parser must refuse (unsorted, repeated or bad names).
    /// [`dirtree_object`] is the checked twin.
    ///
    /// # Panics
    /// If a name is longer than 255 bytes, as [`DirEntry::emit`].
    pub fn dirtree_object_unchecked(entries: &[DirEntry<'_>]) -> Vec<u8> {
        let mut b = (entries.len() as u32).to_le_bytes().to_vec();
        for e in entries {
            let at = b.len();
            b.resize(at + e.buffer_len(), 0);
            e.emit(&mut b[at..]);
        }
        b
    }

    impl DirMeta<'_> {
        /// The encoded object ([`DirMeta::emit`] into a `Vec`).
        pub fn to_vec(&self) -> Vec<u8> {
            let mut b = vec![0u8; self.buffer_len()];
            self.emit(&mut b);
            b
        }
    }

    impl Commit<'_> {
        /// The encoded object ([`Commit::emit`] into a `Vec`), or why a field is over its bound
        /// ([`Commit::check`]).
        pub fn to_vec(&self) -> Result<Vec<u8>, ObjectError> {
            self.check()?;
            let mut b = vec![0u8; self.buffer_len()];
            self.emit(&mut b);
            Ok(b)
        }
    }
}

#[cfg(feature = "std")]
pub use encode::{dirtree_object, dirtree_object_unchecked, file_object, symlink_object};

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn id_hex_round_trip_and_prefix() {
        let id = ObjectId::of(b"hello");
        let hex = id.to_hex();
        assert_eq!(
            hex.as_str(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(ObjectId::from_hex(hex.as_str()), Ok(id));
        assert_eq!(ObjectId::from_hex(&hex.as_str().to_uppercase()), Ok(id));
        assert!(id.matches_prefix("2cf24d"));
        assert!(id.matches_prefix("2CF24D"));
        assert!(!id.matches_prefix("2cf24e"));
        assert!(!id.matches_prefix(""));
        assert_eq!(ObjectId::from_hex("abc"), Err(IdError::Length(3)));
        assert!(matches!(
            ObjectId::from_hex(&"g".repeat(64)),
            Err(IdError::NotHex(b'g'))
        ));
    }

    #[test]
    fn names() {
        assert_eq!(validate_name(b"ok.txt"), Ok(()));
        assert_eq!(validate_name(b".hidden"), Ok(()));
        assert_eq!(validate_name(b".."), Err(NameError::Dots));
        assert_eq!(validate_name(b"."), Err(NameError::Dots));
        assert_eq!(validate_name(b"a/b"), Err(NameError::Slash));
        assert_eq!(validate_name(b"a\0b"), Err(NameError::Nul));
        assert_eq!(validate_name(b""), Err(NameError::Empty));
        assert_eq!(validate_name(&[b'x'; 256]), Err(NameError::TooLong(256)));
    }

    static FILE_FIXTURE: [u8; 24 + 2 + 10 + 3] = [
        0xed, 0x81, 0, 0, // mode 0o100755
        0, 0, 0, 0, // uid
        0, 0, 0, 0, // gid
        3, 0, 0, 0, 0, 0, 0, 0, // size 3
        0, 0, // no target
        12, 0, // xattrs 12 bytes
        // xattr "user.a" = "xyz"... 1 + 6 + 2 + 3 = 12
        6, b'u', b's', b'e', b'r', b'.', b'a', 3, 0, b'x', b'y', b'z', //
        b'a', b'b', b'c',
    ];

    #[test]
    fn file_deconstruct() {
        // The fixture's xattr block is 12 bytes; the array type above has room for 39.
        let f = FileObject::parse(&FILE_FIXTURE).unwrap();
        assert_eq!(f.header.mode, 0o100755);
        assert_eq!(f.header.size, 3);
        assert_eq!(f.content, b"abc");
        let x: heapless::Vec<(&[u8], &[u8]), 4> = f.xattrs.iter().collect();
        assert_eq!(&x[..], &[(&b"user.a"[..], &b"xyz"[..])]);
    }

    #[test]
    fn file_construct() {
        let h = FileHeader {
            mode: 0o100755,
            uid: 0,
            gid: 0,
            size: 3,
            target_len: 0,
            xattrs_len: 12,
        };
        let mut out = [0u8; FILE_HEADER_LEN];
        h.emit(&mut out);
        assert_eq!(&out[..], &FILE_FIXTURE[..FILE_HEADER_LEN]);
    }

    #[test]
    fn file_bad() {
        let mut b = FILE_FIXTURE;
        b[1] = 0x61; // 0o060755: block device
        assert!(matches!(
            FileObject::parse(&b),
            Err(ObjectError::BadMode(_))
        ));
        assert!(matches!(
            FileObject::parse(&FILE_FIXTURE[..30]),
            Err(ObjectError::Truncated { .. })
        ));
        let mut long = [0u8; 40];
        long[..39].copy_from_slice(&FILE_FIXTURE);
        assert_eq!(FileObject::parse(&long), Err(ObjectError::TrailingBytes(1)));
        // symlink with content
        let h = FileHeader {
            mode: S_IFLNK | 0o777,
            uid: 0,
            gid: 0,
            size: 1,
            target_len: 1,
            xattrs_len: 0,
        };
        let mut out = [0u8; FILE_HEADER_LEN];
        h.emit(&mut out);
        assert_eq!(FileHeader::parse(&out), Err(ObjectError::BadSymlinkTarget));
    }

    #[test]
    fn dirtree_round_trip_and_validation() {
        let a = DirEntry::File {
            name: b"a",
            id: ObjectId([1; 32]),
        };
        let b = DirEntry::Dir {
            name: b"b",
            tree: ObjectId([2; 32]),
            meta: ObjectId([3; 32]),
        };
        let mut buf = [0u8; 4 + 35 + 67];
        buf[..4].copy_from_slice(&2u32.to_le_bytes());
        a.emit(&mut buf[4..]);
        b.emit(&mut buf[4 + a.buffer_len()..]);
        let t = DirTree::parse(&buf).unwrap();
        assert_eq!(t.len(), 2);
        let v: heapless::Vec<DirEntry, 2> = t.entries().collect();
        assert_eq!(&v[..], &[a, b]);

        // Swap order: unsorted.
        let mut swapped = [0u8; 4 + 35 + 67];
        swapped[..4].copy_from_slice(&2u32.to_le_bytes());
        b.emit(&mut swapped[4..]);
        a.emit(&mut swapped[4 + b.buffer_len()..]);
        assert_eq!(DirTree::parse(&swapped), Err(ObjectError::Unsorted));

        for bad in [&b".."[..], b"a/b", b"a\0"] {
            let e = DirEntry::File {
                name: bad,
                id: ObjectId::ZERO,
            };
            let mut one = [0u8; 4 + 2 + 3 + 32];
            one[..4].copy_from_slice(&1u32.to_le_bytes());
            e.emit(&mut one[4..]);
            let n = 4 + e.buffer_len();
            assert!(
                matches!(DirTree::parse(&one[..n]), Err(ObjectError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            DirTree::parse(&buf[..50]),
            Err(ObjectError::Truncated { .. })
        ));
    }

    #[test]
    fn commit_round_trip() {
        let c = Commit {
            parent: Some(ObjectId([9; 32])),
            timestamp: 1_700_000_000,
            root_tree: ObjectId([1; 32]),
            root_meta: ObjectId([2; 32]),
            version: "9.1",
            subject: "Update",
            body: "",
            security_version: 0,
        };
        let mut buf = [0u8; 200];
        let n = c.buffer_len();
        c.emit(&mut buf[..n]);
        assert_eq!(Commit::parse(&buf[..n]), Ok(c));
        let mut header = [0u8; COMMIT_HEADER_LEN];
        header.copy_from_slice(&buf[..COMMIT_HEADER_LEN]);
        assert_eq!(commit_roots(&header), (c.root_tree, c.root_meta));
        assert!(matches!(
            Commit::parse(&buf[..n - 1]),
            Err(ObjectError::Truncated { .. })
        ));
        assert_eq!(
            Commit::parse(&buf[..n + 1]),
            Err(ObjectError::TrailingBytes(1))
        );
        buf[0] = 2;
        assert_eq!(Commit::parse(&buf[..n]), Err(ObjectError::BadFlag(2)));
    }

    #[test]
    fn commit_security_version_is_an_optional_trailer() {
        let c0 = Commit {
            parent: None,
            timestamp: 7,
            root_tree: ObjectId([1; 32]),
            root_meta: ObjectId([2; 32]),
            version: "1",
            subject: "s",
            body: "b",
            security_version: 0,
        };
        let mut buf = [0u8; 200];
        let n0 = c0.buffer_len();
        c0.emit(&mut buf[..n0]);
        let v0 = buf[..n0].to_vec();
        // Security version 0: the encoding (and so the id) of a commit without the field.
        assert_eq!(n0, COMMIT_HEADER_LEN + 1 + 1 + 2 + 1 + 2 + 1);
        for sv in [1u64, 3, u64::MAX] {
            let c = Commit {
                security_version: sv,
                ..c0
            };
            let n = c.buffer_len();
            assert_eq!(n, n0 + COMMIT_TRAILER_LEN);
            let mut buf = [0u8; 200];
            c.emit(&mut buf[..n]);
            assert_eq!(&buf[..n0], &v0[..], "the trailer only appends");
            assert_eq!(&buf[n0..n], &sv.to_le_bytes());
            assert_eq!(Commit::parse(&buf[..n]), Ok(c));
            assert_eq!(
                Commit::parse(&buf[..n + 1]),
                Err(ObjectError::TrailingBytes(1))
            );
        }
        let mut zero = v0.clone();
        zero.extend_from_slice(&[0; 8]);
        assert_eq!(Commit::parse(&zero), Err(ObjectError::ZeroSecurityVersion));
        for extra in 1..COMMIT_TRAILER_LEN {
            let mut short = v0.clone();
            short.extend(core::iter::repeat_n(1, extra));
            assert_eq!(
                Commit::parse(&short),
                Err(ObjectError::TrailingBytes(extra))
            );
        }
    }

    #[test]
    fn dirmeta_round_trip() {
        let m = DirMeta {
            mode: S_IFDIR | 0o755,
            uid: 1,
            gid: 2,
            xattrs: Xattrs::EMPTY,
        };
        let mut buf = [0u8; DIRMETA_HEADER_LEN];
        m.emit(&mut buf);
        assert_eq!(DirMeta::parse(&buf), Ok(m));
        buf[1] = 0x81;
        assert!(matches!(DirMeta::parse(&buf), Err(ObjectError::BadMode(_))));
    }

    #[cfg(feature = "std")]
    #[test]
    fn std_encoders_round_trip() {
        let f = file_object(0o100_640, 1, 2, b"abc");
        let o = FileObject::parse(&f).unwrap();
        assert_eq!(
            (o.header.mode, o.header.uid, o.header.gid),
            (S_IFREG | 0o640, 1, 2)
        );
        assert_eq!(o.content, b"abc");

        let l = symlink_object(3, 4, b"../x").unwrap();
        let o = FileObject::parse(&l).unwrap();
        assert!(o.header.is_symlink());
        assert_eq!((o.header.uid, o.header.gid, o.target), (3, 4, &b"../x"[..]));
        assert_eq!(
            symlink_object(0, 0, b""),
            Err(ObjectError::BadSymlinkTarget)
        );
        assert_eq!(
            symlink_object(0, 0, b"a\0"),
            Err(ObjectError::BadSymlinkTarget)
        );
        assert!(matches!(
            symlink_object(0, 0, &[b'x'; MAX_SYMLINK_TARGET + 1]),
            Err(ObjectError::TooLong { .. })
        ));

        let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
        let unsorted = [
            DirEntry::Dir {
                name: b"z",
                tree: a,
                meta: b,
            },
            DirEntry::File { name: b"m", id: a },
        ];
        let t = dirtree_object(&unsorted).unwrap();
        let parsed: std::vec::Vec<_> = DirTree::parse(&t).unwrap().entries().collect();
        assert_eq!(parsed, [unsorted[1], unsorted[0]]);
        assert_eq!(
            DirTree::parse(&dirtree_object_unchecked(&unsorted)),
            Err(ObjectError::Unsorted)
        );
        assert_eq!(dirtree_object(&[]).unwrap(), 0u32.to_le_bytes());
        let twice = [
            DirEntry::File { name: b"m", id: a },
            DirEntry::File { name: b"m", id: b },
        ];
        assert_eq!(dirtree_object(&twice), Err(ObjectError::Unsorted));
        assert_eq!(
            dirtree_object(&[DirEntry::File { name: b"..", id: a }]),
            Err(ObjectError::BadName(NameError::Dots))
        );

        let m = DirMeta {
            mode: S_IFDIR | 0o700,
            uid: 5,
            gid: 6,
            xattrs: Xattrs::EMPTY,
        };
        assert_eq!(DirMeta::parse(&m.to_vec()), Ok(m));

        let c = Commit {
            parent: Some(a),
            timestamp: 9,
            root_tree: a,
            root_meta: b,
            version: "1.2",
            subject: "s",
            body: "b",
            security_version: 0,
        };
        assert_eq!(Commit::parse(&c.to_vec().unwrap()), Ok(c));
        let long = "v".repeat(MAX_VERSION_LEN + 1);
        assert!(matches!(
            Commit {
                version: &long,
                ..c
            }
            .to_vec(),
            Err(ObjectError::TooLong {
                field: "version",
                ..
            })
        ));
    }
}
