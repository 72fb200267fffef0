//! Reading and writing the bootloader environment of a sysroot.
//!
//! Reading, decoding (including which redundant copy is current) and encoding are
//! `bootloader-hooks`' (`host::read_at`, `host::Raw::stored_vars`, its U-Boot and GRUB
//! encoders and its variable schemes); this module adds the two things the agent needs on
//! top: the per-slot kernel arguments (`ECU_A_ARGS`, `ECU_B_ARGS`) written in the same
//! atomic update as the boot state, and every write going through [`crate::fsops`] so that the
//! power-loss tests can interrupt it. The write discipline is `bootloader_hooks::host`'s:
//!
//! - redundant U-Boot: the copy that is not current is rewritten in place with the next flag
//!   and fsynced; a torn write fails its CRC and the current copy stays in force;
//! - single U-Boot in a regular file of exactly the env size, and GRUB: temp file, fsync,
//!   rename, fsync of the directory;
//! - a fresh redundant environment in regular files: the second copy's file is created first
//!   (temp + rename), the first copy's last, so "the first file exists" means "both do".
//!
//! `bootloader_hooks::host::BootEnv` reads what this module writes (the tests use it as the
//! bootloader).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bootloader_hooks::grub_env;
use bootloader_hooks::host::{read_at, HostError, Loaded, Raw};
use bootloader_hooks::scheme::SchemeError;
use bootloader_hooks::uboot_env::{self, Layout};
use bootloader_hooks::{BootState, Flavor, VarSet};

use crate::bootcfg::{BackendKind, BootConfig};
use crate::fsops;

/// An environment as read: its variables (raw, as stored) and which copy was current.
#[derive(Debug, Clone)]
pub struct EnvImage {
    /// `(name, value)` as stored (GRUB values keep their escapes).
    pub raw_vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// The same, decoded (GRUB values unescaped), for the schemes.
    pub loaded: Loaded,
    /// GRUB block size.
    pub grub_size: usize,
}

/// What the environment holds.
#[derive(Debug, Clone)]
pub enum EnvContent {
    /// The environment's file does not exist, or is blank (erased flash or zeroes), or (a
    /// device) holds no valid copy.
    Missing,
    /// A valid environment without the scheme's variables.
    NoBootState(EnvImage),
    /// A boot state.
    Ready(EnvImage, Box<BootState>),
}

fn host_io(path: &Path) -> impl FnOnce(io::Error) -> HostError + '_ {
    move |source| HostError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_regular(p: &Path) -> bool {
    fs::metadata(p).map(|m| m.is_file()).unwrap_or(false)
}

/// Erased flash (all 0xFF) or zeroes: an environment never written.
fn blank(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0xff) || b.iter().all(|&x| x == 0)
}

/// Reads the environment named by `cfg`.
pub fn read(cfg: &BootConfig) -> Result<EnvContent, HostError> {
    let first = &cfg.env.0;
    if !first.exists() {
        return Ok(EnvContent::Missing);
    }
    let raw = match cfg.kind {
        BackendKind::Uboot => Raw::UbootSingle(read_at(first, cfg.env.1, cfg.env_size)?),
        BackendKind::UbootRedundant => Raw::UbootRedundant([
            read_at(first, cfg.env.1, cfg.env_size)?,
            read_at(&cfg.env_redundant.0, cfg.env_redundant.1, cfg.env_size)?,
        ]),
        BackendKind::Grub => Raw::Grub(fs::read(first).map_err(host_io(first))?),
    };
    let stored = match (raw.stored_vars(first), &raw) {
        (Ok(s), _) => s,
        // Never written (or not a regular file holding no valid copy): nothing to decode.
        (Err(_), Raw::UbootSingle(b)) if !is_regular(first) || blank(b) => {
            return Ok(EnvContent::Missing)
        }
        (Err(_), Raw::UbootRedundant([a, b])) if !is_regular(first) || (blank(a) && blank(b)) => {
            return Ok(EnvContent::Missing)
        }
        (Err(e), _) => return Err(e),
    };
    let img = EnvImage {
        loaded: stored.loaded(flavor(cfg)),
        raw_vars: stored.vars,
        grub_size: match &raw {
            Raw::Grub(b) => b.len(),
            _ => 0,
        },
    };
    match cfg.scheme.decode(flavor(cfg), &img.loaded) {
        Ok(state) => Ok(EnvContent::Ready(img, Box::new(state))),
        Err(SchemeError::NotThisScheme { .. }) => Ok(EnvContent::NoBootState(img)),
        Err(e) => Err(HostError::Scheme(e)),
    }
}

fn flavor(cfg: &BootConfig) -> Flavor {
    if cfg.kind == BackendKind::Grub {
        Flavor::Grub
    } else {
        Flavor::UBoot
    }
}

fn grub_escape(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if b == b'\\' || b == b'\n' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Stores `state` (and sets or deletes the `extra` variables) as one atomic update of the
/// environment `img` (`None`: create it from nothing).
pub fn write(
    cfg: &BootConfig,
    img: Option<&EnvImage>,
    state: &BootState,
    extra: &[(&str, Option<&str>)],
) -> Result<(), HostError> {
    let empty = Loaded {
        vars: Vec::new(),
        current_copy: None,
    };
    let loaded = img.map(|i| &i.loaded).unwrap_or(&empty);
    let mut set = VarSet::new();
    cfg.scheme.encode(flavor(cfg), state, loaded, &mut set)?;
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
                grub_escape(v.as_bytes())
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
            uboot_env::write(&mut buf, Layout::Single, 0, vars, &set).map_err(|error| {
                HostError::UbootEnv {
                    path: path0.clone(),
                    error,
                }
            })?;
            let whole_file = cfg.env.1 == 0
                && fs::metadata(&path0)
                    .map(|m| m.is_file() && m.len() == cfg.env_size as u64)
                    .unwrap_or(true);
            if whole_file {
                fsops::write_atomic(&path0, &buf, 0o644).map_err(host_io(&path0))
            } else {
                fsops::write_in_place(&path0, cfg.env.1, &buf).map_err(host_io(&path0))
            }
        }
        BackendKind::UbootRedundant => {
            let copies: [(PathBuf, u64); 2] = [cfg.env.clone(), cfg.env_redundant.clone()];
            let current = img.and_then(|i| i.loaded.current_copy);
            let mut buf = vec![0u8; cfg.env_size];
            match current {
                Some((cur, flag)) => {
                    let target = 1 - cur;
                    let (p, off) = &copies[target];
                    uboot_env::write(
                        &mut buf,
                        Layout::Redundant,
                        flag.wrapping_add(1),
                        vars,
                        &set,
                    )
                    .map_err(|error| HostError::UbootEnv {
                        path: p.clone(),
                        error,
                    })?;
                    fsops::write_in_place(p, *off, &buf).map_err(host_io(p))
                }
                None => {
                    uboot_env::write(&mut buf, Layout::Redundant, 1, vars, &set).map_err(
                        |error| HostError::UbootEnv {
                            path: path0.clone(),
                            error,
                        },
                    )?;
                    // Second copy first: the first copy's file appearing means both exist.
                    for (p, off) in copies.iter().rev() {
                        let whole_file = *off == 0
                            && fs::metadata(p)
                                .map(|m| m.is_file() && m.len() == cfg.env_size as u64)
                                .unwrap_or(true);
                        if whole_file {
                            fsops::write_atomic(p, &buf, 0o644).map_err(host_io(p))?;
                        } else {
                            fsops::write_in_place(p, *off, &buf).map_err(host_io(p))?;
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
            grub_env::write(&mut buf, vars, &set).map_err(|error| HostError::GrubEnv {
                path: path0.clone(),
                error,
            })?;
            fsops::write_atomic(&path0, &buf, 0o644).map_err(host_io(&path0))
        }
    }
}

/// The value of a variable, decoded.
pub fn get<'a>(img: &'a EnvImage, key: &str) -> Option<&'a str> {
    img.loaded
        .vars
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod test {
    use super::*;
    use bootloader_hooks::{Operation, Slot, SlotName};

    fn roundtrip(cfg: &BootConfig) {
        assert!(matches!(read(cfg).unwrap(), EnvContent::Missing));
        let st = BootState::initial(Slot::A, SlotName::from_str("c0.0").unwrap());
        write(cfg, None, &st, &[("ECU_A_ARGS", Some("ecu.slot=A x\\y"))]).unwrap();
        let EnvContent::Ready(img, got) = read(cfg).unwrap() else {
            panic!("not ready")
        };
        assert_eq!(*got, st);
        assert_eq!(get(&img, "ECU_A_ARGS"), Some("ecu.slot=A x\\y"));
        // The bootloader's view (bootloader-hooks host API) agrees, and its writes are read back.
        let host = cfg.boot_env();
        assert_eq!(host.load().unwrap(), st);
        let mut st2 = st;
        st2.stage(Slot::B, 3, SlotName::from_str("c1.0").unwrap())
            .unwrap();
        write(
            cfg,
            Some(&img),
            &st2,
            &[("ECU_B_ARGS", Some("b")), ("ECU_A_ARGS", None)],
        )
        .unwrap();
        assert_eq!(host.load().unwrap(), st2);
        let _ = host.apply(&Operation::Boot).unwrap();
        let EnvContent::Ready(img, got) = read(cfg).unwrap() else {
            panic!("not ready")
        };
        assert_eq!(got.slot(Slot::B).tries_left, 2);
        assert_eq!(get(&img, "ECU_B_ARGS"), Some("b"));
        assert_eq!(get(&img, "ECU_A_ARGS"), None);
    }

    #[test]
    fn every_backend_round_trips_with_the_host_api() {
        for text in [
            "backend = uboot-redundant\n",
            "backend = uboot\n",
            "backend = grub\n",
            "backend = uboot\nscheme = rauc\n",
        ] {
            let d = tempfile::tempdir().unwrap();
            fs::create_dir_all(d.path().join("boot")).unwrap();
            let cfg = BootConfig::parse(d.path(), Path::new("agent.conf"), text).unwrap();
            if cfg.scheme.name() == "rauc" {
                // RAUC cannot express "successful"; just check the write/read cycle.
                let st = BootState::initial(Slot::A, SlotName::from_str("n").unwrap());
                write(&cfg, None, &st, &[]).unwrap();
                assert!(matches!(read(&cfg).unwrap(), EnvContent::Ready(..)));
                continue;
            }
            roundtrip(&cfg);
        }
    }
}
