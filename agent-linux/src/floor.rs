//! The anti-rollback floor of a sysroot, `S/security-floor`: the lowest security version an
//! update may carry to be installed or deployed.
//!
//! One decimal number and a newline, written only through [`raise`] (temp file, fsync, rename,
//! fsync of the directory, through `crate::fsops`), so a power cut leaves the old value or
//! the new one. A missing file is floor 0; anything else that is not a number is an error
//! (never read as 0, which would lower the floor). `mark-good` raises it to the security
//! version of the deployment it confirms; nothing lowers it.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file's name in the sysroot.
pub const FLOOR_FILE: &str = "security-floor";

/// Why the floor could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum FloorError {
    /// Reading or writing failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file does not hold a number.
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its first bytes, as text.
        found: String,
    },
}

impl fmt::Display for FloorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FloorError::Io { what, path, source } => {
                write!(f, "cannot {what} the anti-rollback floor {}: {source}", path.display())
            }
            FloorError::Malformed { path, found } => write!(
                f,
                "the anti-rollback floor {} holds {found:?}, not a security version; write the floor the device had back into it (a lower one would allow downgrades)",
                path.display()
            ),
        }
    }
}

/// Transparent to the OS error its message includes.
impl std::error::Error for FloorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FloorError::Io { source, .. } => source.source(),
            FloorError::Malformed { .. } => None,
        }
    }
}

/// `root/security-floor`.
pub fn path(root: &Path) -> PathBuf {
    root.join(FLOOR_FILE)
}

/// The floor of the sysroot at `root` (0 when the file is missing).
pub fn read(root: &Path) -> Result<u64, FloorError> {
    let p = path(root);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(FloorError::Io {
                what: "read",
                path: p,
                source,
            })
        }
    };
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
    let t = text.strip_suffix('\n').unwrap_or(&text);
    if bytes.len() > 21 || t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FloorError::Malformed {
            path: p,
            found: text,
        });
    }
    t.parse().map_err(|_| FloorError::Malformed {
        path: p,
        found: text,
    })
}

/// Raises the floor to `to` when it is lower; returns the floor before and after. Never lowers
/// it.
pub fn raise(root: &Path, to: u64) -> Result<(u64, u64), FloorError> {
    let old = read(root)?;
    if to <= old {
        return Ok((old, old));
    }
    let p = path(root);
    crate::fsops::write_atomic(&p, format!("{to}\n").as_bytes(), 0o644).map_err(|source| {
        FloorError::Io {
            what: "write",
            path: p,
            source,
        }
    })?;
    Ok((old, to))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn missing_is_zero_raise_never_lowers_garbage_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()).unwrap(), 0);
        assert_eq!(raise(d.path(), 5).unwrap(), (0, 5));
        assert_eq!(raise(d.path(), 3).unwrap(), (5, 5));
        assert_eq!(read(d.path()).unwrap(), 5);
        assert_eq!(fs::read_to_string(path(d.path())).unwrap(), "5\n");
        for bad in ["", "\n", "x\n", "-1\n", "99999999999999999999999\n", "5 \n"] {
            fs::write(path(d.path()), bad).unwrap();
            let e = read(d.path()).unwrap_err();
            assert!(matches!(e, FloorError::Malformed { .. }), "{bad:?}: {e}");
            assert!(raise(d.path(), 100).is_err(), "{bad:?}");
        }
        fs::write(path(d.path()), u64::MAX.to_string()).unwrap();
        assert_eq!(read(d.path()).unwrap(), u64::MAX);
    }
}
