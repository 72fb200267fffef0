//! Why an update could not be written: [`WriteError`].

use std::io;

use core::fmt;

use crate::object::{ObjectId, MAX_SUBJECT_LEN, MAX_VERSION_LEN};
use crate::wire::{
    MAX_PARTS, MAX_REF_LEN, MAX_SUPERBLOCK_LEN, MIN_DICTIONARY, PATCH_FORMAT_VERSION,
    REUSE_ENTRIES_FORMAT_VERSION,
};

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
    /// The commit object's timestamp is not the one given to [`UpdateWriter::new`](super::UpdateWriter::new).
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
    /// The format version asked for ([`UpdateWriter::format_version`](super::UpdateWriter::format_version)) has no patch records
    /// (version 3 on), but the update has some.
    PatchNeedsV3 {
        /// The version asked for.
        version: u16,
    },
    /// The format version asked for ([`UpdateWriter::format_version`](super::UpdateWriter::format_version)) has no reuse-entries
    /// records (version 5 on), but the update has some.
    ReuseEntriesNeedsV5 {
        /// The version asked for.
        version: u16,
    },
    /// [`UpdateWriter::max_dictionary`](super::UpdateWriter::max_dictionary) is below the 4 KiB every codec needs.
    DictionaryTooSmall(u64),
    /// The format version asked for ([`UpdateWriter::format_version`](super::UpdateWriter::format_version)) cannot carry the
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
            WriteError::ReuseEntriesNeedsV5 { version } => write!(
                f,
                "format version {version} has no reuse-entries records; write format version {REUSE_ENTRIES_FORMAT_VERSION} or later, or reuse each object by its own record"
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
                "format version {version} cannot carry this update (security version {security_version}, or xz parts, or a dictionary other than 32 KiB); write format version {PATCH_FORMAT_VERSION} or later"
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
