//! [`BuildError`], why a tree could not be built.

use std::fmt;
use std::io;
use std::path::PathBuf;

use agent_core::object::{NameError, ObjectError};

use crate::repo::{RepoError, MAX_TREE_DEPTH};

/// Why a tree could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The repository failed.
    Repo(RepoError),
    /// Reading the source tree failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An entry whose name is not a single path component.
    BadName {
        /// The directory holding it.
        dir: PathBuf,
        /// The name, as bytes.
        name: Vec<u8>,
        /// What is wrong with it.
        error: NameError,
    },
    /// Two entries of one directory with the same name.
    DuplicateName {
        /// The directory.
        dir: PathBuf,
        /// The name.
        name: Vec<u8>,
    },
    /// A device, FIFO or socket: a commit holds only files, symlinks and directories.
    UnsupportedType {
        /// The entry.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The entry's metadata does not fit the object format (xattrs, symlink target, mode).
    Object {
        /// The entry.
        path: PathBuf,
        /// Why.
        error: ObjectError,
    },
    /// A file changed size while it was read.
    Changed(PathBuf),
    /// The tree is deeper than [`MAX_TREE_DEPTH`].
    TooDeep(PathBuf),
    /// The root is not a directory.
    NotADirectory(PathBuf),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Repo(e) => e.fmt(f),
            BuildError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            BuildError::BadName { dir, name, error } => write!(
                f,
                "entry {:?} in {} cannot be committed: {error}",
                String::from_utf8_lossy(name),
                dir.display()
            ),
            BuildError::DuplicateName { dir, name } => {
                write!(
                    f,
                    "directory {} holds {:?} twice",
                    dir.display(),
                    String::from_utf8_lossy(name)
                )
            }
            BuildError::UnsupportedType { path, kind } => write!(
                f,
                "{} is a {kind}; a commit holds only regular files, symlinks and directories",
                path.display()
            ),
            BuildError::Object { path, error } => {
                write!(f, "{} cannot be committed: {error}", path.display())
            }
            BuildError::Changed(p) => write!(
                f,
                "{} changed while it was read; commit a tree nobody writes to",
                p.display()
            ),
            BuildError::TooDeep(p) => write!(
                f,
                "{} is nested deeper than {MAX_TREE_DEPTH} directories",
                p.display()
            ),
            BuildError::NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
        }
    }
}

/// Transparent to the errors its messages include.
impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Repo(e) => e.source(),
            BuildError::Io { source, .. } => source.source(),
            BuildError::Object { error, .. } => error.source(),
            _ => None,
        }
    }
}

impl From<RepoError> for BuildError {
    fn from(e: RepoError) -> Self {
        BuildError::Repo(e)
    }
}
