//! A/B deployments in a sysroot: install, stage, boot switch, mark-good, rollback, status,
//! cleanup and a simulated boot. `docs/SYSROOT.md` is the specification.
//!
//! ```text
//! S/agent.conf                 boot configuration (crate::bootcfg); defaults without it
//! S/repo/                      the object repository (crate::repo)
//! S/deploy/<commit>.<serial>/  a checkout of a commit, hard-linked from the repository
//! S/deploy/<name>.origin       the ref the deployment came from
//! S/deploy/.tmp-<name>/        a checkout being written (garbage after a crash)
//! S/deploy/.del-<name>/        a deployment being removed
//! S/boot/uboot.env             the default environment: redundant U-Boot, two 16 KiB copies
//! S/boot/uboot-redund.env
//! S/run/booted                 "A" or "B": the slot a simulated boot took
//! ```
//!
//! The environment is the authority: slot A and slot B each name a deployment directory
//! (`ECU_A_NAME`, `ECU_B_NAME`), with its priority, tries left, success flag and kernel
//! arguments (`ECU_A_ARGS`, `ECU_B_ARGS`). A directory that no slot names is garbage. Every
//! change of what boots is one atomic environment update, made only after the deployment it
//! names is complete on disk; removing the deployment a slot held comes after that update.
//!
//! [`Deployer`] opens a sysroot; its commands live by concern: `stage` (install, deploy,
//! provisioning, adoption), `boot` (mark-good, rollback, simulate-boot), `repair`
//! (repair-env), [`status`](Deployer::status), [`verify`](verify()) and `cleanup`;
//! [`env`](mod@env) is the one reader and writer of the boot environment; the reports the
//! commands return are in `report`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use agent_core::object::ObjectId;
use bootloader_hooks::{BootState, Slot, SlotState, StateError};

use crate::apply::Trust;
use crate::bootcfg::BootConfig;
use crate::floor;
use crate::fsops;
use crate::repo::RepoError;
use crate::sysroot::Sysroot;

pub mod adopt;
pub mod board_env;
pub mod booted;
pub mod env;
pub mod verify;

mod boot;
mod cleanup;
mod error;
mod repair;
mod report;
mod stage;
mod status;

pub use adopt::ADOPTED_NAME;
pub use booted::{
    deployment_from_cmdline, detect_booted, parse_slot, read_cmdline, slot_from_cmdline, Booted,
    BootedDoubt, BootedSource,
};
pub use cleanup::CleanupReport;
pub use env::{BootEnvError, EnvContent};
use error::io_err;
pub use error::DeployError;
pub use report::{
    BootReport, BootedFrom, EnvFound, RepairAction, RepairReport, Role, StageAction, StageReport,
    SysrootState,
};
pub use status::{DeploymentStatus, EnvInfo, Status};
pub use verify::{verify, VerifyReport};

/// The environment variable that says which slot is booted (`A` or `B`), for tests and dry
/// runs.
pub const BOOTED_SLOT_VAR: &str = "ECU_AGENT_BOOTED_SLOT";
/// The environment variable naming the kernel command line to read instead of
/// `/proc/cmdline`.
pub const CMDLINE_VAR: &str = "ECU_AGENT_CMDLINE";
/// The marker a provisioning writes in `S/deploy` (naming the deployment it creates) and
/// removes once the boot state exists: deployments without a boot state and without this
/// marker are a lost environment, never garbage.
pub const PROVISIONING_MARKER: &str = ".provisioning";
/// Suffix of a deployment's origin file in `S/deploy` (`<name>.origin`: `commit=`, `ref=`).
pub const ORIGIN_SUFFIX: &str = ".origin";

/// Whether `name` is exactly a deployment directory name: `<64 lowercase hex>.<serial>`,
/// the serial in decimal without leading zeros. Anything else in the environment (`garbage`,
/// `../../x`) is never used as a path.
pub fn is_deployment_name(name: &str) -> bool {
    parse_deployment_name(name).is_some_and(|(c, n)| deployment_name(&c, n) == name)
}

/// A deployment's directory name: `<commit hex>.<serial>`.
pub fn deployment_name(commit: &ObjectId, serial: u32) -> String {
    format!("{commit}.{serial}")
}

/// Splits a deployment name into its commit and serial.
pub fn parse_deployment_name(name: &str) -> Option<(ObjectId, u32)> {
    let (hex, serial) = name.split_once('.')?;
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) || serial.len() > 9 {
        return None;
    }
    Some((ObjectId::from_hex(hex).ok()?, serial.parse().ok()?))
}

/// Options shared by the deployment commands.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The booted slot as the caller says (`--booted-slot`).
    pub booted: Option<Slot>,
    /// Tries for a staged deployment (default: `agent.conf`).
    pub tries: Option<u8>,
}

/// What the caller of an install adds to the device's own configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOptions {
    /// Keys trusted for this install besides `agent.conf`'s (`--trusted-key`).
    pub extra_keys: Vec<[u8; 32]>,
    /// Accept a file nobody signed (`--allow-unsigned`).
    pub allow_unsigned: bool,
    /// Accept a file for this ref, and follow it from now on (`--rebase REF`).
    pub rebase: Option<String>,
}

/// What a sysroot at `root` with configuration `cfg` accepts for an install with `opts`: the
/// trusted keys of `agent.conf` and of `opts`, `agent.conf`'s revoked keys, the floor of
/// `S/security-floor`, and the refs `agent.conf` follows (only `opts.rebase` when given; any
/// when `agent.conf` names none).
pub fn trust_for(
    root: &Path,
    cfg: &BootConfig,
    opts: &InstallOptions,
) -> Result<Trust, DeployError> {
    let mut trusted_keys = cfg.trusted_keys.clone();
    for k in &opts.extra_keys {
        if !trusted_keys.contains(k) {
            trusted_keys.push(*k);
        }
    }
    if let Some(r) = &opts.rebase {
        crate::repo::validate_ref(r)?;
    }
    let refs = match &opts.rebase {
        Some(r) => Some(vec![r.clone()]),
        None if cfg.refs.is_empty() => None,
        None => Some(cfg.refs.clone()),
    };
    Ok(Trust {
        trusted_keys,
        revoked_keys: cfg.revoked_keys.clone(),
        allow_unsigned: opts.allow_unsigned,
        floor: floor::read(root)?,
        refs,
    })
}

/// An open sysroot with its configuration and booted slot.
#[derive(Debug)]
pub struct Deployer {
    sysroot: Sysroot,
    cfg: BootConfig,
    booted: Option<(Slot, BootedSource)>,
    /// Why the kernel command line does not tell the booted slot although it says something.
    booted_doubt: Option<BootedDoubt>,
    /// `ecu.deployment=` of the kernel command line: the deployment the kernel booted.
    kernel_deployment: Option<String>,
    tries: u8,
}

impl Deployer {
    /// Opens an existing sysroot.
    ///
    /// A sysroot without a repository (new, or empty) is [`DeployError::NotProvisioned`]: it
    /// needs an install, not `ecu-agent init` (which makes a build-side repository).
    pub fn open(path: &Path, opts: &Options) -> Result<Deployer, DeployError> {
        let sysroot = Sysroot::open(path).map_err(|e| match e {
            RepoError::NotARepo(repo) if repo == path.join(Sysroot::REPO_DIR) => {
                DeployError::NotProvisioned(path.to_path_buf())
            }
            e => DeployError::Repo(e),
        })?;
        Deployer::with(sysroot, opts)
    }

    /// Opens a sysroot, creating it (and its repository) when missing.
    pub fn open_or_create(path: &Path, opts: &Options) -> Result<Deployer, DeployError> {
        Deployer::with(Sysroot::open_or_create(path)?, opts)
    }

    fn with(sysroot: Sysroot, opts: &Options) -> Result<Deployer, DeployError> {
        let cfg = BootConfig::load(sysroot.path())?;
        let Booted {
            slot: booted,
            doubt: booted_doubt,
        } = detect_booted(sysroot.path(), &cfg, opts.booted)?;
        let tries = opts.tries.unwrap_or(cfg.tries);
        if tries == 0 || tries > bootloader_hooks::MAX_TRIES {
            return Err(StateError::TriesOutOfRange { tries }.into());
        }
        let kernel_deployment =
            read_cmdline().and_then(|c| deployment_from_cmdline(&c).map(str::to_string));
        Ok(Deployer {
            sysroot,
            cfg,
            booted,
            booted_doubt,
            kernel_deployment,
            tries,
        })
    }

    /// The sysroot.
    pub fn sysroot(&self) -> &Sysroot {
        &self.sysroot
    }

    /// The boot configuration.
    pub fn config(&self) -> &BootConfig {
        &self.cfg
    }

    /// The booted slot and where it was learnt.
    pub fn booted(&self) -> Option<(Slot, BootedSource)> {
        self.booted
    }

    fn booted_slot(&self) -> Result<Slot, DeployError> {
        match (self.booted, &self.booted_doubt) {
            (Some(b), _) => Ok(b.0),
            (None, Some(d)) => Err(DeployError::BootedDoubt(d.clone())),
            (None, None) => Err(DeployError::BootedUnknown),
        }
    }

    /// Why the kernel command line does not tell the booted slot although it says something
    /// about it (`None` when it tells, or says nothing).
    pub fn booted_doubt(&self) -> Option<&BootedDoubt> {
        self.booted_doubt.as_ref()
    }

    /// Takes the sysroot's lock (an exclusive `flock` on `S/lock`), waiting for another
    /// deployment command to finish. Every command that changes deployments or the boot state
    /// holds it; `cleanup` also holds the repository's lock.
    pub fn lock(&self) -> Result<fs::File, DeployError> {
        let p = self.sysroot.path().join("lock");
        fsops::lock_exclusive(&p).map_err(|(what, e)| io_err(what, &p)(e))
    }

    /// Reads the environment.
    pub fn env(&self) -> Result<EnvContent, DeployError> {
        Ok(env::read(&self.cfg)?)
    }

    fn ready(&self) -> Result<(env::EnvImage, BootState), DeployError> {
        match self.env()? {
            EnvContent::Ready(img, st) => Ok((img, *st)),
            _ if self.has_deployment_dirs()? => Err(DeployError::EnvLost(self.cfg.env.0.clone())),
            _ => Err(DeployError::NotProvisioned(
                self.sysroot.path().to_path_buf(),
            )),
        }
    }

    /// `S/deploy`.
    pub fn deploy_dir(&self) -> PathBuf {
        self.sysroot.path().join(Sysroot::DEPLOY_DIR)
    }

    /// The directory of deployment `name`.
    pub fn deployment_path(&self, name: &str) -> PathBuf {
        self.deploy_dir().join(name)
    }

    /// Entries of `S/deploy` (names).
    pub fn deployment_dirs(&self) -> Result<Vec<String>, DeployError> {
        let dir = self.deploy_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err("read directory", &dir))?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    /// Whether `S/deploy` holds a deployment-like directory.
    fn has_deployment_dirs(&self) -> Result<bool, DeployError> {
        Ok(self
            .deployment_dirs()?
            .iter()
            .any(|n| !n.starts_with('.') && !n.ends_with(ORIGIN_SUFFIX)))
    }

    /// The ref recorded in a deployment's origin file.
    pub fn origin_ref(&self, name: &str) -> Option<String> {
        let text =
            fs::read_to_string(self.deploy_dir().join(format!("{name}{ORIGIN_SUFFIX}"))).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("ref="))
            .map(str::to_string)
    }

    fn commit_of_slot(st: &SlotState) -> Result<Option<ObjectId>, DeployError> {
        if st.name.is_empty() || adopt::is_adopted(st.name.as_str()) {
            return Ok(None);
        }
        parse_deployment_name(st.name.as_str())
            .map(|(c, _)| Some(c))
            .ok_or_else(|| DeployError::BadDeploymentName(st.name.as_str().to_string()))
    }

    /// Refuses a boot state that names nothing (and is not adoptable, which is checked first)
    /// while deployments are on disk: the environment, rewritten by the bootloader (e.g. after
    /// a reset to its defaults), names none of them, so nothing says which one runs.
    fn check_named(&self, state: &BootState) -> Result<(), DeployError> {
        if adopt::unowned(state) {
            // Not adoptable (that is checked first): deployments are on disk, but the
            // environment (rewritten by the bootloader, e.g. after a reset to its defaults)
            // names none of them.
            let on_disk: Vec<String> = self
                .deployment_dirs()?
                .into_iter()
                .filter(|n| !n.starts_with('.') && !n.ends_with(ORIGIN_SUFFIX))
                .collect();
            return Err(DeployError::SourcesDisagree(format!(
                "the bootloader environment {} holds {} boot state that names no deployment in either slot, but {} holds {}",
                self.cfg.env.0.display(),
                self.cfg.scheme.name(),
                self.deploy_dir().display(),
                list_or_none(&on_disk)
            )));
        }
        Ok(())
    }

    /// Checks that staging into the slot that is not booted leaves a bootable device.
    fn check_can_stage(&self, state: &BootState) -> Result<Slot, DeployError> {
        self.check_named(state)?;
        let x = self.booted_slot()?;
        let (xs, ys) = (state.slot(x), state.slot(x.other()));
        if xs.name.is_empty() {
            return Err(DeployError::BootedSlotEmpty(x));
        }
        let y_fallback = ys.successful || ys.tries_left > 0;
        if !xs.successful && y_fallback && !ys.name.is_empty() {
            if xs.priority == 0 {
                return Err(DeployError::BootedAbandoned { booted: x });
            }
            return Err(DeployError::BootedOnTrial { booted: x });
        }
        Ok(x.other())
    }

    /// Before anything is deleted: the running system and the environment must agree on what
    /// runs. Every slot name must be exactly a deployment name; the deployment the kernel
    /// command line names (`ecu.deployment=`) must be the one the environment has in the
    /// booted slot; the booted slot's deployment must be on disk. Any doubt refuses.
    fn check_sources(&self, state: &BootState) -> Result<(), DeployError> {
        for s in Slot::ALL {
            let n = state.slot(s).name;
            if !n.is_empty() && !is_deployment_name(n.as_str()) && !adopt::is_adopted(n.as_str()) {
                return Err(DeployError::BadDeploymentName(n.as_str().to_string()));
            }
        }
        if let Some(k) = &self.kernel_deployment {
            let held = Slot::ALL
                .into_iter()
                .find(|&s| state.slot(s).name.as_str() == k.as_str());
            match (held, self.booted) {
                (None, _) => {
                    return Err(DeployError::SourcesDisagree(format!(
                        "the kernel command line says deployment {k:?} is running, but the environment names it in neither slot (A: {:?}, B: {:?})",
                        state.slot(Slot::A).name.as_str(),
                        state.slot(Slot::B).name.as_str()
                    )))
                }
                (Some(h), Some((b, src))) if h != b => {
                    return Err(DeployError::SourcesDisagree(format!(
                        "the kernel command line says deployment {k:?} is running, which the environment has in slot {h}, but slot {b} is said to be booted ({})",
                        src.describe()
                    )))
                }
                _ => {}
            }
        }
        if let Some((b, src)) = self.booted {
            let n = state.slot(b).name;
            if n.is_empty() {
                return Err(DeployError::BootedSlotEmpty(b));
            }
            if !adopt::is_adopted(n.as_str()) && !self.deployment_path(n.as_str()).is_dir() {
                return Err(DeployError::SourcesDisagree(format!(
                    "slot {b} is booted ({}) and the environment says it holds deployment {}, but {} is not on disk",
                    src.describe(),
                    n.as_str(),
                    self.deployment_path(n.as_str()).display()
                )));
            }
        }
        Ok(())
    }

    /// Whether `S/deploy` holds only what an interrupted provisioning leaves (its marker and
    /// the deployment it was writing): the only case where deployments without a boot state
    /// are not somebody's running system.
    fn interrupted_provisioning(&self) -> Result<bool, DeployError> {
        let marker = self.deploy_dir().join(PROVISIONING_MARKER);
        let text = match fs::read_to_string(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("read", &marker)(e)),
        };
        let name = text.trim();
        Ok(self
            .deployment_dirs()?
            .iter()
            .filter(|n| !n.starts_with('.') && !n.ends_with(ORIGIN_SUFFIX))
            .all(|n| n == name))
    }

    /// What this sysroot accepts for an install with `opts` ([`trust_for`]).
    pub fn trust(&self, opts: &InstallOptions) -> Result<Trust, DeployError> {
        trust_for(self.sysroot.path(), &self.cfg, opts)
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use bootloader_hooks::SlotName;

    #[test]
    fn cmdline_and_names() {
        assert_eq!(
            slot_from_cmdline("console=ttyS0 root=/dev/mmcblk0p2 ecu.slot=B quiet"),
            Some(Slot::B)
        );
        assert_eq!(slot_from_cmdline("rauc.slot=A"), Some(Slot::A));
        assert_eq!(slot_from_cmdline("rauc.slot=rootfs.1"), Some(Slot::B));
        assert_eq!(slot_from_cmdline("ecu.slot=A rauc.slot=B"), Some(Slot::A));
        assert_eq!(slot_from_cmdline("ecu.slot=C root=x"), None);
        assert_eq!(slot_from_cmdline(""), None);
        let id = ObjectId::of(b"x");
        let n = deployment_name(&id, 3);
        assert_eq!(parse_deployment_name(&n), Some((id, 3)));
        assert!(SlotName::from_str(&n).is_ok());
        for bad in [
            "",
            "abc.0",
            &format!("{id}"),
            &format!("{id}."),
            &format!("{id}.x"),
        ] {
            assert_eq!(parse_deployment_name(bad), None, "{bad}");
        }
    }
}
