//! The device side's root: a sysroot `S` holds the object repository at `S/repo` (a later
//! change adds deployments and boot state beside it).

use std::fs;
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

    /// Opens an existing sysroot.
    pub fn open(path: &Path) -> Result<Sysroot, RepoError> {
        let repo = Repo::open(&path.join(Self::REPO_DIR))?;
        Ok(Sysroot {
            root: path.to_path_buf(),
            repo,
        })
    }

    /// Opens the sysroot, creating it (and its repository) when missing.
    pub fn open_or_create(path: &Path) -> Result<Sysroot, RepoError> {
        let repo_path = path.join(Self::REPO_DIR);
        if repo_path.join("config").exists() {
            return Sysroot::open(path);
        }
        fs::create_dir_all(path).map_err(io_err("create", path))?;
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
