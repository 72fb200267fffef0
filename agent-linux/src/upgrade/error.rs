//! Why an upgrade failed: [`UpgradeError`], and [`Mismatch`], a file that is not the one
//! the index names.

use std::fmt;
use std::path::PathBuf;

use crate::deploy::DeployError;
use crate::index::{self, IndexError};

/// Why a transfer was refused: the file is not the one the index names. Carried inside the
/// `io::Error` the reader returns, so the installer stops before committing; never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// More bytes arrived than the index's size.
    TooLong {
        /// The index's size.
        size: u64,
    },
    /// The whole file's SHA-256 is not the index's.
    Hash {
        /// The index's.
        expected: String,
        /// The file's.
        found: String,
    },
    /// The file's length (local file, `Content-Length`) is not the index's size.
    Length {
        /// Bytes announced or found.
        found: u64,
        /// Bytes the index says.
        expected: u64,
    },
    /// A `206` answer whose `Content-Range` is not the range asked for, of a file of the
    /// index's size.
    ContentRange {
        /// The header as received (or `missing`).
        found: String,
        /// What it had to be.
        expected: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::TooLong { size } => write!(
                f,
                "more than the {size} bytes the index says arrived; the file does not belong to this index"
            ),
            Mismatch::Hash { expected, found } => write!(
                f,
                "the file's SHA-256 is {found}, the index says {expected}; it was altered or replaced"
            ),
            Mismatch::Length { found, expected } => write!(
                f,
                "the file is {found} bytes, the index says {expected}; it was altered or replaced (or the index is stale)"
            ),
            Mismatch::ContentRange { found, expected } => write!(
                f,
                "the server answered the range request with Content-Range {found}, expected {expected}"
            ),
        }
    }
}

impl std::error::Error for Mismatch {}

/// Why `upgrade` did nothing or failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// `--from` names a scheme other than http and https.
    Scheme(String),
    /// The index could not be read.
    IndexRead {
        /// Where.
        location: String,
        /// Why.
        error: String,
    },
    /// The index is longer than [`index::MAX_INDEX_LEN`].
    IndexTooLarge(String),
    /// The index was refused.
    Index(IndexError),
    /// The index's serial is below the highest the device accepted.
    Rollback {
        /// The index's serial.
        serial: u64,
        /// The highest accepted.
        seen: u64,
    },
    /// The index has expired.
    Expired {
        /// Its expiry, seconds since 1970.
        expires: u64,
        /// The clock, seconds since 1970.
        now: u64,
    },
    /// `S/index-serial` could not be read or written, or holds no number.
    SerialFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The index has no file for the ref the device runs (or was told).
    NoRef {
        /// The ref wanted (`None`: the device runs none and the index has several).
        wanted: Option<String>,
        /// The refs the index has.
        refs: Vec<String>,
    },
    /// The index has no delta from the booted commit and no from-scratch file.
    NothingApplicable {
        /// The ref.
        ref_name: String,
        /// The booted commit.
        booted: Option<String>,
        /// The sources the index's deltas start from.
        sources: Vec<String>,
    },
    /// The target's security version is below the device's floor.
    BelowFloor {
        /// The target's.
        security_version: u64,
        /// The device's.
        floor: u64,
    },
    /// The server's answer was not the file.
    Http {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The file is not what the index says.
    Mismatch {
        /// Where.
        location: String,
        /// What.
        mismatch: Mismatch,
    },
    /// A `--ca-cert` file holds no usable certificate.
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The file the index names cannot be opened.
    FileRead {
        /// Where.
        location: String,
        /// Why.
        error: String,
    },
    /// The transfer kept failing.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Installing failed (as `install` fails).
    Deploy(DeployError),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Scheme(s) => write!(
                f,
                "{s:?} is neither a directory nor an http:// or https:// URL"
            ),
            UpgradeError::IndexRead { location, error } => {
                write!(f, "cannot read the index {location}: {error}")
            }
            UpgradeError::IndexTooLarge(l) => write!(
                f,
                "the index {l} is longer than {} bytes; refused",
                index::MAX_INDEX_LEN
            ),
            UpgradeError::Index(e) => e.fmt(f),
            UpgradeError::Rollback { serial, seen } => write!(
                f,
                "refused: the index has serial {serial}, older than serial {seen} this device already accepted (a stale mirror or a rollback attack); publish a newer index"
            ),
            UpgradeError::Expired { expires, now } => write!(
                f,
                "refused: the index expired at {expires} (seconds since 1970), the clock says {now} (a frozen mirror?); publish a fresh index, or check the clock"
            ),
            UpgradeError::SerialFile { path, error } => write!(
                f,
                "cannot use {}: {error}; it must hold the highest index serial the device accepted (write it back, or remove it to accept any)",
                path.display()
            ),
            UpgradeError::NoRef { wanted: Some(w), refs } => write!(
                f,
                "nothing applicable: the index has no update for ref {w} (it has: {})",
                list(refs)
            ),
            UpgradeError::NoRef { wanted: None, refs } => write!(
                f,
                "the index has updates for several refs ({}) and the device runs none of them; name one with --ref",
                list(refs)
            ),
            UpgradeError::NothingApplicable { ref_name, booted, sources } => write!(
                f,
                "nothing applicable: the index has no from-scratch file for {ref_name} and no delta from the booted commit {} (its deltas start from: {})",
                booted.as_deref().unwrap_or("(none)"),
                list(sources)
            ),
            UpgradeError::BelowFloor { security_version, floor } => write!(
                f,
                "refused: the index offers security version {security_version}, below this device's anti-rollback floor {floor}"
            ),
            UpgradeError::Http { url, status } => write!(
                f,
                "the server answered {status} for {url}"
            ),
            UpgradeError::Mismatch { location, mismatch } => {
                write!(f, "refused {location}: {mismatch}; nothing was installed")
            }
            UpgradeError::CaCert { path, error } => write!(
                f,
                "cannot use {} as a certificate authority: {error}; give a PEM file (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            UpgradeError::FileRead { location, error } => write!(
                f,
                "cannot read {location}, which the index lists: {error}; publish the folder again"
            ),
            UpgradeError::GaveUp { attempts, last } => write!(
                f,
                "the transfer failed {attempts} times, the last time with: {last}; run the upgrade again to resume after the verified parts"
            ),
            UpgradeError::Deploy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UpgradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Display shows the inner error already: its causes follow.
        match self {
            UpgradeError::Deploy(e) => e.source(),
            _ => None,
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
