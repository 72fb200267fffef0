//! [`ImportError`], why an import failed, and the mapping of a tree builder's errors to it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use agent_core::object::{self, ObjectError, ObjectId};

use crate::repo::{RepoError, MAX_TREE_DEPTH};
use crate::tree::BuildError;

use super::source::{OstreeCommit, OstreeKind};

/// Why an import failed. Nothing of ours moved.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading the OSTree repository failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory has no OSTree `config` and `objects/`.
    NotOstreeRepo(PathBuf),
    /// The repository's mode is one this importer does not read.
    UnsupportedMode {
        /// The repository.
        path: PathBuf,
        /// Its `mode=`.
        mode: String,
    },
    /// No `refs/heads/<name>`.
    NoSuchRef {
        /// The repository.
        repo: PathBuf,
        /// The ref asked for.
        name: String,
    },
    /// The repository has no ref at all under `refs/heads`.
    NoRefs(PathBuf),
    /// A ref file does not hold a checksum.
    BadRef {
        /// The ref.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// A FIFO, device, directory or symlink where the repository keeps a file.
    NotAFile(PathBuf),
    /// A file of the repository is over its bound.
    TooLarge {
        /// What it is.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The bound.
        max: u64,
    },
    /// An object a commit or dirtree names is not in the repository.
    MissingObject {
        /// Its kind.
        kind: OstreeKind,
        /// Its checksum.
        id: ObjectId,
        /// Where it should be.
        path: PathBuf,
    },
    /// An object's bytes do not hash to its name.
    ChecksumMismatch {
        /// Its kind.
        kind: OstreeKind,
        /// Its name.
        id: ObjectId,
        /// What its bytes hash to.
        found: ObjectId,
        /// Its file.
        path: PathBuf,
    },
    /// An object is malformed.
    CorruptObject {
        /// Its kind.
        kind: OstreeKind,
        /// Its name.
        id: ObjectId,
        /// Its file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// A file object's content cannot be read back (bad deflate, wrong size).
    CorruptContent {
        /// Its name.
        id: ObjectId,
        /// Its file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Something in a commit that our object format cannot hold (a name, an xattr block,
    /// a symlink target or a text over our bounds).
    Unrepresentable {
        /// The OSTree commit.
        commit: ObjectId,
        /// The path in its tree (or the commit field).
        path: PathBuf,
        /// Why.
        error: ObjectError,
    },
    /// A dirtree names an entry that is not a single path component (`..`, `a/b`, empty).
    BadName {
        /// The dirtree.
        dirtree: ObjectId,
        /// Its path in the tree.
        dir: PathBuf,
        /// The name.
        name: Vec<u8>,
        /// What is wrong with it.
        error: object::NameError,
    },
    /// A tree deeper than [`MAX_TREE_DEPTH`].
    TooDeep {
        /// The OSTree commit.
        commit: ObjectId,
        /// The directory past the limit.
        path: PathBuf,
    },
    /// Our branch points at a commit that is none of the OSTree ref's commits.
    Diverged {
        /// The branch (and OSTree ref).
        branch: String,
        /// Its head in our repository.
        head: ObjectId,
        /// How many commits the OSTree ref's history has.
        ostree_commits: usize,
    },
    /// The OSTree ref's name is not a valid branch name of ours.
    BadBranch {
        /// The ref.
        name: String,
        /// Why.
        error: RepoError,
    },
    /// Converting an entry failed for another reason.
    Convert {
        /// The OSTree commit.
        commit: ObjectId,
        /// Why.
        problem: String,
    },
    /// Writing into our repository failed.
    Repo(RepoError),
    /// A bug of the importer (would otherwise have been a panic).
    LogicBug(&'static str),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            ImportError::NotOstreeRepo(p) => write!(
                f,
                "{} is not an OSTree repository (no config file and objects directory)",
                p.display()
            ),
            ImportError::UnsupportedMode { path, mode } => write!(
                f,
                "{} is an OSTree repository in mode {mode:?}, which cannot be imported; \
                 convert it with `ostree pull-local` into a repository made by \
                 `ostree init --mode=archive` (or bare-user, or bare) and import that",
                path.display()
            ),
            ImportError::NoSuchRef { repo, name } => write!(
                f,
                "{} has no ref {name:?} (refs/heads/{name}); `ostree refs --repo={}` lists them",
                repo.display(),
                repo.display()
            ),
            ImportError::NoRefs(p) => write!(
                f,
                "{} has no refs under refs/heads; name commits with --ref once it has",
                p.display()
            ),
            ImportError::BadRef { name, path } => write!(
                f,
                "ref {name:?} ({}) does not hold a 64-character checksum",
                path.display()
            ),
            ImportError::NotAFile(p) => write!(
                f,
                "{} is not a regular file, where the OSTree repository keeps one; the repository is damaged",
                p.display()
            ),
            ImportError::TooLarge { what, path, max } => {
                write!(f, "{what} {} is over the limit of {max}", path.display())
            }
            ImportError::MissingObject { kind, id, path } => write!(
                f,
                "{kind} object {id} is missing from the OSTree repository ({} does not exist)",
                path.display()
            ),
            ImportError::ChecksumMismatch {
                kind,
                id,
                found,
                path,
            } => write!(
                f,
                "{kind} object {id} is corrupted: {} hashes to {found}; \
                 repair the OSTree repository (`ostree fsck --delete` and pull again)",
                path.display()
            ),
            ImportError::CorruptObject {
                kind,
                id,
                path,
                problem,
            } => write!(
                f,
                "{kind} object {id} is corrupted ({}): {problem}",
                path.display()
            ),
            ImportError::CorruptContent { id, path, problem } => write!(
                f,
                "file object {id} is corrupted ({}): {problem}",
                path.display()
            ),
            ImportError::Unrepresentable {
                commit,
                path,
                error,
            } => write!(
                f,
                "OSTree commit {commit} cannot be imported: {} does not fit our object format: {error}",
                path.display()
            ),
            ImportError::BadName {
                dirtree,
                dir,
                name,
                error,
            } => write!(
                f,
                "OSTree dirtree {dirtree} ({}) names {:?}, \
                 which is not a single path component ({error}); the repository was not made by \
                 ostree from a real tree",
                dir.display(),
                String::from_utf8_lossy(name)
            ),
            ImportError::TooDeep { commit, path } => write!(
                f,
                "OSTree commit {commit} cannot be imported: {} is nested deeper than {MAX_TREE_DEPTH} directories",
                path.display()
            ),
            ImportError::Diverged {
                branch,
                head,
                ostree_commits,
            } => write!(
                f,
                "our branch {branch} points at {head}, which is none of the {ostree_commits} \
                 commits of the OSTree ref {branch}; it was committed here or the OSTree ref \
                 was reset. Nothing was changed: import into a fresh repository, or remove \
                 the branch first"
            ),
            ImportError::BadBranch { name, error } => {
                write!(f, "OSTree ref {name:?} cannot be a branch of ours: {error}")
            }
            ImportError::Convert { commit, problem } => {
                write!(f, "OSTree commit {commit} cannot be imported: {problem}")
            }
            ImportError::Repo(e) => e.fmt(f),
            ImportError::LogicBug(what) => write!(f, "bug in the importer: {what}; please report it"),
        }
    }
}

impl std::error::Error for ImportError {
    /// Transparent to the errors its messages include (each message once in a chain).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { source, .. } => source.source(),
            ImportError::Repo(e) => e.source(),
            ImportError::BadBranch { error, .. } => error.source(),
            ImportError::Unrepresentable { error, .. } => error.source(),
            _ => None,
        }
    }
}

impl From<RepoError> for ImportError {
    fn from(e: RepoError) -> Self {
        ImportError::Repo(e)
    }
}

pub(super) fn build_err(c: &OstreeCommit, e: BuildError) -> ImportError {
    build_err_id(c.id, e)
}

pub(super) fn build_err_id(commit: ObjectId, e: BuildError) -> ImportError {
    match e {
        BuildError::Repo(r) => ImportError::Repo(r),
        BuildError::Object { path, error } => ImportError::Unrepresentable {
            commit,
            path,
            error,
        },
        BuildError::Io { what, path, source } => ImportError::Io { what, path, source },
        other => ImportError::Convert {
            commit,
            problem: other.to_string(),
        },
    }
}
