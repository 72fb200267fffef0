//! What an install reports: its [`Progress`] after each feed, whether a failed part is
//! damaged ([`PartCheck`]), what [`Installer::finish`] installed ([`Installed`]) and what the
//! verified superblock says the file installs ([`UpdateInfo`]).

#[cfg(doc)]
use super::{Checkpoint, Installer, Policy, INFO_SUBJECT_LEN};
use crate::object::ObjectId;
use crate::wire::MAX_REF_LEN;

/// How far an install has come. Returned by every successful [`Installer::feed`].
#[must_use = "a caller should at least look at `done` to know when to call `finish`"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Progress {
    /// Bytes of the file consumed so far.
    pub bytes: u64,
    /// Bytes of the whole file, once the superblock is verified.
    pub bytes_total: Option<u64>,
    /// Operations completed (objects written and verified, or reused).
    pub objects: u32,
    /// Operations the file declares (0 until the superblock is verified).
    pub objects_total: u32,
    /// Parts completed and verified.
    pub parts: u32,
    /// Parts in the file (0 until the superblock is verified).
    pub parts_total: u32,
    /// Everything is verified: call [`Installer::finish`] to commit. More bytes are an error.
    pub done: bool,
    /// The install resumed from a [`Checkpoint`]: the file offset of the first part it still
    /// needs. Until [`Progress::bytes`] reaches it, fed bytes are skipped unread; a caller
    /// that can seek calls [`Installer::skip`] and continues from this offset instead.
    pub resume_offset: Option<u64>,
}

/// Whether a part of a file that failed is damaged ([`Installer::check_part`]).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PartCheck {
    /// The rest of the part is needed: feed the file's next bytes.
    NeedMore,
    /// The part matches its SHA-256 (or the failure was not inside a part): the failure is what
    /// the file holds or what the store did.
    Intact,
    /// The part's bytes do not hash to the SHA-256 its superblock gives: the file is damaged,
    /// and a failure inside the part came from the damage.
    Damaged {
        /// The part (0-based).
        part: u32,
        /// Its first byte in the file.
        start: u64,
        /// The byte after its last.
        end: u64,
    },
}

/// How far a part's SHA-256 got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PartHashing {
    /// No part is being hashed, or the last one matched.
    Idle,
    /// Bytes of the current part are being hashed.
    Open,
    /// The current part's bytes do not match its SHA-256.
    Mismatch,
}

/// What [`Installer::finish`] installed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Installed {
    /// The commit now recorded on the ref.
    pub commit: ObjectId,
    /// The source commit, for a delta.
    pub from: Option<ObjectId>,
    /// The ref the commit was recorded on.
    pub ref_name: heapless::String<MAX_REF_LEN>,
    /// The commit's security version (0 for a format-version-1 file). A device raises its
    /// anti-rollback floor to it once the commit has booted and been marked good, not before.
    pub security_version: u64,
}

/// What a file installs, as its verified superblock says ([`Installer::superblock_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpdateInfo<'a> {
    /// The ref the update moves.
    pub ref_name: &'a str,
    /// The source commit of a delta; `None` for a from-scratch file.
    pub from: Option<ObjectId>,
    /// The commit the update installs.
    pub to: ObjectId,
    /// The target commit's timestamp (seconds since the epoch, UTC).
    pub timestamp: u64,
    /// The target commit's version string.
    pub version: &'a str,
    /// The target commit's subject, its first [`INFO_SUBJECT_LEN`] bytes at most.
    pub subject: &'a str,
    /// Operations in the file.
    pub objects: u32,
    /// Parts in the file.
    pub parts: u32,
    /// Bytes of the whole file.
    pub bytes: u64,
    /// The target commit's security version (0 for a format-version-1 file); the installer
    /// checks that the commit object carries the same.
    pub security_version: u64,
    /// The file's format version (1 or 2).
    pub format_version: u16,
    /// Whether the file carries a signature.
    pub signed: bool,
    /// Whether the signature was verified against a trusted key (false for an unsigned file,
    /// which only installs under [`Policy::allow_unsigned`]).
    pub verified: bool,
}
