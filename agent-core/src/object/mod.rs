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

mod commit;
mod dir;
#[cfg(feature = "std")]
mod encode;
mod file;
mod id;
mod xattrs;

pub use commit::{commit_roots, Commit};
pub use dir::{
    dir_entry_len, parse_dir_entry, DirEntry, DirMeta, DirTree, DIRTREE_HEADER_LEN,
    MAX_DIR_ENTRY_LEN,
};
#[cfg(feature = "std")]
pub use encode::{dirtree_object, dirtree_object_unchecked, file_object, symlink_object};
pub use file::{FileHeader, FileObject};
pub use id::{HexId, IdError, ObjectId};
pub use xattrs::Xattrs;

use core::fmt;

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

code_enum! {
    /// The kind of an object. Unknown codes keep their value so that a newer file is reported
    /// precisely.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub enum ObjectKind ("object kind") {
        /// A regular file or symlink with its metadata.
        File = 1 => "file",
        /// A directory listing.
        DirTree = 2 => "dirtree",
        /// A directory's metadata.
        DirMeta = 3 => "dirmeta",
        /// A commit.
        Commit = 4 => "commit",
    }
}

impl ObjectKind {
    /// The file-name suffix a repository uses for objects of this kind (as OSTree does).
    pub const fn suffix(self) -> &'static str {
        match self.name() {
            Some(name) => name,
            None => "unknown",
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

#[cfg(test)]
mod test {
    use super::*;

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
}
