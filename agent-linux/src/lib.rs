//! The Linux side of the ECU update agent: the object repository on a filesystem, building
//! commits from directory trees, generating `.update` files, installing them into a sysroot
//! and checking commits out.
//!
//! - [`repo`]: the repository layout (`docs/REPO.md`), objects, refs, history.
//! - [`tree`]: directory (or in-memory tree) → objects, bottom-up.
//! - [`keys`]: ed25519 key files.
//! - [`fsmeta`]: xattrs, modes and owners on Linux.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod fsmeta;
pub mod keys;
pub mod repo;
pub mod tree;

pub use repo::{CommitInfo, CommitMeta, Repo, RepoError, TreeRoot};
