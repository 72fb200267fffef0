//! File-backed boot state for the Linux agent (feature `std`).
//!
//! ```no_run
//! use bootloader_hooks::host::{Backend, BootEnv};
//! use bootloader_hooks::{Operation, Scheme, Slot, SlotName};
//!
//! let env = BootEnv::new(
//!     Backend::uboot_redundant("/dev/mtd1", 0, "/dev/mtd2", 0, 0x4000),
//!     Scheme::Native,
//! );
//! // After an install into slot B:
//! let name = SlotName::from_str("6f1c...")?;
//! env.apply(&Operation::Stage { slot: Slot::B, tries: 3, name })?;
//! // On the next boot, once the system is up:
//! env.apply(&Operation::MarkGood { slot: Slot::B })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every change is one load, one pure state change and one atomic store:
//! - U-Boot redundant: the copy that is not current is rewritten in place with the next flag
//!   and synced; a torn write leaves the current copy valid.
//! - U-Boot single at offset 0 of a regular file of exactly the env size, and GRUB env files:
//!   a temporary file in the same directory is written, synced and renamed over the original.
//! - U-Boot single elsewhere (a device or an offset): rewritten in place and synced (not
//!   atomic; use the redundant layout where power can fail).
//!
//! An operation that changes nothing writes nothing.

use std::fmt;
use std::format;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use crate::grub_env::{self, GrubEnv, GrubEnvError};
use crate::scheme::{Flavor, Scheme, SchemeError};
use crate::state::{Applied, BootState, Decision, DecisionKind, Operation, Slot, StateError};
use crate::uboot_env::{self, Env, EnvError, Layout};
use crate::vars::{EnvRead, VarSet};

/// Where the environment lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A single U-Boot environment of `size` bytes at `offset` in `path`.
    UbootSingle {
        /// File or device.
        path: PathBuf,
        /// Byte offset of the environment.
        offset: u64,
        /// `CONFIG_ENV_SIZE`.
        size: usize,
    },
    /// A redundant U-Boot environment: two copies of `size` bytes each.
    UbootRedundant {
        /// File or device and offset of each copy (they may be the same file).
        copies: [(PathBuf, u64); 2],
        /// `CONFIG_ENV_SIZE` (of one copy).
        size: usize,
    },
    /// A GRUB environment block file (its size is kept).
    Grub {
        /// The `grubenv` file.
        path: PathBuf,
    },
}

impl Backend {
    /// A single U-Boot env.
    pub fn uboot_single(path: impl Into<PathBuf>, offset: u64, size: usize) -> Backend {
        Backend::UbootSingle {
            path: path.into(),
            offset,
            size,
        }
    }

    /// A redundant U-Boot env.
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

    /// A GRUB env file.
    pub fn grub(path: impl Into<PathBuf>) -> Backend {
        Backend::Grub { path: path.into() }
    }

    /// Which bootloader reads it.
    pub fn flavor(&self) -> Flavor {
        match self {
            Backend::Grub { .. } => Flavor::Grub,
            _ => Flavor::UBoot,
        }
    }
}

/// Errors of the file-backed API.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A file is shorter than the environment it should hold.
    Short {
        /// The file.
        path: PathBuf,
        /// Bytes needed from the start of the file.
        needed: u64,
        /// File length.
        len: u64,
    },
    /// The U-Boot environment is invalid or the update does not fit.
    UbootEnv {
        /// The file (the first copy's for a redundant env).
        path: PathBuf,
        /// Why.
        error: EnvError,
    },
    /// The GRUB environment block is invalid or the update does not fit.
    GrubEnv {
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

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            HostError::Short { path, needed, len } => write!(
                f,
                "{}: file is {len} bytes but the environment needs {needed}; check the env size and offset",
                path.display()
            ),
            HostError::UbootEnv { path, error } => write!(f, "{}: {error}", path.display()),
            HostError::GrubEnv { path, error } => write!(f, "{}: {error}", path.display()),
            HostError::Scheme(e) => write!(f, "{e}"),
            HostError::State(e) => write!(f, "{e}"),
        }
    }
}

/// `Display` already includes the underlying error, so `source()` is `None` (no duplicate
/// lines in an error chain).
impl std::error::Error for HostError {}

impl From<SchemeError> for HostError {
    fn from(e: SchemeError) -> Self {
        HostError::Scheme(e)
    }
}

impl From<StateError> for HostError {
    fn from(e: StateError) -> Self {
        HostError::State(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HostError + '_ {
    move |source| HostError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `size` bytes at `offset` of `path` (a file or a block device); a regular file too
/// short to hold them is [`HostError::Short`].
pub fn read_at(path: &Path, offset: u64, size: usize) -> Result<Vec<u8>, HostError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    // Block devices report 0; rely on read_exact there.
    if len != 0 && len < offset + size as u64 {
        return Err(HostError::Short {
            path: path.to_path_buf(),
            needed: offset + size as u64,
            len,
        });
    }
    f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
    let mut buf = vec![0u8; size];
    f.read_exact(&mut buf).map_err(io_err(path))?;
    Ok(buf)
}

fn write_in_place(path: &Path, offset: u64, data: &[u8]) -> Result<(), HostError> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Writes `data` to a temporary file next to `path`, syncs it, renames it over `path` and
/// syncs the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), HostError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "env".to_string());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        if let Ok(meta) = fs::metadata(path) {
            let _ = f.set_permissions(meta.permissions());
        }
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The raw bytes of an environment as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raw {
    /// One U-Boot copy.
    UbootSingle(Vec<u8>),
    /// Two U-Boot copies.
    UbootRedundant([Vec<u8>; 2]),
    /// A GRUB block.
    Grub(Vec<u8>),
}

/// The variables of an environment exactly as stored, in stored order: what a writer that
/// keeps every other variable byte for byte starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVars {
    /// `(name, value)`; GRUB values keep their `\` escapes.
    pub vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a redundant U-Boot env: the current copy (0 or 1) and its flag.
    pub current_copy: Option<(usize, u8)>,
}

impl Raw {
    /// Checks the environment (CRC; for a redundant U-Boot env, which copy is current; the
    /// GRUB block's signature and layout) and returns its variables as stored. `path` names
    /// the environment in errors.
    pub fn stored_vars(&self, path: &Path) -> Result<StoredVars, HostError> {
        let own = |(k, v): (&[u8], &[u8])| (k.to_vec(), v.to_vec());
        Ok(match self {
            Raw::UbootSingle(b) => {
                let env = Env::parse(b, Layout::Single).map_err(|e| HostError::UbootEnv {
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
                    uboot_env::parse_redundant(a, b).map_err(|error| HostError::UbootEnv {
                        path: path.to_path_buf(),
                        error,
                    })?;
                StoredVars {
                    vars: env.vars().map(own).collect(),
                    current_copy: Some((i, env.flag().unwrap_or(0))),
                }
            }
            Raw::Grub(b) => {
                let env = GrubEnv::parse(b).map_err(|error| HostError::GrubEnv {
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
    /// The variables decoded for the schemes: GRUB values (`flavor`) unescaped, names and
    /// values as UTF-8 (invalid bytes replaced).
    pub fn loaded(&self, flavor: Flavor) -> Loaded {
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

/// The variables of an environment, owned, in stored order, with where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// `(name, value)`; GRUB values are unescaped.
    pub vars: Vec<(String, String)>,
    /// For a redundant U-Boot env: the current copy (0 or 1) and its flag.
    pub current_copy: Option<(usize, u8)>,
}

impl EnvRead for Loaded {
    fn get_raw(&self, key: &str) -> Option<&[u8]> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_bytes())
    }
}

/// An environment backend plus the scheme of its variables: the object the agent's
/// install, mark-good, rollback and status code holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEnv {
    /// Where the environment lives.
    pub backend: Backend,
    /// Which variables hold the state.
    pub scheme: Scheme,
}

impl BootEnv {
    /// Pairs a backend and a scheme. Touches no file.
    pub fn new(backend: Backend, scheme: Scheme) -> BootEnv {
        BootEnv { backend, scheme }
    }

    /// The bootloader flavor of the backend.
    pub fn flavor(&self) -> Flavor {
        self.backend.flavor()
    }

    fn first_path(&self) -> &Path {
        match &self.backend {
            Backend::UbootSingle { path, .. } | Backend::Grub { path } => path,
            Backend::UbootRedundant { copies, .. } => &copies[0].0,
        }
    }

    /// Reads the raw bytes.
    pub fn read_raw(&self) -> Result<Raw, HostError> {
        Ok(match &self.backend {
            Backend::UbootSingle { path, offset, size } => {
                Raw::UbootSingle(read_at(path, *offset, *size)?)
            }
            Backend::UbootRedundant { copies, size } => Raw::UbootRedundant([
                read_at(&copies[0].0, copies[0].1, *size)?,
                read_at(&copies[1].0, copies[1].1, *size)?,
            ]),
            Backend::Grub { path } => Raw::Grub(fs::read(path).map_err(io_err(path))?),
        })
    }

    /// Reads and checks the environment and returns its variables.
    pub fn load_vars(&self) -> Result<Loaded, HostError> {
        let raw = self.read_raw()?;
        self.vars_of(&raw)
    }

    fn vars_of(&self, raw: &Raw) -> Result<Loaded, HostError> {
        Ok(raw.stored_vars(self.first_path())?.loaded(self.flavor()))
    }

    /// Loads the boot state.
    pub fn load(&self) -> Result<BootState, HostError> {
        let vars = self.load_vars()?;
        Ok(self.scheme.decode(self.flavor(), &vars)?)
    }

    /// Stores `state` as one atomic update (see the module docs). Variables that are not the
    /// scheme's are kept.
    pub fn store(&self, state: &BootState) -> Result<(), HostError> {
        let raw = self.read_raw()?;
        let vars = self.vars_of(&raw)?;
        let mut set = VarSet::new();
        self.scheme.encode(self.flavor(), state, &vars, &mut set)?;
        self.write_update(&raw, &set)
    }

    /// Creates the environment holding only `state` (for a U-Boot env: `size` bytes, both
    /// copies for a redundant one; for GRUB: a 1024-byte block), replacing whatever is there.
    pub fn init(&self, state: &BootState) -> Result<(), HostError> {
        let empty = Loaded {
            vars: Vec::new(),
            current_copy: None,
        };
        let mut set = VarSet::new();
        self.scheme.encode(self.flavor(), state, &empty, &mut set)?;
        let path = self.first_path().to_path_buf();
        match &self.backend {
            Backend::UbootSingle { path, offset, size } => {
                let mut buf = vec![0u8; *size];
                uboot_env::write(&mut buf, Layout::Single, 0, uboot_env::no_vars(), &set).map_err(
                    |error| HostError::UbootEnv {
                        path: path.clone(),
                        error,
                    },
                )?;
                if *offset == 0 && !path.exists() {
                    write_atomic(path, &buf)
                } else {
                    write_in_place(path, *offset, &buf)
                }
            }
            Backend::UbootRedundant { copies, size } => {
                let mut buf = vec![0u8; *size];
                uboot_env::write(&mut buf, Layout::Redundant, 1, uboot_env::no_vars(), &set)
                    .map_err(|error| HostError::UbootEnv { path, error })?;
                for (p, off) in copies {
                    if !p.exists() {
                        File::create(p).map_err(io_err(p))?;
                    }
                    write_in_place(p, *off, &buf)?;
                }
                Ok(())
            }
            Backend::Grub { path } => {
                let mut buf = vec![0u8; grub_env::DEFAULT_SIZE];
                grub_env::write(&mut buf, grub_env::no_vars(), &set).map_err(|error| {
                    HostError::GrubEnv {
                        path: path.clone(),
                        error,
                    }
                })?;
                write_atomic(path, &buf)
            }
        }
    }

    /// Writes `set` applied to the environment `raw` (which must be valid).
    fn write_update(&self, raw: &Raw, set: &VarSet<'_>) -> Result<(), HostError> {
        let path = self.first_path().to_path_buf();
        match (&self.backend, raw) {
            (Backend::UbootSingle { path, offset, size }, Raw::UbootSingle(b)) => {
                let env = Env::parse(b, Layout::Single).map_err(|e| HostError::UbootEnv {
                    path: path.clone(),
                    error: e.into(),
                })?;
                let mut out = vec![0u8; *size];
                uboot_env::write(&mut out, Layout::Single, 0, env.vars(), set).map_err(
                    |error| HostError::UbootEnv {
                        path: path.clone(),
                        error,
                    },
                )?;
                let regular_whole = *offset == 0
                    && fs::metadata(path)
                        .map(|m| m.is_file() && m.len() == *size as u64)
                        .unwrap_or(false);
                if regular_whole {
                    write_atomic(path, &out)
                } else {
                    write_in_place(path, *offset, &out)
                }
            }
            (Backend::UbootRedundant { copies, size }, Raw::UbootRedundant([a, b])) => {
                let (cur, env) = uboot_env::parse_redundant(a, b)
                    .map_err(|error| HostError::UbootEnv { path, error })?;
                let target = 1 - cur;
                let flag = env.flag().unwrap_or(0).wrapping_add(1);
                let mut out = vec![0u8; *size];
                uboot_env::write(&mut out, Layout::Redundant, flag, env.vars(), set).map_err(
                    |error| HostError::UbootEnv {
                        path: copies[target].0.clone(),
                        error,
                    },
                )?;
                debug!("writing U-Boot env copy {} with flag {}", target, flag);
                write_in_place(&copies[target].0, copies[target].1, &out)
            }
            (Backend::Grub { path }, Raw::Grub(b)) => {
                let env = GrubEnv::parse(b).map_err(|error| HostError::GrubEnv {
                    path: path.clone(),
                    error,
                })?;
                let mut out = vec![0u8; b.len()];
                grub_env::write(&mut out, env.vars(), set).map_err(|error| HostError::GrubEnv {
                    path: path.clone(),
                    error,
                })?;
                write_atomic(path, &out)
            }
            _ => unreachable!("read_raw returns the backend's kind"),
        }
    }

    /// Loads the state, applies `op` and, if it changed anything, stores the result.
    pub fn apply(&self, op: &Operation) -> Result<Applied, HostError> {
        let raw = self.read_raw()?;
        let vars = self.vars_of(&raw)?;
        let mut state = self.scheme.decode(self.flavor(), &vars)?;
        let applied = state.apply(op)?;
        if applied.changed {
            let mut set = VarSet::new();
            self.scheme.encode(self.flavor(), &state, &vars, &mut set)?;
            self.write_update(&raw, &set)?;
            info!("boot state updated: {:?}", op);
        }
        Ok(applied)
    }

    /// A report of the state as `ecu-agent bootenv show` prints it.
    pub fn report(&self) -> Result<Report, HostError> {
        let vars = self.load_vars()?;
        let state = self.scheme.decode(self.flavor(), &vars)?;
        Ok(Report {
            scheme: self.scheme,
            flavor: self.flavor(),
            state,
            decision: state.decide(),
            current_copy: vars.current_copy,
        })
    }
}

/// The decoded state of an environment and the decision the next boot takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The scheme used to decode it.
    pub scheme: Scheme,
    /// U-Boot or GRUB.
    pub flavor: Flavor,
    /// The state.
    pub state: BootState,
    /// What the next boot does.
    pub decision: Decision,
    /// For a redundant U-Boot env: the current copy and its flag.
    pub current_copy: Option<(usize, u8)>,
}

fn kind_str(k: DecisionKind) -> &'static str {
    match k {
        DecisionKind::Confirmed => "confirmed",
        DecisionKind::Trial => "trial",
        DecisionKind::LastResort => "last-resort",
    }
}

impl Report {
    /// JSON: `{"scheme", "bootloader", "revision", "next_boot", "next_boot_kind",
    /// "next_boot_writes", "slots": {"A": {"priority", "tries_left", "successful", "name"},
    /// "B": {..}}, "current_copy"}`.
    pub fn to_json(&self) -> String {
        let slot = |s: Slot| {
            let st = self.state.slot(s);
            format!(
                "{{\"priority\":{},\"tries_left\":{},\"successful\":{},\"name\":\"{}\"}}",
                st.priority,
                st.tries_left,
                st.successful,
                st.name.as_str()
            )
        };
        let copy = match self.current_copy {
            Some((i, flag)) => format!("{{\"index\":{i},\"flag\":{flag}}}"),
            None => "null".to_string(),
        };
        format!(
            "{{\"scheme\":\"{}\",\"bootloader\":\"{}\",\"revision\":{},\"next_boot\":\"{}\",\"next_boot_kind\":\"{}\",\"next_boot_writes\":{},\"slots\":{{\"A\":{},\"B\":{}}},\"current_copy\":{}}}",
            self.scheme.name(),
            match self.flavor {
                Flavor::UBoot => "uboot",
                Flavor::Grub => "grub",
            },
            self.state.revision,
            self.decision.slot,
            kind_str(self.decision.kind),
            self.decision.changed,
            slot(Slot::A),
            slot(Slot::B),
            copy
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scheme: {}  revision: {}",
            self.scheme.name(),
            self.state.revision
        )?;
        if let Some((i, flag)) = self.current_copy {
            writeln!(f, "current copy: {} (flag {})", i + 1, flag)?;
        }
        writeln!(f, "slot  priority  tries_left  successful  name")?;
        for s in Slot::ALL {
            let st = self.state.slot(s);
            writeln!(
                f,
                "{:<5} {:<9} {:<11} {:<11} {}",
                s.as_str(),
                st.priority,
                st.tries_left,
                if st.successful { "yes" } else { "no" },
                if st.name.is_empty() {
                    "-"
                } else {
                    st.name.as_str()
                }
            )?;
        }
        write!(
            f,
            "next boot: {} ({}{})",
            self.decision.slot,
            kind_str(self.decision.kind),
            if self.decision.changed {
                ", one try used"
            } else {
                ", nothing written"
            }
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;

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
            Err(HostError::GrubEnv { .. })
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
            Err(HostError::UbootEnv { .. })
        ));
    }
}
