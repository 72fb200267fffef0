//! ed25519 key files.
//!
//! `K` holds the 32-byte secret seed as 64 hex characters and a newline (mode 0600); `K.pub`
//! holds the 32-byte public key the same way.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use agent_core::object::ObjectId;

/// A key-file failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the file failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file does not hold 64 hex characters.
    Malformed(PathBuf),
    /// The system random source failed.
    Random,
    /// The output file exists already (keys are never overwritten).
    Exists(PathBuf),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Io { what, path, source } => {
                write!(f, "cannot {what} key file {}: {source}", path.display())
            }
            KeyError::Malformed(p) => write!(
                f,
                "key file {} does not hold a key as 64 hex characters",
                p.display()
            ),
            KeyError::Random => f.write_str("the system's random number source failed; try again"),
            KeyError::Exists(p) => write!(
                f,
                "{} exists already; keys are never overwritten, remove it first",
                p.display()
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// The public key of a secret seed.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// Generates a key pair: `out` (secret seed, mode 0600) and `out.pub`. Returns the public key.
pub fn keygen(out: &Path) -> Result<[u8; 32], KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| KeyError::Random)?;
    let public = public_key(&seed);
    let pub_path = pub_path(out);
    for p in [out, pub_path.as_path()] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(KeyError::Exists(p.to_path_buf()));
        }
    }
    write_new(out, 0o600, &seed)?;
    write_new(&pub_path, 0o644, &public)?;
    Ok(public)
}

/// `K.pub` for `K`.
pub fn pub_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn write_new(path: &Path, mode: u32, key: &[u8; 32]) -> Result<(), KeyError> {
    let err = |what| {
        move |source| KeyError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err("create"))?;
    f.write_all(format!("{}\n", ObjectId(*key)).as_bytes())
        .map_err(err("write"))?;
    f.sync_all().map_err(err("fsync"))
}

/// Reads a key file (secret seed or public key): 64 hex characters, surrounding whitespace
/// ignored.
pub fn read_key(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })?;
    ObjectId::from_hex(text.trim())
        .map(|id| id.0)
        .map_err(|_| KeyError::Malformed(path.to_path_buf()))
}

#[cfg(test)]
mod test {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_writes_pair() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("k");
        let public = keygen(&k).unwrap();
        assert_eq!(
            fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let seed = read_key(&k).unwrap();
        assert_eq!(public_key(&seed), public);
        assert_eq!(read_key(&pub_path(&k)).unwrap(), public);
        assert!(matches!(keygen(&k), Err(KeyError::Exists(_))));
        fs::write(d.path().join("bad"), "xyz\n").unwrap();
        assert!(matches!(
            read_key(&d.path().join("bad")),
            Err(KeyError::Malformed(_))
        ));
    }
}
