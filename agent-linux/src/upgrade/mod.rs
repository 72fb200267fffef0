//! `ecu-agent upgrade`: take the update that fits from a published folder (`docs/PUBLISH.md`),
//! on a local path or a web server, and install it as `install` does.
//!
//! 1. The folder's index ([`crate::index`]) is read (at most [`index::MAX_INDEX_LEN`] bytes),
//!    its signature checked under the device's keys, its serial against the highest one the
//!    device accepted (`S/index-serial`), its expiry against the clock.
//! 2. [`plan`] picks, for the ref the device runs, the delta from the booted commit if the
//!    index has one, else the from-scratch file; nothing, when the booted (or already staged)
//!    commit is the target.
//! 3. [`install`] streams the file into [`Deployer::install_from`] (the same checks, staging
//!    and anti-rollback floor as `install`) through a reader that counts and hashes it: more
//!    bytes than the index says, fewer at the end, or another SHA-256 fail the read before
//!    the installer commits anything. Over HTTP(S) (ureq with rustls) an interrupted transfer
//!    is resumed with a `Range` request from the last verified part (`docs/RESUME.md`),
//!    a bounded number of times; `Content-Length` and `Content-Range` must agree with the
//!    index's size.
//!
//! [`index::MAX_INDEX_LEN`]: crate::index::MAX_INDEX_LEN
//! [`Deployer::install_from`]: crate::deploy::Deployer::install_from

mod error;
mod fetch;
mod plan;
mod transfer;

pub use error::{Mismatch, UpgradeError};
pub use fetch::{Fetcher, Source};
pub use plan::{plan, read_serial, record_serial, Action, FileKind, IndexInfo, Plan};
pub use transfer::{install, Transfer};

/// The file in a sysroot holding the highest index serial the device accepted.
pub const SERIAL_FILE: &str = "index-serial";

/// The hash of a transfer is kept at every multiple of this many bytes, so that a resumed
/// transfer re-reads at most this much before its resume point (and the whole file's SHA-256
/// is still checked): 256 KiB, about 110 bytes of memory per granule of the file.
pub const HASH_GRANULE: u64 = 256 * 1024;
