//! The tests' boot environment over image files, read and written by the agent's one reader
//! and writer, `agent_linux::deploy::env` (its write rules: docs/BOOTSTATE.md §6). What the
//! real bootloaders (U-Boot, GRUB, `fw_setenv`, `grub-editenv`) write in these tests is
//! checked against exactly what the agent reads and writes on a device.

use std::fmt;
use std::path::PathBuf;

use agent_linux::bootcfg::{BackendKind, BootConfig, DEFAULT_ENV_SIZE};
use agent_linux::deploy::env::{self, BootEnvError, EnvContent};
use bootloader_hooks::{Applied, BootState, Operation, Scheme};

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
}

/// An error of `agent_linux::deploy::env`. A scheme's refusal is named by the environment's
/// file, as every other environment error already is.
#[derive(Debug)]
pub struct EnvError {
    path: PathBuf,
    error: BootEnvError,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            BootEnvError::Scheme(e) => write!(f, "{}: {e}", self.path.display()),
            e => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EnvError {}

/// A backend plus the scheme of its variables, as the agent's configuration.
#[derive(Clone, Debug)]
pub struct BootEnv {
    cfg: BootConfig,
}

impl BootEnv {
    pub fn new(backend: Backend, scheme: Scheme) -> BootEnv {
        let (kind, env, second, size) = match backend {
            Backend::UbootSingle { path, offset, size } => {
                (BackendKind::Uboot, (path, offset), None, size)
            }
            Backend::UbootRedundant {
                copies: [first, second],
                size,
            } => (BackendKind::UbootRedundant, first, Some(second), size),
            // GRUB: read at most the default bound, as `ecu-agent bootenv show` does.
            Backend::Grub { path } => (BackendKind::Grub, (path, 0), None, DEFAULT_ENV_SIZE),
        };
        BootEnv {
            cfg: BootConfig::for_env(kind, env, second, size, scheme),
        }
    }

    fn err(&self, error: BootEnvError) -> EnvError {
        EnvError {
            path: self.cfg.env.0.clone(),
            error,
        }
    }

    /// Loads the boot state (strictly: a valid environment holding one, else an error).
    pub fn load(&self) -> Result<BootState, EnvError> {
        env::load(&self.cfg)
            .map(|(_, st)| st)
            .map_err(|e| self.err(e))
    }

    /// Loads the state, applies `op` and, if it changed anything, stores the result
    /// ([`Operation::Boot`]: the scheme's own boot step and its writes).
    pub fn apply(&self, op: &Operation) -> Result<Applied, EnvError> {
        env::apply(&self.cfg, op).map_err(|e| self.err(e))
    }

    /// Applies `op` as the agent does and checks the outcome against the same operation on the
    /// state as loaded (the model): both refuse it with the same error, or both apply it with
    /// the same change and the environment then holds the model's state. An environment the
    /// agent cannot decode is refused alike. Any other failure (reading, writing, an update
    /// that does not fit) panics: nothing is silently ignored.
    pub fn apply_checked(&self, op: &Operation) -> Option<Applied> {
        let before = self.load();
        let got = self.apply(op);
        let mut model = match before {
            Ok(st) => st,
            Err(e) => {
                let g = got.expect_err("the agent applied an operation to an env it cannot load");
                assert_eq!(g.to_string(), e.to_string(), "{op:?}");
                return None;
            }
        };
        match (model.apply(op), got) {
            (
                Err(want),
                Err(EnvError {
                    error: BootEnvError::State(e),
                    ..
                }),
            ) => {
                assert_eq!(e, want, "{op:?}");
                None
            }
            (Ok(want), Ok(applied)) => {
                assert_eq!(applied.changed, want.changed, "{op:?}");
                assert_eq!(self.load().unwrap(), model, "{op:?}: the stored state");
                Some(applied)
            }
            (want, got) => panic!("{op:?}: the model gives {want:?}, the agent {got:?}"),
        }
    }

    /// Stores `state`, keeping the variables that are not the scheme's.
    pub fn store(&self, state: &BootState) -> Result<(), EnvError> {
        let img = match env::read(&self.cfg).map_err(|e| self.err(e))? {
            EnvContent::Missing => None,
            EnvContent::NoBootState(img) | EnvContent::Ready(img, _) => Some(img),
        };
        env::write(&self.cfg, img.as_ref(), state, &[]).map_err(|e| self.err(e))
    }

    /// Creates the environment holding only `state` (a U-Boot env of its size, both copies of
    /// a redundant one with flag 1; a 1024-byte GRUB block), replacing whatever is there.
    pub fn init(&self, state: &BootState) -> Result<(), EnvError> {
        env::write(&self.cfg, None, state, &[]).map_err(|e| self.err(e))
    }
}
