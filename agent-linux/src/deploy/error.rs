//! Why a deployment command failed or refused: [`DeployError`], one variant a failure, each
//! with one sentence that names the paths, slots and values involved.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use agent_core::object::ObjectId;
use bootloader_hooks::{Slot, StateError};

use super::{board_env, BootEnvError, BootedDoubt, BootedSource, ADOPTED_NAME, BOOTED_SLOT_VAR};
use crate::apply::ApplyError;
use crate::bootcfg::ConfigError;
use crate::checkout::CheckoutError;
use crate::floor::FloorError;
use crate::repo::RepoError;

/// Why a deployment command failed or refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeployError {
    /// The repository failed.
    Repo(RepoError),
    /// Writing a checkout failed.
    Checkout(CheckoutError),
    /// The update was not installed.
    Apply(ApplyError),
    /// `agent.conf` is wrong.
    Config(ConfigError),
    /// The anti-rollback floor could not be read or written.
    Floor(FloorError),
    /// The bootloader environment could not be read or written.
    Env(BootEnvError),
    /// A filesystem call failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The sysroot has no boot state yet.
    NotProvisioned(PathBuf),
    /// The environment is missing or holds no boot state, but deployments exist.
    EnvLost(PathBuf),
    /// Nothing says which slot is booted.
    BootedUnknown,
    /// The kernel command line does not tell which slot is booted although it names a root
    /// device or a slot (an unknown root device, or sources that disagree).
    BootedDoubt(BootedDoubt),
    /// The booted slot holds no deployment in the environment.
    BootedSlotEmpty(Slot),
    /// The environment is the bootloader's own (no slot names a deployment) and nothing the
    /// running system says tells which slot it booted.
    AdoptUnknown {
        /// The environment.
        env: PathBuf,
        /// The scheme.
        scheme: &'static str,
        /// What `S/run/booted` says, not trusted for this.
        run_file: Option<Slot>,
    },
    /// The running system and the bootloader's own variables disagree on the booted slot.
    AdoptDisagree {
        /// The environment.
        env: PathBuf,
        /// The scheme.
        scheme: &'static str,
        /// The slot the running system says.
        slot: Slot,
        /// Where that was learnt.
        source: BootedSource,
        /// What the bootloader's variables say.
        why: String,
    },
    /// The bootloader has the booted slot on trial and the other slot is its good fallback.
    AdoptOnTrial {
        /// The booted slot.
        booted: Slot,
    },
    /// The slot holds the system the bootloader ran before the agent adopted it.
    NotADeployment(Slot),
    /// A blank U-Boot environment outside the sysroot and no board default environment
    /// (`env-default`) to start it from.
    NoBoardEnv {
        /// The environment (its first copy).
        env: PathBuf,
    },
    /// The board default environment file (`env-default`) is unusable.
    BoardEnv {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A slot name in the environment is not a deployment name.
    BadDeploymentName(String),
    /// The sources that say what runs (kernel command line, `S/run/booted`, the deployments
    /// on disk, the environment) disagree.
    SourcesDisagree(String),
    /// `repair-env` cannot tell what runs or what the fallback is.
    CannotRepair(String),
    /// The booted deployment is on trial and the other slot is the only good fallback.
    BootedOnTrial {
        /// The booted slot.
        booted: Slot,
    },
    /// The booted deployment was rolled back; the next boot leaves it.
    BootedAbandoned {
        /// The booted slot.
        booted: Slot,
    },
    /// A rollback would leave nothing bootable.
    NoFallback {
        /// The slot the rollback would give up.
        abandon: Slot,
    },
    /// There is no other deployment to roll back to.
    NoOtherDeployment {
        /// The slot the rollback would give up.
        abandon: Slot,
    },
    /// The commit's security version is below the anti-rollback floor.
    BelowFloor {
        /// The commit.
        commit: ObjectId,
        /// Its security version.
        security_version: u64,
        /// The floor.
        floor: u64,
    },
    /// A deployment does not match its commit.
    Corrupt {
        /// The deployment.
        name: String,
        /// The first differences.
        problems: Vec<String>,
    },
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::Repo(e) => e.fmt(f),
            DeployError::Checkout(e) => e.fmt(f),
            DeployError::Apply(e) => e.fmt(f),
            DeployError::Config(e) => e.fmt(f),
            DeployError::Floor(e) => e.fmt(f),
            DeployError::Env(e) => write!(f, "bootloader environment: {e}"),
            DeployError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            DeployError::NotProvisioned(p) => write!(
                f,
                "{} holds no deployment yet; install a from-scratch update first (`ecu-agent install --sysroot {} FILE`)",
                p.display(),
                p.display()
            ),
            DeployError::EnvLost(p) => write!(
                f,
                "the bootloader environment {} holds no boot state but deployments exist, so nothing says which one runs and which one is the fallback; nothing was deleted: rebuild the environment from what is on disk with `ecu-agent repair-env`",
                p.display()
            ),
            DeployError::BootedUnknown => write!(
                f,
                "cannot tell which slot is booted: the kernel command line has no ecu.slot= or rauc.slot=, and no root= that agent.conf's slot-a-root/slot-b-root map to a slot; set those, pass --booted-slot A|B, set {BOOTED_SLOT_VAR}, or run `ecu-agent simulate-boot`"
            ),
            DeployError::BootedDoubt(d) => d.fmt(f),
            DeployError::BootedSlotEmpty(s) => write!(
                f,
                "slot {s} is said to be booted but the environment holds no deployment for it; check --booted-slot / {BOOTED_SLOT_VAR} or the kernel command line"
            ),
            DeployError::AdoptUnknown { env, scheme, run_file } => write!(
                f,
                "the bootloader environment {} holds {scheme} boot state but no deployment of the agent yet, and nothing the running system says tells which slot it booted (the kernel command line has no ecu.slot= or rauc.slot=, and no root= that agent.conf's slot-a-root/slot-b-root map to a slot{}); nothing was written: set slot-a-root and slot-b-root in agent.conf to the root= each slot boots with, or pass --booted-slot A|B",
                env.display(),
                match run_file {
                    Some(s) => format!("; S/run/booted says {s} but may be left from an earlier boot"),
                    None => String::new(),
                }
            ),
            DeployError::AdoptDisagree {
                env,
                scheme,
                slot,
                source,
                why,
            } => write!(
                f,
                "refused to adopt the {scheme} environment {}: the {} says slot {slot} is booted, but {why}; nothing was written: check the kernel command line and agent.conf's slot-a-root/slot-b-root (or --booted-slot), or reboot so that the bootloader boots the slot that runs",
                env.display(),
                source.describe()
            ),
            DeployError::AdoptOnTrial { booted } => write!(
                f,
                "refused: the bootloader has slot {booted} on trial (booted but not confirmed) and slot {} is its good fallback, which a new deployment would replace; nothing was written: confirm slot {booted} first (`ecu-agent mark-good`, or the bootloader's own tool) or let the bootloader roll back",
                booted.other()
            ),
            DeployError::NoBoardEnv { env } => f.write_str(&board_env::no_board_env(env)),
            DeployError::BoardEnv { path, reason } => write!(
                f,
                "the board's default environment {} (env-default in agent.conf) {reason}; fix it or name another file",
                path.display()
            ),
            DeployError::NotADeployment(s) => write!(
                f,
                "slot {s} holds the system the bootloader ran before the agent adopted its environment ({ADOPTED_NAME}), not a deployment of the agent: there is no commit to check it against"
            ),
            DeployError::BadDeploymentName(n) => write!(
                f,
                "the environment names {n:?}, which is not a deployment (<commit>.<serial>); nothing was deleted: rebuild the environment with `ecu-agent repair-env`"
            ),
            DeployError::CannotRepair(why) => write!(
                f,
                "cannot rebuild the boot environment: {why}; nothing was written"
            ),
            DeployError::SourcesDisagree(why) => write!(
                f,
                "refused: {why}; nothing was deleted: check which deployment runs (`ecu-agent status`) and rebuild the environment with `ecu-agent repair-env`"
            ),
            DeployError::BootedOnTrial { booted } => write!(
                f,
                "refused: the booted deployment (slot {booted}) is on trial and slot {} holds the only good fallback; mark the booted deployment good (`ecu-agent mark-good`) or roll back (`ecu-agent rollback`) first",
                booted.other()
            ),
            DeployError::BootedAbandoned { booted } => write!(
                f,
                "refused: the booted deployment (slot {booted}) was rolled back and slot {} holds the only good deployment; reboot into slot {} first",
                booted.other(),
                booted.other()
            ),
            DeployError::NoFallback { abandon } => write!(
                f,
                "refused: rolling back from slot {abandon} would leave nothing bootable, because slot {} was never marked good and has no tries left",
                abandon.other()
            ),
            DeployError::NoOtherDeployment { abandon } => write!(
                f,
                "refused: there is no deployment to roll back to (slot {} is empty; slot {abandon} is the only deployment)",
                abandon.other()
            ),
            DeployError::BelowFloor {
                commit,
                security_version,
                floor,
            } => write!(
                f,
                "refused: commit {commit} has security version {security_version}, below this device's anti-rollback floor {floor}; deploy a commit at security version {floor} or later"
            ),
            DeployError::Corrupt { name, problems } => write!(
                f,
                "deployment {name} does not match its commit ({} problems, first: {}); deploy the commit again",
                problems.len(),
                problems.first().map(String::as_str).unwrap_or("?")
            ),
        }
    }
}

impl std::error::Error for DeployError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The wrapped errors' messages are this one's: their causes come next (else every
        // message would be printed twice in a chain).
        match self {
            DeployError::Repo(e) => e.source(),
            DeployError::Checkout(e) => e.source(),
            DeployError::Apply(e) => e.source(),
            DeployError::Config(e) => e.source(),
            DeployError::Floor(e) => e.source(),
            DeployError::Env(e) => e.source(),
            DeployError::Io { source, .. } => source.source(),
            _ => None,
        }
    }
}

impl From<RepoError> for DeployError {
    fn from(e: RepoError) -> Self {
        DeployError::Repo(e)
    }
}
impl From<CheckoutError> for DeployError {
    fn from(e: CheckoutError) -> Self {
        DeployError::Checkout(e)
    }
}
impl From<ConfigError> for DeployError {
    fn from(e: ConfigError) -> Self {
        DeployError::Config(e)
    }
}
impl From<FloorError> for DeployError {
    fn from(e: FloorError) -> Self {
        DeployError::Floor(e)
    }
}
impl From<BootEnvError> for DeployError {
    fn from(e: BootEnvError) -> Self {
        DeployError::Env(e)
    }
}
impl From<StateError> for DeployError {
    fn from(e: StateError) -> Self {
        DeployError::Env(BootEnvError::State(e))
    }
}

/// Maps an I/O error on `path` during `what` to [`DeployError::Io`].
pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> DeployError + 'a {
    move |source| DeployError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
