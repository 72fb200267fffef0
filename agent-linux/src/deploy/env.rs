//! The boot environment's one reader and writer on Linux: every file or device access to a
//! U-Boot or GRUB environment (the deployment commands, `bootenv show`, the tests' bootloader)
//! goes through here. `bootloader-hooks` holds only the pure parts: the encodings
//! (`uboot_env`, `grub_env`), the variable schemes and the boot decision.
//!
//! **Reads are bounded.** A U-Boot copy is exactly `env-size` bytes at its offset (a regular
//! file too short for it is an error, a device that ends early too); a GRUB block is read up
//! to `env-size` bytes (default 16 KiB; a file or device longer than that, such as
//! `/dev/zero`, is refused). Nothing is allocated beyond the configured size, which
//! `agent.conf` bounds to 16 MiB ([`crate::bootcfg::MAX_ENV_SIZE`]).
//!
//! **Writes** go through [`crate::fsops`] (so the power-loss tests can cut them), one atomic
//! update per change, with this discipline:
//!
//! - redundant U-Boot: the copy that is not current is rewritten in place with the next flag
//!   (`uboot_env::next_copy`) and fsynced; a torn write fails its CRC and the current copy
//!   stays in force;
//! - single U-Boot in a regular file of exactly the env size at offset 0, and GRUB: temp file,
//!   fsync, rename, fsync of the directory; a single U-Boot env anywhere else (a device, an
//!   offset) is rewritten in place and fsynced (not atomic: use the redundant layout where
//!   power can fail);
//! - Mender's GRUB layout (`env` a directory with `mender_grubenv1/2`, see
//!   [`mender_grubenv`]): both env files, each between its lock's `editing=1` and `editing=0`,
//!   2 before 1, as `grub-mender-grubenv-set` does; reads take the file GRUB's script uses;
//! - a fresh redundant environment: the second copy first, the first copy last, each created
//!   as above (temp + rename when it is a whole regular file), so "the first file exists"
//!   means "both do".
//!
//! The per-slot kernel arguments (`ECU_A_ARGS`, `ECU_B_ARGS`) are written in the same atomic
//! update as the boot state.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bootloader_hooks::grub_env::{self, GrubEnv, GrubEnvError};
use bootloader_hooks::scheme::{SchemeBoot, SchemeError};
use bootloader_hooks::uboot_env::{self, Env, Layout};
use bootloader_hooks::{
    Applied, BootState, Decision, DecisionKind, EnvRead, Flavor, Operation, Scheme, Slot,
    StateError, VarSet,
};

use crate::bootcfg::{BackendKind, BootConfig};
use crate::fsops;

/// Why a boot environment could not be read, decoded or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum BootEnvError {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A file or device is shorter than the environment it should hold.
    Short {
        /// The file.
        path: PathBuf,
        /// Bytes needed from the start of the file.
        needed: u64,
        /// Bytes there are.
        len: u64,
    },
    /// A GRUB environment longer than the configured bound (`env-size`).
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        limit: usize,
    },
    /// The U-Boot environment is invalid or the update does not fit.
    Uboot {
        /// The file (the first copy's for a redundant env).
        path: PathBuf,
        /// Why.
        error: uboot_env::EnvError,
    },
    /// The GRUB environment block is invalid or the update does not fit.
    Grub {
        /// The file.
        path: PathBuf,
        /// Why.
        error: GrubEnvError,
    },
    /// The variables do not describe a boot state in the chosen scheme.
    Scheme(SchemeError),
    /// The operation is not possible in this state.
    State(StateError),
}

impl fmt::Display for BootEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootEnvError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            BootEnvError::Short { path, needed, len } => write!(
                f,
                "{}: holds {len} bytes but the environment needs {needed}; check the env size and offset",
                path.display()
            ),
            BootEnvError::TooLarge { path, limit } => write!(
                f,
                "{}: longer than {limit} bytes, the most an environment may have here (env-size); check that it names the environment block",
                path.display()
            ),
            BootEnvError::Uboot { path, error } => write!(f, "{}: {error}", path.display()),
            BootEnvError::Grub { path, error } => write!(f, "{}: {error}", path.display()),
            BootEnvError::Scheme(e) => write!(f, "{e}"),
            BootEnvError::State(e) => write!(f, "{e}"),
        }
    }
}

/// `Display` already includes the underlying error, so `source()` is `None` (no duplicate
/// lines in an error chain).
impl std::error::Error for BootEnvError {}

impl From<SchemeError> for BootEnvError {
    fn from(e: SchemeError) -> Self {
        BootEnvError::Scheme(e)
    }
}

impl From<StateError> for BootEnvError {
    fn from(e: StateError) -> Self {
        BootEnvError::State(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BootEnvError + '_ {
    move |source| BootEnvError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads exactly `size` bytes at `offset` of `path` (a file or a device), allocating no more
/// than `size`.
fn read_at(path: &Path, offset: u64, size: usize) -> Result<Vec<u8>, BootEnvError> {
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
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, BootEnvError> {
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
enum Raw {
    UbootSingle(Vec<u8>),
    UbootRedundant([Vec<u8>; 2]),
    Grub(Vec<u8>),
}

fn read_raw(cfg: &BootConfig) -> Result<Raw, BootEnvError> {
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
struct StoredVars {
    /// `(name, value)`; GRUB values keep their `\` escapes.
    vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a redundant U-Boot env: the current copy (0 or 1) and its flag.
    current_copy: Option<(usize, u8)>,
}

impl Raw {
    /// Checks the environment (CRC; for a redundant U-Boot env, which copy is current; the
    /// GRUB block's signature and layout) and returns its variables as stored. `path` names
    /// the environment in errors.
    fn stored_vars(&self, path: &Path) -> Result<StoredVars, BootEnvError> {
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
    fn loaded(&self, flavor: Flavor) -> Loaded {
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

/// The variables of an environment, decoded, in stored order, with where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// `(name, value)`; GRUB values are unescaped.
    pub vars: Vec<(String, String)>,
    /// For a redundant U-Boot env: the current copy (0 or 1) and its flag.
    pub current_copy: Option<(usize, u8)>,
}

impl Loaded {
    /// The value of `key` (the last one when it is set twice, as the bootloaders read it).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl EnvRead for Loaded {
    fn get_raw(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(str::as_bytes)
    }
}

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

impl EnvImage {
    fn new(cfg: &BootConfig, raw: &Raw, stored: StoredVars) -> EnvImage {
        EnvImage {
            loaded: stored.loaded(flavor(cfg)),
            raw_vars: stored.vars,
            grub_size: match raw {
                Raw::Grub(b) => b.len(),
                _ => 0,
            },
        }
    }

    /// The decoded value of a variable.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.loaded.get(key)
    }
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

fn is_regular(p: &Path) -> bool {
    fs::metadata(p).map(|m| m.is_file()).unwrap_or(false)
}

/// Erased flash (all 0xFF) or zeroes: an environment never written.
fn blank(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0xff) || b.iter().all(|&x| x == 0)
}

/// The bootloader flavor of the configured backend.
pub fn flavor(cfg: &BootConfig) -> Flavor {
    if cfg.kind == BackendKind::Grub {
        Flavor::Grub
    } else {
        Flavor::UBoot
    }
}

/// Reads the environment named by `cfg`, leniently: a missing file or a blank environment is
/// [`EnvContent::Missing`], a valid one without the scheme's variables
/// [`EnvContent::NoBootState`].
pub fn read(cfg: &BootConfig) -> Result<EnvContent, BootEnvError> {
    let first = &cfg.env.0;
    if !first.exists() || mender_grubenv(cfg).is_some_and(|m| !m[0].0.exists()) {
        return Ok(EnvContent::Missing);
    }
    let raw = read_raw(cfg)?;
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
    let img = EnvImage::new(cfg, &raw, stored);
    match cfg.scheme.decode(flavor(cfg), &img.loaded) {
        Ok(state) => Ok(EnvContent::Ready(img, Box::new(state))),
        Err(SchemeError::NotThisScheme { .. }) => Ok(EnvContent::NoBootState(img)),
        Err(e) => Err(BootEnvError::Scheme(e)),
    }
}

/// Reads the environment strictly, as a bootloader or an integrator's check does: anything
/// but a valid environment holding a boot state is an error saying what is wrong.
pub fn load(cfg: &BootConfig) -> Result<(EnvImage, BootState), BootEnvError> {
    let raw = read_raw(cfg)?;
    let stored = raw.stored_vars(&cfg.env.0)?;
    let img = EnvImage::new(cfg, &raw, stored);
    let state = cfg.scheme.decode(flavor(cfg), &img.loaded)?;
    Ok((img, state))
}

/// What the bootloader does at the next boot of the environment `img`: the scheme's own boot
/// code ([`Scheme::boot`]) on its variables, with the variables it stores.
pub fn next_boot(cfg: &BootConfig, img: &EnvImage) -> Result<SchemeBoot, BootEnvError> {
    Ok(cfg.scheme.boot(flavor(cfg), &img.loaded)?)
}

/// Loads the state, applies `op` and, if it changed anything, stores the result. With
/// [`Operation::Boot`] this is what the bootloader does at a boot ([`next_boot`]), its writes
/// stored as it stores them.
pub fn apply(cfg: &BootConfig, op: &Operation) -> Result<Applied, BootEnvError> {
    let (img, mut state) = load(cfg)?;
    if let Operation::Boot = op {
        let b = next_boot(cfg, &img)?;
        if b.decision.changed {
            write_set(cfg, Some(&img), &b.writes, &[])?;
            log::info!("boot state updated by a boot: {:?}", b.decision.kind);
        }
        return Ok(Applied {
            changed: b.decision.changed,
            decision: Some(b.decision),
        });
    }
    let applied = state.apply(op)?;
    if applied.changed {
        write(cfg, Some(&img), &state, &[])?;
        log::info!("boot state updated: {op:?}");
    }
    Ok(applied)
}

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
/// state, and what a boot stores ([`next_boot`]'s writes).
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
            match mender_grubenv(cfg) {
                Some(files) => write_mender_grubenv(&files, &buf),
                None => fsops::write_atomic(&path0, &buf, 0o644).map_err(io_err(&path0)),
            }
        }
    }
}

/// Mender's GRUB layout (grub-mender-grubenv): when a GRUB `env` names a directory, it holds
/// `mender_grubenv1/{env,lock}` and `mender_grubenv2/{env,lock}`; `None` otherwise.
pub fn mender_grubenv(cfg: &BootConfig) -> Option<[(PathBuf, PathBuf); 2]> {
    if cfg.kind != BackendKind::Grub || !cfg.env.0.is_dir() {
        return None;
    }
    let pair = |n: u8| {
        let d = cfg.env.0.join(format!("mender_grubenv{n}"));
        (d.join("env"), d.join("lock"))
    };
    Some([pair(1), pair(2)])
}

/// The `editing` value of a Mender lock file; `None` when it cannot be read (GRUB's
/// `editing=invalid`).
fn lock_editing(lock: &Path) -> Option<Vec<u8>> {
    let b = read_bounded(lock, grub_env::DEFAULT_SIZE * 16).ok()?;
    let env = GrubEnv::parse(&b).ok()?;
    let v = env.vars().filter(|(k, _)| *k == b"editing").last()?.1;
    Some(v.to_vec())
}

/// The GRUB environment file the bootloader reads: the one file, or under Mender's layout the
/// one `mender_grub.cfg` uses (04_mender_setup_env_functions_grub.cfg, `mender_check_and_
/// restore_env`): env 1, unless lock 2 is settled (`editing=0`) and lock 1 is not, when GRUB
/// first restores env 1 from env 2.
fn grub_file(cfg: &BootConfig) -> Result<PathBuf, BootEnvError> {
    let Some([(env1, lock1), (env2, lock2)]) = mender_grubenv(cfg) else {
        return Ok(cfg.env.0.clone());
    };
    let settled = |l: &Path| lock_editing(l).as_deref() == Some(b"0");
    Ok(if settled(&lock2) && !settled(&lock1) {
        env2
    } else {
        env1
    })
}

/// A Mender lock file saying `editing=<value>`: the existing block with the value's byte
/// flipped in place (what `grub-editenv lock set editing=…` does, so `lock.sha256sum`, the
/// hash of the settled lock, keeps matching), or a fresh block as grub-mender-grubenv's
/// `make-env-and-lock-files` makes it.
fn lock_bytes(existing: Option<&[u8]>, value: u8) -> Vec<u8> {
    if let Some((b, i)) = existing.and_then(|b| editing_at(b).map(|i| (b, i))) {
        let mut out = b.to_vec();
        out[i] = value;
        return out;
    }
    let mut out = Vec::with_capacity(grub_env::DEFAULT_SIZE);
    out.extend_from_slice(b"# GRUB Environment Block\nediting=");
    out.push(value);
    out.push(b'\n');
    out.resize(grub_env::DEFAULT_SIZE, b'#');
    out
}

/// The offset of the `0`/`1` of an `editing=` line in a valid GRUB block.
fn editing_at(b: &[u8]) -> Option<usize> {
    GrubEnv::parse(b).ok()?;
    let i = b.windows(11).position(|w| {
        w.starts_with(b"\nediting=") && matches!(w[9], b'0' | b'1') && w[10] == b'\n'
    })?;
    Some(i + 9)
}

/// Writes `block` to both Mender environment files with grub-mender-grubenv-set's protocol
/// (`grub-mender-grubenv-print` lines 227-247): lock 2 `editing=1`, env 2, lock 2
/// `editing=0`, then the same for 1; each file replaced atomically. A lock that had to be
/// made afresh gets its `lock.sha256sum` rewritten.
fn write_mender_grubenv(files: &[(PathBuf, PathBuf); 2], block: &[u8]) -> Result<(), BootEnvError> {
    for (env, lock) in files.iter().rev() {
        let old = read_bounded(lock, grub_env::DEFAULT_SIZE * 16).ok();
        let settled = lock_bytes(old.as_deref(), b'0');
        let fresh = old.as_deref().and_then(editing_at).is_none();
        fsops::write_atomic(lock, &lock_bytes(Some(&settled), b'1'), 0o644)
            .map_err(io_err(lock))?;
        fsops::write_atomic(env, block, 0o644).map_err(io_err(env))?;
        fsops::write_atomic(lock, &settled, 0o644).map_err(io_err(lock))?;
        if fresh {
            use sha2::Digest;
            let sum = sha2::Sha256::digest(&settled);
            let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
            let path = lock.with_file_name("lock.sha256sum");
            fsops::write_atomic(&path, format!("{hex}  lock\n").as_bytes(), 0o644)
                .map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// One slot in a [`Report`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SlotReport {
    /// Boot priority.
    pub priority: u8,
    /// Boots left on trial.
    pub tries_left: u8,
    /// Marked good.
    pub successful: bool,
    /// The deployment or commit it holds (empty: none).
    pub name: String,
}

/// Both slots of a [`Report`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SlotsReport {
    /// Slot A.
    #[serde(rename = "A")]
    pub a: SlotReport,
    /// Slot B.
    #[serde(rename = "B")]
    pub b: SlotReport,
}

/// The current copy of a redundant U-Boot environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// 0 or 1.
    pub index: usize,
    /// Its flag.
    pub flag: u8,
}

/// The decoded state of an environment and the decision the next boot takes: what
/// `ecu-agent bootenv show` prints (as a table, or this structure as JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// `native`, `rauc` or `mender`.
    pub scheme: &'static str,
    /// `uboot` or `grub`.
    pub bootloader: &'static str,
    /// Boot-state revision.
    pub revision: u32,
    /// The slot the next boot takes (`A` or `B`).
    pub next_boot: &'static str,
    /// Why: `confirmed`, `trial`, `last-resort`, `rollback`, `refill` or `rescue` in JSON
    /// ([`DecisionKind::as_str`]).
    pub next_boot_kind: DecisionKind,
    /// Whether the next boot writes the environment (uses a try, or rolls back).
    pub next_boot_writes: bool,
    /// Both slots.
    pub slots: SlotsReport,
    /// For a redundant U-Boot env: the current copy and its flag.
    pub current_copy: Option<CopyReport>,
}

impl Report {
    /// The report of `state`, decoded with `scheme` from a `flavor` environment.
    pub fn new(
        scheme: Scheme,
        flavor: Flavor,
        state: &BootState,
        current_copy: Option<(usize, u8)>,
    ) -> Report {
        Report::with_decision(scheme, flavor, state, &state.decide(), current_copy)
    }

    /// The report of `state` with `d` as the next boot (the scheme's own boot code,
    /// [`next_boot`]).
    pub fn with_decision(
        scheme: Scheme,
        flavor: Flavor,
        state: &BootState,
        d: &Decision,
        current_copy: Option<(usize, u8)>,
    ) -> Report {
        let slot = |s: Slot| {
            let st = state.slot(s);
            SlotReport {
                priority: st.priority,
                tries_left: st.tries_left,
                successful: st.successful,
                name: st.name.as_str().to_string(),
            }
        };
        Report {
            scheme: scheme.name(),
            bootloader: flavor.as_str(),
            revision: state.revision,
            next_boot: d.slot.as_str(),
            next_boot_kind: d.kind,
            next_boot_writes: d.changed,
            slots: SlotsReport {
                a: slot(Slot::A),
                b: slot(Slot::B),
            },
            current_copy: current_copy.map(|(index, flag)| CopyReport { index, flag }),
        }
    }
}

/// Reads the environment strictly and reports its state and the next boot's decision.
pub fn report(cfg: &BootConfig) -> Result<Report, BootEnvError> {
    let (img, state) = load(cfg)?;
    let next = next_boot(cfg, &img)?;
    Ok(Report::with_decision(
        cfg.scheme,
        flavor(cfg),
        &state,
        &next.decision,
        img.loaded.current_copy,
    ))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scheme: {}  revision: {}", self.scheme, self.revision)?;
        if let Some(c) = self.current_copy {
            writeln!(f, "current copy: {} (flag {})", c.index + 1, c.flag)?;
        }
        writeln!(f, "slot  priority  tries_left  successful  name")?;
        for (s, st) in [(Slot::A, &self.slots.a), (Slot::B, &self.slots.b)] {
            writeln!(
                f,
                "{:<5} {:<9} {:<11} {:<11} {}",
                s.as_str(),
                st.priority,
                st.tries_left,
                if st.successful { "yes" } else { "no" },
                if st.name.is_empty() { "-" } else { &st.name }
            )?;
        }
        write!(
            f,
            "next boot: {} ({}{})",
            self.next_boot,
            self.next_boot_kind.as_str(),
            if self.next_boot_writes && self.next_boot_kind == DecisionKind::Trial {
                ", one try used"
            } else if self.next_boot_writes {
                ", the bootloader writes the environment"
            } else {
                ", nothing written"
            }
        )
    }
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
        assert_eq!(img.get("ECU_A_ARGS"), Some("ecu.slot=A x\\y"));
        // The strict reader (the bootloader's view) agrees, and a boot's write is read back.
        assert_eq!(load(cfg).unwrap().1, st);
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
        assert_eq!(load(cfg).unwrap().1, st2);
        let _ = apply(cfg, &Operation::Boot).unwrap();
        let EnvContent::Ready(img, got) = read(cfg).unwrap() else {
            panic!("not ready")
        };
        assert_eq!(got.slot(Slot::B).tries_left, 2);
        assert_eq!(img.get("ECU_B_ARGS"), Some("b"));
        assert_eq!(img.get("ECU_A_ARGS"), None);
    }

    #[test]
    fn every_backend_round_trips() {
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

    #[test]
    fn stored_vars_keep_what_is_stored_and_loaded_decodes_it() {
        // GRUB: the stored value keeps its escape; the loaded one is unescaped.
        let mut block = vec![b'#'; grub_env::DEFAULT_SIZE];
        let vars = [(&b"k"[..], &b"a\\\\b"[..])];
        grub_env::write(&mut block, vars.iter().copied(), &VarSet::new()).unwrap();
        let stored = Raw::Grub(block).stored_vars(Path::new("grubenv")).unwrap();
        assert_eq!(stored.vars, [(b"k".to_vec(), b"a\\\\b".to_vec())]);
        assert_eq!(stored.current_copy, None);
        let loaded = stored.loaded(Flavor::Grub);
        assert_eq!(loaded.vars, [("k".to_string(), "a\\b".to_string())]);
        assert_eq!(loaded.get_raw("k"), Some(&b"a\\b"[..]));
        assert!(matches!(
            Raw::Grub(vec![0; 1024]).stored_vars(Path::new("grubenv")),
            Err(BootEnvError::Grub { .. })
        ));

        // Redundant U-Boot: the copy with the newer flag is current, whichever file it is in.
        let copy = |flag: u8, value: &[u8]| {
            let mut b = vec![0u8; 256];
            let vars = [(&b"v"[..], value)];
            uboot_env::write(
                &mut b,
                Layout::Redundant,
                flag,
                vars.iter().copied(),
                &VarSet::new(),
            )
            .unwrap();
            b
        };
        let raw = Raw::UbootRedundant([copy(1, b"old"), copy(2, b"new")]);
        let stored = raw.stored_vars(Path::new("env")).unwrap();
        assert_eq!(stored.current_copy, Some((1, 2)));
        assert_eq!(stored.vars, [(b"v".to_vec(), b"new".to_vec())]);
        let loaded = stored.loaded(Flavor::UBoot);
        assert_eq!(loaded.vars, [("v".to_string(), "new".to_string())]);
        assert_eq!(loaded.current_copy, Some((1, 2)));
        assert!(matches!(
            Raw::UbootSingle(vec![0xff; 256]).stored_vars(Path::new("env")),
            Err(BootEnvError::Uboot { .. })
        ));
    }

    #[test]
    fn reads_are_bounded_by_the_configured_size() {
        let d = tempfile::tempdir().unwrap();
        // A GRUB environment that never ends.
        let cfg = BootConfig::parse(
            d.path(),
            Path::new("c"),
            "backend = grub\nenv = /dev/zero\n",
        )
        .unwrap();
        let e = read(&cfg).unwrap_err();
        assert!(
            matches!(e, BootEnvError::TooLarge { limit, .. } if limit == cfg.env_size),
            "{e}"
        );
        assert!(e.to_string().contains("longer than 16384 bytes"), "{e}");
        // A U-Boot env in a file shorter than env-size: refused before any allocation.
        let f = d.path().join("empty.env");
        fs::write(&f, b"").unwrap();
        let text = format!(
            "backend = uboot\nenv = {}\nenv-size = 0x1000000\n",
            f.display()
        );
        let cfg = BootConfig::parse(d.path(), Path::new("c"), &text).unwrap();
        let e = read(&cfg).unwrap_err();
        assert!(
            matches!(
                e,
                BootEnvError::Short {
                    needed: 0x1000000,
                    len: 0,
                    ..
                }
            ),
            "{e}"
        );
        // A device that ends before the environment does.
        let e = read_at(Path::new("/dev/null"), 0, 16).unwrap_err();
        assert!(
            matches!(
                e,
                BootEnvError::Short {
                    needed: 16,
                    len: 0,
                    ..
                }
            ),
            "{e}"
        );
        // A device that does not end: exactly env-size bytes are read.
        assert_eq!(read_at(Path::new("/dev/zero"), 7, 100).unwrap().len(), 100);
    }

    #[test]
    fn report_json_is_typed() {
        let mut st = BootState::initial(Slot::A, SlotName::from_str("c0").unwrap());
        st.stage(Slot::B, 3, SlotName::from_str("c1").unwrap())
            .unwrap();
        let r = Report::new(Scheme::Native, Flavor::UBoot, &st, Some((1, 7)));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["scheme"], "native");
        assert_eq!(v["bootloader"], "uboot");
        assert_eq!(v["next_boot"], "B");
        assert_eq!(v["next_boot_kind"], "trial");
        assert_eq!(v["next_boot_writes"], true);
        assert_eq!(v["slots"]["B"]["tries_left"], 3);
        assert_eq!(v["slots"]["A"]["name"], "c0");
        assert_eq!(v["current_copy"]["index"], 1);
        assert_eq!(v["current_copy"]["flag"], 7);
        // Every kind is its name in JSON, as scripts read it.
        for k in [
            DecisionKind::Confirmed,
            DecisionKind::Trial,
            DecisionKind::LastResort,
            DecisionKind::Refill,
            DecisionKind::Rescue,
            DecisionKind::Rollback,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let text = r.to_string();
        assert!(text.contains("current copy: 2 (flag 7)"), "{text}");
        assert!(
            text.contains("next boot: B (trial, one try used)"),
            "{text}"
        );
    }

    /// Mender's GRUB layout: both env files written with the lock protocol, read back by the
    /// real grub-editenv, locks settled and `lock.sha256sum` still valid; a torn write (a lock
    /// left at `editing=1`) reads the file GRUB's `mender_grub.cfg` would use.
    #[test]
    fn mender_grubenv_writes_both_files_and_reads_the_one_grub_uses() {
        let tool = |c: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(c).is_file()))
        };
        if !tool("grub-editenv") || !tool("sha256sum") {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "grub-editenv needed"
            );
            eprintln!("SKIP: grub-editenv not installed");
            return;
        }
        let run = |c: &mut std::process::Command| {
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout).unwrap()
        };
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("grub-mender-grubenv");
        for n in [1, 2] {
            let sub = dir.join(format!("mender_grubenv{n}"));
            fs::create_dir_all(&sub).unwrap();
            let env = sub.join("env");
            run(std::process::Command::new("grub-editenv")
                .arg(&env)
                .arg("create"));
            run(std::process::Command::new("grub-editenv").arg(&env).args([
                "set",
                "bootcount=0",
                "mender_boot_part=2",
                "upgrade_available=0",
            ]));
            // As grub-mender-grubenv's make-env-and-lock-files makes them.
            fs::write(sub.join("lock"), lock_bytes(None, b'0')).unwrap();
            run(std::process::Command::new("sh")
                .arg("-c")
                .arg("sha256sum lock > lock.sha256sum")
                .current_dir(&sub));
        }
        let text = format!("backend = grub\nscheme = mender\nenv = {}\n", dir.display());
        let cfg = BootConfig::parse(d.path(), Path::new("agent.conf"), &text).unwrap();
        let (img, st) = load(&cfg).unwrap();
        assert!(st.slot(Slot::A).successful);
        let mut st2 = st;
        st2.stage(Slot::B, 1, SlotName::from_str("v1.0").unwrap())
            .unwrap();
        write(&cfg, Some(&img), &st2, &[]).unwrap();
        for n in [1, 2] {
            let sub = dir.join(format!("mender_grubenv{n}"));
            let list = run(std::process::Command::new("grub-editenv")
                .arg(sub.join("env"))
                .arg("list"));
            for kv in ["mender_boot_part=3", "upgrade_available=1", "bootcount=0"] {
                assert!(list.lines().any(|l| l == kv), "env {n}: {list}");
            }
            let lock = run(std::process::Command::new("grub-editenv")
                .arg(sub.join("lock"))
                .arg("list"));
            assert_eq!(lock, "editing=0\n", "lock {n}");
            run(std::process::Command::new("sha256sum")
                .args(["-c", "lock.sha256sum"])
                .current_dir(&sub));
        }
        assert_eq!(load(&cfg).unwrap().1, st2);
        // A write cut after env 2: lock 1 still says editing=1 and env 1 holds the old values.
        let (img2, _) = load(&cfg).unwrap();
        let mut st3 = st2;
        assert!(st3.mark_good(Slot::B));
        let env1 = dir.join("mender_grubenv1/env");
        let old_env1 = fs::read(&env1).unwrap();
        write(&cfg, Some(&img2), &st3, &[]).unwrap();
        fs::write(&env1, &old_env1).unwrap();
        let lock1 = dir.join("mender_grubenv1/lock");
        fs::write(&lock1, lock_bytes(Some(&fs::read(&lock1).unwrap()), b'1')).unwrap();
        assert_eq!(load(&cfg).unwrap().1, st3, "GRUB restores env 1 from env 2");
        // Lock 2 unsettled: env 1 is read (GRUB restores env 2 from it).
        fs::write(&lock1, lock_bytes(Some(&fs::read(&lock1).unwrap()), b'0')).unwrap();
        let lock2 = dir.join("mender_grubenv2/lock");
        fs::write(&lock2, lock_bytes(Some(&fs::read(&lock2).unwrap()), b'1')).unwrap();
        assert_eq!(load(&cfg).unwrap().1, st2);
    }
}
