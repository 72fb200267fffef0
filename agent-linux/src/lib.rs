//! The Linux side of the ECU update agent: the object repository on a filesystem, building
//! commits from directory trees, generating `.update` files, installing them into a sysroot
//! and checking commits out.
//!
//! - [`repo`]: the repository layout (`docs/REPO.md`), objects, refs, history.
//! - [`sysroot`]: the device side's root, holding the repository at `S/repo`.
//! - [`tree`]: directory (or in-memory tree) → objects, bottom-up.
//! - [`store`]: [`agent_core::store::Store`] over a repository (what the installer writes through).
//! - [`generate`]: `.update` files (from scratch and deltas) with `agent_core::write::UpdateWriter`.
//! - [`health`]: boot health checks (required and wanted, with timeouts) and their record.
//! - [`inspect`]: what an `.update` file holds and whether its signature verifies (`delta show`).
//! - [`apply`]: an `.update` stream into a repository through `agent_core::install::Installer`.
//! - [`checkout`]: a commit's tree into a directory, never writing outside it.
//! - [`keys`]: ed25519 key files.
//! - [`index`]: the signed index of a published folder (`docs/PUBLISH.md`).
//! - [`upgrade`]: taking the update that fits from a published folder, a directory or HTTP(S).
//! - [`progress`]: progress of a command feeding an update: a bar on a terminal, JSON lines.
//! - [`ostree_import`]: commits of an OSTree repository (archive, bare-user, bare) imported as ours.
//! - [`fsmeta`]: xattrs, modes and owners on Linux.
//! - [`deploy`]: A/B deployments in a sysroot: install, stage, mark-good, rollback, status,
//!   cleanup, a simulated boot, and a check of a deployment against its commit.
//! - [`floor`]: the sysroot's anti-rollback floor (`S/security-floor`).
//! - [`bootcfg`]: the sysroot's `agent.conf` (which bootloader environment, scheme, tries).
//! - [`text`]: escaping text from updates for a terminal.
//! - [`fsops`]: filesystem mutations with named interruption points (power-loss tests).
//! - [`xz`]: decoding xz parts with liblzma.
//!
//! Errors are one enum per module, each message one sentence naming the values involved. An
//! error whose message includes another's (a wrapper) is transparent to it: its `source()` is
//! the inner error's own source, so the CLI's `caused by:` lines say each message once.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod apply;
pub mod bootcfg;
pub mod checkout;
pub mod deploy;
pub mod floor;
pub mod fsmeta;
pub mod fsops;
pub mod generate;
pub mod health;
pub mod index;
pub mod inspect;
pub mod keys;
pub mod ostree_import;
pub mod progress;
pub mod repo;
pub mod resume;
pub mod store;
pub mod sysroot;
pub mod text;
pub mod tree;
pub mod upgrade;
pub mod xz;

pub use repo::{CommitInfo, CommitMeta, Repo, RepoError, TreeRoot};
