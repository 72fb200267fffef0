//! The device side's root. `docs/SYSROOT.md` specifies the layout:
//!
//! ```text
//! S/agent.conf                 boot configuration (crate::bootcfg; defaults without it)
//! S/repo/                      the object repository (crate::repo)
//! S/deploy/<commit>.<serial>/  deployments: checkouts hard-linked from the repository
//! S/boot/                      the default bootloader environment (redundant U-Boot env)
//! S/run/booted                 the slot a simulated boot took (crate::deploy)
//! ```

use std::path::{Path, PathBuf};

use crate::repo::{io_err, Repo, RepoError};

/// A sysroot on the device.
#[derive(Debug, Clone)]
pub struct Sysroot {
    root: PathBuf,
    repo: Repo,
}

impl Sysroot {
    /// The repository's place inside a sysroot.
    pub const REPO_DIR: &'static str = "repo";
    /// The deployments' directory inside a sysroot.
    pub const DEPLOY_DIR: &'static str = "deploy";
    /// The default place of the bootloader environment inside a sysroot.
    pub const BOOT_DIR: &'static str = "boot";
    /// Run-time state (the simulated booted slot) inside a sysroot.
    pub const RUN_DIR: &'static str = "run";
    /// The file in [`Sysroot::RUN_DIR`] naming the booted slot (`A` or `B`).
    pub const BOOTED_FILE: &'static str = "booted";

    /// The sysroot's own directories, checked by [`Sysroot::check_dirs`].
    pub const DIRS: [&'static str; 4] = [
        Self::REPO_DIR,
        Self::DEPLOY_DIR,
        Self::RUN_DIR,
        Self::BOOT_DIR,
    ];

    /// Checks the sysroot's directories (`repo`, `deploy`, `run`, `boot`; the repository's
    /// own are checked by [`Repo::open`]): each must be a real directory, not followed if it is
    /// a symlink, owned by the running user, or missing (it is then created as a directory).
    /// A planted symlink or a file there is refused naming it, before anything is read or
    /// written through it.
    pub fn check_dirs(path: &Path) -> Result<(), RepoError> {
        for d in Self::DIRS {
            crate::repo::check_trusted_dir(&path.join(d))?;
        }
        Ok(())
    }

    /// Opens an existing sysroot.
    pub fn open(path: &Path) -> Result<Sysroot, RepoError> {
        Self::check_dirs(path)?;
        let repo = Repo::open(&path.join(Self::REPO_DIR))?;
        Ok(Sysroot {
            root: path.to_path_buf(),
            repo,
        })
    }

    /// Opens the sysroot, creating it (and its repository) when missing.
    pub fn open_or_create(path: &Path) -> Result<Sysroot, RepoError> {
        Self::check_dirs(path)?;
        let repo_path = path.join(Self::REPO_DIR);
        if repo_path.join("config").exists() {
            return Sysroot::open(path);
        }
        crate::fsops::mkdir_all(path, 0o755).map_err(io_err("create", path))?;
        let repo = Repo::init(&repo_path)?;
        Ok(Sysroot {
            root: path.to_path_buf(),
            repo,
        })
    }

    /// The sysroot's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The object repository at `S/repo`.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }
}
