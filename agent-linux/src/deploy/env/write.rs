//! Writing an environment: the variable updates merged into what is stored, encoded for the
//! backend, and stored as one atomic update (the order and atomicity are in the module docs of
//! [`super`]).

use std::fs;
use std::path::{Path, PathBuf};

use bootloader_hooks::grub_env;
use bootloader_hooks::uboot_env::{self, Layout};
use bootloader_hooks::{BootState, VarSet};

use super::{flavor, io_err, mender, BootEnvError, EnvImage, Loaded};
use crate::bootcfg::{BackendKind, BootConfig};
use crate::fsops;

/// The value `v` as a GRUB block stores it (escaped).
fn grub_escaped(v: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; grub_env::escaped_len(v)];
    let n = grub_env::escape(v, &mut out).unwrap_or(0);
    out.truncate(n);
    out
}

/// Whether `p` is a regular file of exactly `size` bytes, or missing: written whole by temp +
/// rename; anything else (a device, a larger file) is rewritten in place.
fn whole_file(p: &Path, offset: u64, size: usize) -> bool {
    offset == 0
        && fs::metadata(p)
            .map(|m| m.is_file() && m.len() == size as u64)
            .unwrap_or(true)
}

/// Stores `state` (and sets or deletes the `extra` variables) as one atomic update of the
/// environment `img` (`None`: create it from nothing). See the module docs for the order.
pub fn write(
    cfg: &BootConfig,
    img: Option<&EnvImage>,
    state: &BootState,
    extra: &[(&str, Option<&str>)],
) -> Result<(), BootEnvError> {
    let empty = Loaded {
        vars: Vec::new(),
        current_copy: None,
    };
    let loaded = img.map(|i| &i.loaded).unwrap_or(&empty);
    let mut set = VarSet::new();
    cfg.scheme.encode(flavor(cfg), state, loaded, &mut set)?;
    write_set(cfg, img, &set, extra)
}

/// Stores the variable updates `set` (and the `extra` ones) as one atomic update of the
/// environment `img` (`None`: create it from nothing): what [`write()`] does after encoding a
/// state, and what a boot stores ([`next_boot`](super::next_boot)'s writes).
pub fn write_set(
    cfg: &BootConfig,
    img: Option<&EnvImage>,
    set: &VarSet<'static>,
    extra: &[(&str, Option<&str>)],
) -> Result<(), BootEnvError> {
    let grub = cfg.kind == BackendKind::Grub;
    let mut base: Vec<(Vec<u8>, Vec<u8>)> = img.map(|i| i.raw_vars.clone()).unwrap_or_default();
    for (k, v) in extra {
        let kb = k.as_bytes();
        let first = base.iter().position(|(bk, _)| bk == kb);
        let mut seen = false;
        base.retain(|(bk, _)| {
            let dup = bk == kb && seen;
            seen |= bk == kb;
            !dup
        });
        let value = v.map(|v| {
            if grub {
                grub_escaped(v.as_bytes())
            } else {
                v.as_bytes().to_vec()
            }
        });
        match (first, value) {
            (Some(p), Some(val)) => base[p].1 = val,
            (Some(p), None) => {
                base.remove(p);
            }
            (None, Some(val)) => base.push((kb.to_vec(), val)),
            (None, None) => {}
        }
    }
    let vars = base.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
    let path0 = cfg.env.0.clone();
    match cfg.kind {
        BackendKind::Uboot => {
            let mut buf = vec![0u8; cfg.env_size];
            uboot_env::write(&mut buf, Layout::Single, 0, vars, set).map_err(|error| {
                BootEnvError::Uboot {
                    path: path0.clone(),
                    error,
                }
            })?;
            if whole_file(&path0, cfg.env.1, cfg.env_size) {
                fsops::write_atomic(&path0, &buf, 0o644).map_err(io_err(&path0))
            } else {
                fsops::write_in_place(&path0, cfg.env.1, &buf).map_err(io_err(&path0))
            }
        }
        BackendKind::UbootRedundant => {
            let copies: [(PathBuf, u64); 2] = [cfg.env.clone(), cfg.env_redundant.clone()];
            let current = img.and_then(|i| i.loaded.current_copy);
            let mut buf = vec![0u8; cfg.env_size];
            match current {
                Some((cur, flag)) => {
                    let (target, flag) = uboot_env::next_copy(cur, flag);
                    let (p, off) = &copies[target];
                    uboot_env::write(&mut buf, Layout::Redundant, flag, vars, set).map_err(
                        |error| BootEnvError::Uboot {
                            path: p.clone(),
                            error,
                        },
                    )?;
                    log::debug!("writing U-Boot env copy {target} with flag {flag}");
                    fsops::write_in_place(p, *off, &buf).map_err(io_err(p))
                }
                None => {
                    uboot_env::write(&mut buf, Layout::Redundant, 1, vars, set).map_err(
                        |error| BootEnvError::Uboot {
                            path: path0.clone(),
                            error,
                        },
                    )?;
                    // Second copy first: the first copy's file appearing means both exist.
                    for (p, off) in copies.iter().rev() {
                        if whole_file(p, *off, cfg.env_size) {
                            fsops::write_atomic(p, &buf, 0o644).map_err(io_err(p))?;
                        } else {
                            fsops::write_in_place(p, *off, &buf).map_err(io_err(p))?;
                        }
                    }
                    Ok(())
                }
            }
        }
        BackendKind::Grub => {
            let size = img
                .map(|i| i.grub_size)
                .filter(|&n| n > 0)
                .unwrap_or(grub_env::DEFAULT_SIZE);
            let mut buf = vec![b'#'; size];
            grub_env::write(&mut buf, vars, set).map_err(|error| BootEnvError::Grub {
                path: path0.clone(),
                error,
            })?;
            match mender::mender_grubenv(cfg) {
                Some(files) => mender::write_mender_grubenv(&files, &buf),
                None => fsops::write_atomic(&path0, &buf, 0o644).map_err(io_err(&path0)),
            }
        }
    }
}
