//! `agent-core`: the `no_std`, no-`alloc` core of the ECU update agent.
//!
//! It reads `.update` files (OSTree-style static deltas: from scratch, or only what changed
//! since a known commit) from any transport in any chunk size, and installs their objects into
//! a [`store::Store`] in fixed memory, verifying every byte: the ed25519 signature before
//! anything is written, each object's SHA-256 as it is written, each part's SHA-256 at its
//! end, and the commit last.
//!
//! - [`object`]: ids and the canonical encodings of files, directories and commits.
//! - [`wire`]: the `.update` file layout (`docs/FORMAT.md` is the specification).
//! - [`store`]: the trait a platform implements to hold objects.
//! - [`install`]: the streaming installer ([`install::Installer`]).
//! - [`io`]: an `embedded-io` adapter over the installer.
//! - `write` (feature `std`): the `.update` writer.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

#[macro_use]
mod fmt;
#[macro_use]
mod code;

pub mod install;
pub mod io;
pub mod object;
pub mod store;
pub mod wire;
#[cfg(feature = "std")]
pub mod write;

pub use install::{InstallError, Installer, Policy};
pub use object::{ObjectId, ObjectKind};
