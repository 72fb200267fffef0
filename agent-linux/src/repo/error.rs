//! [`RepoError`], why a repository operation failed, and the [`io_err`] mapper.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use agent_core::object::{ObjectError, ObjectId, ObjectKind};

use super::{
    CONFIG_MAGIC, LEGACY_REPO_MODE, MAX_METADATA_OBJECT, MAX_TREE_DEPTH, REPO_MODE, REPO_VERSION,
};

/// Why a repository operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RepoError {
    /// A filesystem call failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory has no `config` of an `ecu-agent` repository.
    NotARepo(PathBuf),
    /// A directory of the sysroot or repository is a symlink, not a directory, or owned by
    /// another user: someone planted it, and following it could write or delete outside.
    Untrusted {
        /// The directory.
        path: PathBuf,
        /// What it is instead ("a symbolic link", "not a directory", "owned by uid 1000").
        what: String,
    },
    /// The directory is not empty and not a repository, so `init` will not touch it.
    NotEmpty(PathBuf),
    /// `config` names a layout or version this build does not know.
    UnsupportedRepo {
        /// The repository.
        path: PathBuf,
        /// Its first line.
        found: String,
    },
    /// A ref name that is not `component/component/...` of `[A-Za-z0-9._-]`.
    BadRefName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A ref file that does not hold an object id.
    BadRefFile(PathBuf),
    /// No ref, commit id or unique id prefix by this name.
    UnknownRevision(String),
    /// A short id that matches more than one commit.
    AmbiguousRevision {
        /// The prefix given.
        rev: String,
        /// How many commits it matches.
        matches: usize,
    },
    /// An object the operation needs is not in the repository.
    MissingObject {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// An object's bytes do not parse.
    CorruptObject {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Why.
        error: ObjectError,
    },
    /// An object's bytes do not hash to its name.
    HashMismatch {
        /// Its kind.
        kind: ObjectKind,
        /// The name it is stored under.
        id: ObjectId,
        /// The hash of what is stored.
        found: ObjectId,
    },
    /// A metadata object larger than [`MAX_METADATA_OBJECT`].
    ObjectTooLarge {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Its size.
        len: u64,
    },
    /// A tree nested deeper than [`MAX_TREE_DEPTH`].
    TooDeep(ObjectId),
    /// An object kind this repository cannot hold.
    UnknownKind(ObjectKind),
    /// A commit's detached signature does not verify.
    BadSignature(PathBuf),
    /// The installer called the store out of sequence (a bug in the caller).
    Sequence(&'static str),
    /// An object's bytes were more or fewer than announced.
    ObjectLength {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        found: u64,
    },
    /// The commit to record is not the one the install wrote.
    CommitMismatch {
        /// The id asked for.
        expected: ObjectId,
        /// The commit staged, if any.
        staged: Option<ObjectId>,
    },
    /// A new commit's security version is below its parent's (security versions never go
    /// down along a ref).
    SecurityVersionBelowParent {
        /// The security version asked for.
        given: u64,
        /// The parent commit.
        parent: ObjectId,
        /// The parent's security version.
        parent_security_version: u64,
    },
    /// The filesystem cannot hold what the update declares.
    NoSpace {
        /// The repository's directory.
        path: PathBuf,
        /// Bytes the update's parts decode to.
        needed: u64,
        /// Bytes available to the agent on that filesystem (statvfs).
        available: u64,
    },
}

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoError::Io { what, path, source } => write!(f, "cannot {what} {}: {source}", path.display()),
            RepoError::Untrusted { path, what } => write!(
                f,
                "refused: {} is {what}, but the sysroot's and repository's directories must be real directories owned by uid {} (the user running the agent); nothing was changed. Move it away and put the real directory back (or remove it to have it recreated)",
                path.display(),
                rustix::process::geteuid().as_raw()
            ),
            RepoError::NotARepo(p) => {
                write!(f, "{} is not an ecu-agent repository (no config); create one with `ecu-agent init`", p.display())
            }
            RepoError::NotEmpty(p) => {
                write!(f, "{} exists, is not empty and is not a repository; pick an empty or new directory", p.display())
            }
            RepoError::UnsupportedRepo { path, found } => write!(
                f,
                "{} is a repository of an unsupported kind ({found:?}); this build reads `{CONFIG_MAGIC} {REPO_VERSION}` mode {REPO_MODE} (or {LEGACY_REPO_MODE}, which it migrates)",
                path.display()
            ),
            RepoError::BadRefName { name, reason } => write!(f, "ref name {name:?} is not allowed: {reason}"),
            RepoError::BadRefFile(p) => write!(f, "ref file {} does not hold a commit id; repair or delete it", p.display()),
            RepoError::UnknownRevision(r) => {
                write!(f, "{r:?} is neither a ref nor a commit in this repository (see `ecu-agent refs`)")
            }
            RepoError::AmbiguousRevision { rev, matches } => {
                write!(f, "{rev:?} matches {matches} commits; give more characters of the id")
            }
            RepoError::MissingObject { kind, id } => write!(f, "{kind} object {id} is not in the repository"),
            RepoError::CorruptObject { kind, id, error } => write!(f, "{kind} object {id} is corrupt: {error}"),
            RepoError::HashMismatch { kind, id, found } => {
                write!(f, "{kind} object {id} is corrupt: its bytes hash to {found}")
            }
            RepoError::ObjectTooLarge { kind, id, len } => {
                write!(f, "{kind} object {id} is {len} bytes, more than the {MAX_METADATA_OBJECT} allowed")
            }
            RepoError::TooDeep(id) => write!(f, "tree {id} is nested deeper than {MAX_TREE_DEPTH} directories"),
            RepoError::UnknownKind(k) => write!(f, "a repository cannot hold objects of {k}"),
            RepoError::BadSignature(p) => {
                write!(f, "commit signature {} does not verify; the commit or the signature was altered", p.display())
            }
            RepoError::Sequence(s) => write!(f, "store called out of sequence: {s} (this is a bug)"),
            RepoError::ObjectLength { kind, id, expected, found } => {
                write!(f, "{kind} object {id} was announced as {expected} bytes but {found} arrived")
            }
            RepoError::CommitMismatch { expected, staged: Some(s) } => {
                write!(f, "asked to record commit {expected} but the install staged {s} (this is a bug)")
            }
            RepoError::CommitMismatch { expected, staged: None } => {
                write!(f, "asked to record commit {expected} but the install staged no commit object")
            }
            RepoError::SecurityVersionBelowParent { given, parent, parent_security_version } => write!(
                f,
                "security version {given} is below {parent_security_version}, the security version of the parent commit {parent}; security versions never go down along a ref: give {parent_security_version} or more"
            ),
            RepoError::NoSpace { path, needed, available } => write!(
                f,
                "refused before writing anything: the update declares {needed} bytes of objects but the filesystem holding {} has {available} bytes available; free {} bytes (`ecu-agent cleanup` removes what nothing needs) and install again",
                path.display(),
                needed.saturating_sub(*available)
            ),
        }
    }
}

/// Transparent to the errors its messages include (as every error of this crate): `source()`
/// is their own source, so that each message appears once in a chain.
impl std::error::Error for RepoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RepoError::Io { source, .. } => source.source(),
            RepoError::CorruptObject { error, .. } => error.source(),
            _ => None,
        }
    }
}

/// Shorthand for an [`RepoError::Io`] mapper.
pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> RepoError + 'a {
    move |source| RepoError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
