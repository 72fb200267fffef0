//! Reading an environment's bytes, bounded by its configured size: a U-Boot copy at its
//! offset, a whole GRUB block (the file Mender's layout says GRUB reads), and checking them
//! (CRC, current copy, GRUB layout) into the variables as stored.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use bootloader_hooks::grub_env::{self, GrubEnv};
use bootloader_hooks::uboot_env::{self, Env, Layout};
use bootloader_hooks::Flavor;

use super::{grub_file, io_err, BootEnvError, Loaded};
use crate::bootcfg::{BackendKind, BootConfig};

/// Reads exactly `size` bytes at `offset` of `path` (a file or a device), allocating no more
/// than `size`.
pub(super) fn read_at(path: &Path, offset: u64, size: usize) -> Result<Vec<u8>, BootEnvError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let md = f.metadata().map_err(io_err(path))?;
    let needed = offset.saturating_add(size as u64);
    if md.is_file() && md.len() < needed {
        return Err(BootEnvError::Short {
            path: path.to_path_buf(),
            needed,
            len: md.len(),
        });
    }
    f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(size)
        .map_err(|e| io_err(path)(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
    f.take(size as u64)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() < size {
        return Err(BootEnvError::Short {
            path: path.to_path_buf(),
            needed,
            len: offset + buf.len() as u64,
        });
    }
    Ok(buf)
}

/// Reads a whole file or device of at most `limit` bytes.
pub(super) fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, BootEnvError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() > limit {
        return Err(BootEnvError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

/// The raw bytes of an environment as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Raw {
    UbootSingle(Vec<u8>),
    UbootRedundant([Vec<u8>; 2]),
    Grub(Vec<u8>),
}

pub(super) fn read_raw(cfg: &BootConfig) -> Result<Raw, BootEnvError> {
    let first = &cfg.env.0;
    Ok(match cfg.kind {
        BackendKind::Uboot => Raw::UbootSingle(read_at(first, cfg.env.1, cfg.env_size)?),
        BackendKind::UbootRedundant => Raw::UbootRedundant([
            read_at(first, cfg.env.1, cfg.env_size)?,
            read_at(&cfg.env_redundant.0, cfg.env_redundant.1, cfg.env_size)?,
        ]),
        BackendKind::Grub => Raw::Grub(read_bounded(&grub_file(cfg)?, cfg.env_size)?),
    })
}

/// The variables of an environment exactly as stored, in stored order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StoredVars {
    /// `(name, value)`; GRUB values keep their `\` escapes.
    pub(super) vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a redundant U-Boot env: the current copy (0 or 1) and its flag.
    pub(super) current_copy: Option<(usize, u8)>,
}

impl Raw {
    /// Checks the environment (CRC; for a redundant U-Boot env, which copy is current; the
    /// GRUB block's signature and layout) and returns its variables as stored. `path` names
    /// the environment in errors.
    pub(super) fn stored_vars(&self, path: &Path) -> Result<StoredVars, BootEnvError> {
        let own = |(k, v): (&[u8], &[u8])| (k.to_vec(), v.to_vec());
        Ok(match self {
            Raw::UbootSingle(b) => {
                let env = Env::parse(b, Layout::Single).map_err(|e| BootEnvError::Uboot {
                    path: path.to_path_buf(),
                    error: e.into(),
                })?;
                StoredVars {
                    vars: env.vars().map(own).collect(),
                    current_copy: None,
                }
            }
            Raw::UbootRedundant([a, b]) => {
                let (i, env) =
                    uboot_env::parse_redundant(a, b).map_err(|error| BootEnvError::Uboot {
                        path: path.to_path_buf(),
                        error,
                    })?;
                StoredVars {
                    vars: env.vars().map(own).collect(),
                    current_copy: Some((i, env.flag().unwrap_or(0))),
                }
            }
            Raw::Grub(b) => {
                let env = GrubEnv::parse(b).map_err(|error| BootEnvError::Grub {
                    path: path.to_path_buf(),
                    error,
                })?;
                StoredVars {
                    vars: env.vars().map(own).collect(),
                    current_copy: None,
                }
            }
        })
    }
}

impl StoredVars {
    /// The variables decoded for the schemes: GRUB values unescaped, names and values as
    /// UTF-8 (invalid bytes replaced).
    pub(super) fn loaded(&self, flavor: Flavor) -> Loaded {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Loaded {
            vars: self
                .vars
                .iter()
                .map(|(k, v)| match flavor {
                    Flavor::Grub => {
                        let mut out = vec![0u8; v.len()];
                        let n = grub_env::unescape(v, &mut out).unwrap_or(0);
                        (text(k), text(&out[..n]))
                    }
                    Flavor::UBoot => (text(k), text(v)),
                })
                .collect(),
            current_copy: self.current_copy,
        }
    }
}

pub(super) fn is_regular(p: &Path) -> bool {
    fs::metadata(p).map(|m| m.is_file()).unwrap_or(false)
}

/// Erased flash (all 0xFF) or zeroes: an environment never written.
pub(super) fn blank(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0xff) || b.iter().all(|&x| x == 0)
}
