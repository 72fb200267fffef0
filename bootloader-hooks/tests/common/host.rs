//! A file-backed boot environment for the tests: what a bootloader does with its environment
//! (load it, apply one operation, store it), over image files, built only from the crate's
//! pure encoders and decisions. The agent's own reader and writer (with its power-loss
//! discipline) is `agent_linux::deploy::env`; this one writes plainly, as `saveenv` does.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bootloader_hooks::grub_env::{self, GrubEnv};
use bootloader_hooks::uboot_env::{self, Env, Layout};
use bootloader_hooks::{Applied, BootState, Flavor, Operation, Scheme, VarSet};

/// Where the environment lives.
#[derive(Clone, Debug)]
pub enum Backend {
    /// One U-Boot copy of `size` bytes at `offset` of `path`.
    UbootSingle {
        path: PathBuf,
        offset: u64,
        size: usize,
    },
    /// Two U-Boot copies of `size` bytes each.
    UbootRedundant {
        copies: [(PathBuf, u64); 2],
        size: usize,
    },
    /// A GRUB environment block file (its size is kept).
    Grub { path: PathBuf },
}

impl Backend {
    pub fn uboot_single(path: impl Into<PathBuf>, offset: u64, size: usize) -> Backend {
        Backend::UbootSingle {
            path: path.into(),
            offset,
            size,
        }
    }

    pub fn uboot_redundant(
        path0: impl Into<PathBuf>,
        offset0: u64,
        path1: impl Into<PathBuf>,
        offset1: u64,
        size: usize,
    ) -> Backend {
        Backend::UbootRedundant {
            copies: [(path0.into(), offset0), (path1.into(), offset1)],
            size,
        }
    }

    pub fn grub(path: impl Into<PathBuf>) -> Backend {
        Backend::Grub { path: path.into() }
    }

    fn flavor(&self) -> Flavor {
        match self {
            Backend::Grub { .. } => Flavor::Grub,
            _ => Flavor::UBoot,
        }
    }
}

/// Any failure, as the message the crate's errors display.
#[derive(Debug)]
pub struct HostError(String);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostError {}

fn err(path: &Path, e: impl std::fmt::Display) -> HostError {
    HostError(format!("{}: {e}", path.display()))
}

fn read_at(path: &Path, offset: u64, size: usize) -> Result<Vec<u8>, HostError> {
    let mut f = fs::File::open(path).map_err(|e| err(path, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| err(path, e))?;
    let mut buf = vec![0u8; size];
    f.read_exact(&mut buf).map_err(|e| err(path, e))?;
    Ok(buf)
}

fn write_at(path: &Path, offset: u64, data: &[u8]) -> Result<(), HostError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| err(path, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| err(path, e))?;
    f.write_all(data).map_err(|e| err(path, e))?;
    f.sync_all().map_err(|e| err(path, e))
}

/// A backend plus the scheme of its variables.
#[derive(Clone, Debug)]
pub struct BootEnv {
    pub backend: Backend,
    pub scheme: Scheme,
}

impl BootEnv {
    pub fn new(backend: Backend, scheme: Scheme) -> BootEnv {
        BootEnv { backend, scheme }
    }

    /// Loads the boot state.
    pub fn load(&self) -> Result<BootState, HostError> {
        self.with_state(None, |_, _| Ok(None)).map(|(st, _)| st)
    }

    /// Loads the state, applies `op` and, if it changed anything, stores the result.
    pub fn apply(&self, op: &Operation) -> Result<Applied, HostError> {
        self.with_state(None, |st, _| {
            let applied = st.apply(op).map_err(|e| HostError(e.to_string()))?;
            Ok(Some(applied))
        })
        .map(|(_, a)| a.expect("apply returns what it applied"))
    }

    /// Stores `state`, keeping the variables that are not the scheme's.
    pub fn store(&self, state: &BootState) -> Result<(), HostError> {
        self.with_state(Some(*state), |_, _| Ok(None)).map(|_| ())
    }

    /// Loads the variables, calls `f` on the decoded state (or on `replace`, without decoding); when `f` returns `Some` and the
    /// state changed, writes the new state (the other variables kept) as the bootloader does:
    /// a redundant U-Boot env into the copy that is not current, with the next flag.
    fn with_state(
        &self,
        replace: Option<BootState>,
        f: impl FnOnce(&mut BootState, Flavor) -> Result<Option<Applied>, HostError>,
    ) -> Result<(BootState, Option<Applied>), HostError> {
        let flavor = self.backend.flavor();
        match &self.backend {
            Backend::UbootSingle { path, offset, size } => {
                let b = read_at(path, *offset, *size)?;
                let env = Env::parse(&b, Layout::Single)
                    .map_err(|e| err(path, uboot_env::EnvError::from(e)))?;
                let (mut st, before) = match replace {
                    Some(s) => (s, None),
                    None => {
                        let d = self.scheme.decode(flavor, &env).map_err(|e| err(path, e))?;
                        (d, Some(d))
                    }
                };
                let applied = f(&mut st, flavor)?;
                if Some(st) != before {
                    let mut set = VarSet::new();
                    self.scheme
                        .encode(flavor, &st, &env, &mut set)
                        .map_err(|e| err(path, e))?;
                    let mut out = vec![0u8; *size];
                    uboot_env::write(&mut out, Layout::Single, 0, env.vars(), &set)
                        .map_err(|e| err(path, e))?;
                    write_at(path, *offset, &out)?;
                }
                Ok((st, applied))
            }
            Backend::UbootRedundant { copies, size } => {
                let a = read_at(&copies[0].0, copies[0].1, *size)?;
                let b = read_at(&copies[1].0, copies[1].1, *size)?;
                let (cur, env) =
                    uboot_env::parse_redundant(&a, &b).map_err(|e| err(&copies[0].0, e))?;
                let (mut st, before) = match replace {
                    Some(s) => (s, None),
                    None => {
                        let d = self
                            .scheme
                            .decode(flavor, &env)
                            .map_err(|e| err(&copies[0].0, e))?;
                        (d, Some(d))
                    }
                };
                let applied = f(&mut st, flavor)?;
                if Some(st) != before {
                    let mut set = VarSet::new();
                    self.scheme
                        .encode(flavor, &st, &env, &mut set)
                        .map_err(|e| err(&copies[0].0, e))?;
                    let (target, flag) = uboot_env::next_copy(cur, env.flag().unwrap_or(0));
                    let (p, off) = &copies[target];
                    let mut out = vec![0u8; *size];
                    uboot_env::write(&mut out, Layout::Redundant, flag, env.vars(), &set)
                        .map_err(|e| err(p, e))?;
                    write_at(p, *off, &out)?;
                }
                Ok((st, applied))
            }
            Backend::Grub { path } => {
                let b = fs::read(path).map_err(|e| err(path, e))?;
                let env = GrubEnv::parse(&b).map_err(|e| err(path, e))?;
                let (mut st, before) = match replace {
                    Some(s) => (s, None),
                    None => {
                        let d = self.scheme.decode(flavor, &env).map_err(|e| err(path, e))?;
                        (d, Some(d))
                    }
                };
                let applied = f(&mut st, flavor)?;
                if Some(st) != before {
                    let mut set = VarSet::new();
                    self.scheme
                        .encode(flavor, &st, &env, &mut set)
                        .map_err(|e| err(path, e))?;
                    let mut out = vec![0u8; b.len()];
                    grub_env::write(&mut out, env.vars(), &set).map_err(|e| err(path, e))?;
                    fs::write(path, &out).map_err(|e| err(path, e))?;
                }
                Ok((st, applied))
            }
        }
    }

    /// Creates the environment holding only `state` (a U-Boot env of its size, both copies of
    /// a redundant one with flag 1; a 1024-byte GRUB block), replacing whatever is there.
    pub fn init(&self, state: &BootState) -> Result<(), HostError> {
        let flavor = self.backend.flavor();
        let mut set = VarSet::new();
        self.scheme
            .encode(flavor, state, &bootloader_hooks::vars::Empty, &mut set)
            .map_err(|e| HostError(e.to_string()))?;
        match &self.backend {
            Backend::UbootSingle { path, offset, size } => {
                let mut buf = vec![0u8; *size];
                uboot_env::write(&mut buf, Layout::Single, 0, uboot_env::no_vars(), &set)
                    .map_err(|e| err(path, e))?;
                write_at(path, *offset, &buf)
            }
            Backend::UbootRedundant { copies, size } => {
                let mut buf = vec![0u8; *size];
                uboot_env::write(&mut buf, Layout::Redundant, 1, uboot_env::no_vars(), &set)
                    .map_err(|e| err(&copies[0].0, e))?;
                for (p, off) in copies {
                    write_at(p, *off, &buf)?;
                }
                Ok(())
            }
            Backend::Grub { path } => {
                let mut buf = vec![0u8; grub_env::DEFAULT_SIZE];
                grub_env::write(&mut buf, grub_env::no_vars(), &set).map_err(|e| err(path, e))?;
                fs::write(path, &buf).map_err(|e| err(path, e))
            }
        }
    }
}
