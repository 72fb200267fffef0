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

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use agent_core::object::ObjectId;
use bootloader_hooks::{BootState, DecisionKind, Slot, SlotName, SlotState, StateError};

use crate::apply::{self, Applied, ApplyError, Trust};
use crate::bootcfg::{self, BootConfig, ConfigError, KARGS_VARS};
use crate::checkout::{self, CheckoutError, CheckoutMode};
use crate::floor::{self, FloorError};
use crate::fsops::{self, Point};
use crate::repo::{CommitInfo, RepoError};
use crate::sysroot::Sysroot;

pub mod adopt;
pub mod board_env;
pub mod booted;
pub mod env;
pub mod verify;

pub use adopt::ADOPTED_NAME;
pub use booted::{detect_booted, Booted, BootedDoubt};

pub use env::{BootEnvError, EnvContent};
pub use verify::{verify, VerifyReport};

mod cleanup;
pub use cleanup::CleanupReport;

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

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DeployError + 'a {
    move |source| DeployError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the booted slot was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootedSource {
    /// `--booted-slot`.
    Flag,
    /// [`BOOTED_SLOT_VAR`].
    EnvVar,
    /// `ecu.slot=` or `rauc.slot=` on the kernel command line.
    Cmdline,
    /// `root=` on the kernel command line, one slot's root device (`slot-a-root`,
    /// `slot-b-root`, or Mender's defaults).
    RootDevice,
    /// `S/run/booted`, written by `simulate-boot` and by provisioning.
    RunFile,
}

/// Parses `A`/`B` (any case) and RAUC's `rootfs.0`/`rootfs.1`.
pub fn parse_slot(s: &str) -> Option<Slot> {
    match s.trim() {
        "rootfs.0" | "system0" => Some(Slot::A),
        "rootfs.1" | "system1" => Some(Slot::B),
        other => Slot::parse(other),
    }
}

/// The slot named on a kernel command line by `ecu.slot=` (or else `rauc.slot=`).
pub fn slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    let find = |key: &str| {
        cmdline
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(key))
            .next_back()
            .and_then(parse_slot)
    };
    find("ecu.slot=").or_else(|| find("rauc.slot="))
}

/// The deployment named on a kernel command line by `ecu.deployment=` (the default `kargs`
/// template writes it), as given (validate it with [`is_deployment_name`]).
pub fn deployment_from_cmdline(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("ecu.deployment="))
        .next_back()
}

/// The kernel command line: the file [`CMDLINE_VAR`] names, else `/proc/cmdline` (`None`
/// when it cannot be read).
pub fn read_cmdline() -> Option<String> {
    let path = std::env::var_os(CMDLINE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/cmdline"));
    let f = fs::File::open(path).ok()?;
    // A command line is at most a few KiB (COMMAND_LINE_SIZE); never read more.
    let mut text = String::new();
    f.take(64 * 1024).read_to_string(&mut text).ok()?;
    Some(text)
}

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

/// What `install` or `deploy` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageReport {
    /// What was applied (`install` only).
    pub applied: Option<Applied>,
    /// The commit staged.
    pub commit: String,
    /// Its version.
    pub version: String,
    /// The deployment directory's name.
    pub deployment: String,
    /// The slot it is in.
    pub slot: String,
    /// `provisioned` (first deployment, booted), `staged` (next boot tries it) or
    /// `unchanged` (it was already the next boot).
    pub action: String,
    /// Tries it got.
    pub tries: u8,
    /// The deployment it replaced.
    pub replaced: Option<String>,
    /// When this install adopted the bootloader's environment: the booted slot, where the
    /// running system was recorded as `adopted-system`.
    pub adopted: Option<String>,
    /// Files, symlinks and directories checked out.
    pub checkout: Option<checkout::CheckoutStats>,
    /// Whether the checkout hard-linked (else it copied).
    pub hardlinked: bool,
}

/// What `mark-good`, `rollback` and `simulate-boot` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootReport {
    /// The slot concerned (booted for mark-good, next boot for rollback and simulate-boot;
    /// `rescue` when simulate-boot boots RAUC's GRUB rescue entry).
    pub slot: String,
    /// The deployment in it.
    pub deployment: String,
    /// Whether the environment was written.
    pub changed: bool,
    /// For `simulate-boot`: why that slot; `confirmed`, `trial`, `last-resort`, `rollback`,
    /// `refill` or `rescue` in JSON (`DecisionKind::as_str`).
    pub kind: Option<DecisionKind>,
    /// Tries the slot has left afterwards.
    pub tries_left: u8,
    /// For `simulate-boot`: whether the booted deployment matches its commit.
    pub verified: Option<bool>,
    /// For `mark-good`: the anti-rollback floor before and after (raised to the security
    /// version of the deployment marked good, never lowered).
    pub security_floor: Option<(u64, u64)>,
}

/// What `repair-env` found and wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairReport {
    /// `repaired`, `would-repair` (`--dry-run`) or `unchanged` (the environment already agrees
    /// with what runs).
    pub action: String,
    /// Why the environment needed rebuilding (`lost`, `no-boot-state`, `invalid`,
    /// `disagrees`), or `ok`.
    pub found: String,
    /// The booted slot.
    pub booted_slot: String,
    /// Where the booted slot was learnt.
    pub booted_source: BootedSource,
    /// The booted deployment.
    pub booted: String,
    /// How the booted deployment was identified: `kernel command line`, `only deployment on
    /// disk`, or `environment` (unchanged).
    pub booted_from: String,
    /// The other deployment on disk (recorded in the other slot as given up), if any.
    pub fallback: Option<String>,
    /// The boot state written (or that would be).
    pub state: env::Report,
}

/// One deployment as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentStatus {
    /// `A` or `B`.
    pub slot: String,
    /// Directory name under `S/deploy`.
    pub name: String,
    /// Commit id.
    pub commit: String,
    /// A ref whose head or history holds the commit.
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    /// Commit version.
    pub version: String,
    /// Commit subject.
    pub subject: String,
    /// Commit timestamp (seconds since the epoch).
    pub timestamp: u64,
    /// The commit's security version (anti-rollback; 0 when it carries none).
    pub security_version: u64,
    /// The booted deployment.
    pub booted: bool,
    /// The next boot takes it.
    pub next_boot: bool,
    /// Marked good (successful).
    pub good: bool,
    /// Boots left while on trial.
    pub tries_left: u8,
    /// Boot priority (0: never, unless as last resort).
    pub priority: u8,
    /// `booted` (good), `trial` (booted, not marked good), `staged` (next boot tries it),
    /// `rollback` (good, not booted), `failed` (used its tries) or `rolled-back` (given up).
    pub role: String,
    /// Its directory exists.
    pub present: bool,
    /// Kernel arguments recorded for the slot.
    pub kargs: Option<String>,
}

/// What `status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The sysroot.
    pub sysroot: PathBuf,
    /// `empty`, `idle`, `staged`, `trial`, `rolled-back` or `rollback-pending`.
    pub state: String,
    /// A sentence about the state.
    pub message: String,
    /// The booted slot, when known.
    pub booted_slot: Option<String>,
    /// Where the booted slot was learnt.
    pub booted_source: Option<BootedSource>,
    /// Whether the booted deployment is confirmed good.
    pub booted_good: Option<bool>,
    /// The slot the next boot takes.
    pub next_boot: Option<String>,
    /// Why the next boot takes that slot: `confirmed`, `trial`, `last-resort`, `rollback`,
    /// `refill` or `rescue` in JSON (`DecisionKind::as_str`).
    pub next_boot_kind: Option<DecisionKind>,
    /// Whether a deployment failed its trial and the device fell back (or was rolled back).
    pub rolled_back: bool,
    /// Both slots' deployments, A first.
    pub deployments: Vec<DeploymentStatus>,
    /// The refs the device follows (`agent.conf`'s `ref` lines; empty: any).
    pub refs_followed: Vec<String>,
    /// The anti-rollback floor (`S/security-floor`).
    pub security_floor: u64,
    /// The environment: backend and paths.
    pub env: EnvInfo,
}

/// Where the boot state lives.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvInfo {
    /// `uboot`, `uboot-redundant` or `grub`.
    pub backend: String,
    /// `native`, `rauc` or `mender`.
    pub scheme: String,
    /// The files or devices.
    pub paths: Vec<PathBuf>,
    /// Boot-state revision.
    pub revision: Option<u32>,
}

impl BootedSource {
    /// Where the booted slot was learnt, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            BootedSource::Flag => "--booted-slot",
            BootedSource::EnvVar => BOOTED_SLOT_VAR,
            BootedSource::Cmdline => "kernel command line",
            BootedSource::RootDevice => "root device on the kernel command line",
            BootedSource::RunFile => "S/run/booted",
        }
    }
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

    /// Installs an update and stages its commit for the next boot (on a sysroot without boot
    /// state, provisions it as the booted deployment), accepting only what [`Deployer::trust`]
    /// accepts. Refuses before reading the update when staging would leave no good fallback
    /// or no key could check a signature. With `opts.rebase`, the ref installed becomes the
    /// one the device follows (`agent.conf`'s `ref` lines) once the commit is staged.
    pub fn install(
        &self,
        input: &mut dyn Read,
        opts: &InstallOptions,
        progress: &mut dyn FnMut(&agent_core::install::Progress),
    ) -> Result<StageReport, DeployError> {
        let input = apply::Input::Stream {
            read: input,
            offset: 0,
        };
        self.install_from(input, opts, progress)
    }

    /// As [`Deployer::install`], from a seekable file or a stream that starts inside the file
    /// (resuming an interrupted install: [`apply::apply_from`]).
    pub fn install_from(
        &self,
        input: apply::Input<'_>,
        opts: &InstallOptions,
        progress: &mut dyn FnMut(&agent_core::install::Progress),
    ) -> Result<StageReport, DeployError> {
        let trust = self.trust(opts)?;
        // Refused early, before the update is read; staging checks again under the lock.
        self.check_can_install()?;
        // Reading and importing the update holds only the repository's lock (which serialises
        // imports), so a slow or stalled input never blocks `mark-good` or `rollback`.
        fsops::point(Point::Step, &self.sysroot.repo().path().join("apply"));
        let applied = apply::apply_from(self.sysroot.repo(), input, &trust, progress)
            .map_err(DeployError::Apply)?;
        let _lock = self.lock()?;
        let commit = ObjectId::from_hex(&applied.commit)
            .map_err(|_| DeployError::BadDeploymentName(applied.commit.clone()))?;
        let mut r = self.deploy_commit(&commit, Some(&applied.ref_name))?;
        if let Some(to) = &opts.rebase {
            if self.cfg.refs != [to.clone()] {
                bootcfg::write_refs(self.sysroot.path(), std::slice::from_ref(to))?;
            }
        }
        r.applied = Some(applied);
        Ok(r)
    }

    /// Refuses what staging would refuse, before the update is read: an environment that
    /// leaves no fallback, that disagrees with the running system, or that is lost while
    /// deployments exist.
    fn check_can_install(&self) -> Result<(), DeployError> {
        match self.env()? {
            EnvContent::Ready(img, st) if self.adoptable(&st)? => {
                self.adoption_slot(&img, &st, true).map(|_| ())
            }
            EnvContent::Ready(_, st) => {
                self.check_can_stage(&st)?;
                self.check_sources(&st)
            }
            _ if self.has_deployment_dirs()? && !self.interrupted_provisioning()? => {
                Err(DeployError::EnvLost(self.cfg.env.0.clone()))
            }
            // A provisioning of a blank environment: it needs the board's defaults.
            EnvContent::Missing => {
                board_env::base_for_blank(&self.cfg, self.sysroot.path()).map(|_| ())
            }
            EnvContent::NoBootState(_) => Ok(()),
        }
    }

    /// Whether the environment is the bootloader's own (no slot names anything) and nothing
    /// of the agent's is on disk but what an interrupted adoption or provisioning left: then
    /// the first `install`, `deploy` or `mark-good` adopts it ([`adopt`]).
    fn adoptable(&self, state: &BootState) -> Result<bool, DeployError> {
        Ok(adopt::unowned(state)
            && (!self.has_deployment_dirs()? || self.interrupted_provisioning()?))
    }

    /// The booted slot of an environment being adopted: what the running system says
    /// (`--booted-slot`, [`BOOTED_SLOT_VAR`], the kernel command line; never the run file),
    /// which the bootloader's own variables must allow ([`adopt::bootloader_allows`]). With
    /// `staging`, also refused when the bootloader has that slot on trial and the other one is
    /// its good fallback (a new deployment would replace it).
    fn adoption_slot(
        &self,
        img: &env::EnvImage,
        state: &BootState,
        staging: bool,
    ) -> Result<Slot, DeployError> {
        let scheme = self.cfg.scheme.name();
        let (x, source) = match self.booted {
            Some((s, src)) if src != BootedSource::RunFile => (s, src),
            _ if self.booted_doubt.is_some() => return self.booted_slot(),
            other => {
                return Err(DeployError::AdoptUnknown {
                    env: self.cfg.env.0.clone(),
                    scheme,
                    run_file: other.map(|b| b.0),
                })
            }
        };
        adopt::bootloader_allows(&self.cfg, img, x).map_err(|why| DeployError::AdoptDisagree {
            env: self.cfg.env.0.clone(),
            scheme,
            slot: x,
            source,
            why,
        })?;
        if staging && !state.slot(x).successful && state.slot(x.other()).successful {
            return Err(DeployError::AdoptOnTrial { booted: x });
        }
        Ok(x)
    }

    /// Writes `agent.conf` when it is missing (the configuration in force, so that later
    /// defaults never change the device) and records `ref_name` as the ref the device follows
    /// when it follows none yet.
    fn record_config(&self, ref_name: Option<&str>) -> Result<(), DeployError> {
        let conf = self.sysroot.path().join(bootcfg::CONFIG_FILE);
        // The device follows the ref it was provisioned with, unless agent.conf says otherwise.
        let record: Vec<String> = match ref_name {
            Some(r) if self.cfg.refs.is_empty() => vec![r.to_string()],
            _ => self.cfg.refs.clone(),
        };
        if !conf.exists() {
            let cfg = BootConfig {
                refs: record,
                ..self.cfg.clone()
            };
            fsops::write_atomic(&conf, cfg.to_text(self.sysroot.path()).as_bytes(), 0o644)
                .map_err(io_err("write", &conf))?;
        } else if record != self.cfg.refs {
            bootcfg::write_refs(self.sysroot.path(), &record)?;
        }
        Ok(())
    }

    /// Adopts the bootloader's environment and stages `info` in the slot that is not booted:
    /// the running system is recorded in the booted slot as [`ADOPTED_NAME`], with the
    /// bootloader's view of it (confirmed or not) kept, in the same one environment update
    /// that stages the new deployment. Written like a provisioning: the marker, the checkout,
    /// `agent.conf`, then the environment last.
    fn adopt_and_stage(
        &self,
        img: &env::EnvImage,
        state: &BootState,
        info: &CommitInfo,
        ref_name: Option<&str>,
    ) -> Result<StageReport, DeployError> {
        let x = self.adoption_slot(img, state, true)?;
        let y = x.other();
        // Whatever S/deploy holds is this adoption's own interrupted work.
        self.remove_unnamed(&BootState::default())?;
        let dir = self.deploy_dir();
        fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
        let marker = dir.join(PROVISIONING_MARKER);
        let planned = deployment_name(&info.id, 0);
        fsops::write_atomic(&marker, format!("{planned}\n").as_bytes(), 0o644)
            .map_err(io_err("write", &marker))?;
        let (name, stats, hardlinked) =
            self.create_deployment(&info.id, &[SlotName::EMPTY, SlotName::EMPTY], ref_name)?;
        self.record_config(ref_name)?;
        let mut new_state = *state;
        new_state.slot_mut(x).name = SlotName::from_str(ADOPTED_NAME)?;
        new_state.stage(y, self.tries, SlotName::from_str(&name)?)?;
        let kargs = self.cfg.kargs_for(self.sysroot.path(), y, &name);
        fsops::point(Point::Step, &self.cfg.env.0);
        env::write(
            &self.cfg,
            Some(img),
            &new_state,
            &[(KARGS_VARS[y.index()], Some(&kargs))],
        )?;
        self.remove_unnamed(&new_state)?;
        Ok(StageReport {
            applied: None,
            commit: info.id.to_string(),
            version: info.version.clone(),
            deployment: name,
            slot: y.to_string(),
            action: "staged".into(),
            tries: self.tries,
            replaced: None,
            adopted: Some(x.to_string()),
            checkout: Some(stats),
            hardlinked,
        })
    }

    /// Stages a commit that is in the repository (a ref, an id or a unique prefix).
    pub fn deploy(&self, rev: &str) -> Result<StageReport, DeployError> {
        let _lock = self.lock()?;
        let repo = self.sysroot.repo();
        let commit = repo.resolve(rev)?;
        let ref_name = if crate::repo::validate_ref(rev).is_ok() && repo.read_ref(rev)?.is_some() {
            Some(rev.to_string())
        } else {
            repo.list_refs()?
                .into_iter()
                .find(|(_, id)| *id == commit)
                .map(|(n, _)| n)
        };
        self.deploy_commit(&commit, ref_name.as_deref())
    }

    fn deploy_commit(
        &self,
        commit: &ObjectId,
        ref_name: Option<&str>,
    ) -> Result<StageReport, DeployError> {
        let info = self.sysroot.repo().read_commit(commit)?;
        // Checked again under the sysroot lock: `mark-good` may have raised the floor while the
        // update was read, and `deploy` stages commits that were never checked.
        let floor = floor::read(self.sysroot.path())?;
        if info.security_version < floor {
            return Err(DeployError::BelowFloor {
                commit: *commit,
                security_version: info.security_version,
                floor,
            });
        }
        let (img, state) = match self.env()? {
            EnvContent::Ready(img, st) => (Some(img), Some(*st)),
            EnvContent::NoBootState(img) => (Some(img), None),
            EnvContent::Missing => (None, None),
        };
        let Some(state) = state else {
            if self.has_deployment_dirs()? && !self.interrupted_provisioning()? {
                return Err(DeployError::EnvLost(self.cfg.env.0.clone()));
            }
            return self.provision(img.as_ref(), &info, ref_name);
        };
        let img = img.expect("a boot state comes from an image");
        if self.adoptable(&state)? {
            return self.adopt_and_stage(&img, &state, &info, ref_name);
        }
        let y = self.check_can_stage(&state)?;
        self.check_sources(&state)?;
        let x = y.other();
        let next = env::next_boot(&self.cfg, &img)?.decision;
        // Already what the next boot takes: nothing to do.
        for s in [x, y] {
            let st = state.slot(s);
            if next.slot == s
                && Self::commit_of_slot(st)? == Some(*commit)
                && (st.successful || st.tries_left > 0)
                && self.deployment_path(st.name.as_str()).is_dir()
            {
                self.remove_unnamed(&state)?;
                return Ok(StageReport {
                    applied: None,
                    commit: commit.to_string(),
                    version: info.version.clone(),
                    deployment: st.name.as_str().to_string(),
                    slot: s.to_string(),
                    action: "unchanged".into(),
                    tries: st.tries_left,
                    replaced: None,
                    adopted: None,
                    checkout: None,
                    hardlinked: false,
                });
            }
        }
        // Leftovers of an interrupted run go first, so that their names can be reused.
        self.remove_unnamed(&state)?;
        let names = [state.slot(x).name, state.slot(y).name];
        let (name, stats, hardlinked) = self.create_deployment(commit, &names, ref_name)?;
        if names.iter().any(|n| adopt::is_adopted(n.as_str())) {
            // The first install since `mark-good` adopted the environment: as a provisioning,
            // it records the ref the device follows (when agent.conf names none).
            self.record_config(ref_name)?;
        }
        let slot_name = SlotName::from_str(&name)?;
        let mut new_state = state;
        // What the bootloader can count (Mender's GRUB script gives exactly one try).
        let tries = self
            .tries
            .min(self.cfg.scheme.max_tries(env::flavor(&self.cfg)));
        new_state.stage(y, tries, slot_name)?;
        let kargs = self.cfg.kargs_for(self.sysroot.path(), y, &name);
        fsops::point(Point::Step, &self.cfg.env.0);
        env::write(
            &self.cfg,
            Some(&img),
            &new_state,
            &[(KARGS_VARS[y.index()], Some(&kargs))],
        )?;
        let old = state.slot(y).name;
        let replaced = (!old.is_empty() && old.as_str() != name).then(|| old.as_str().to_string());
        self.remove_unnamed(&new_state)?;
        Ok(StageReport {
            applied: None,
            commit: commit.to_string(),
            version: info.version,
            deployment: name,
            slot: y.to_string(),
            action: "staged".into(),
            tries,
            replaced,
            adopted: None,
            checkout: Some(stats),
            hardlinked,
        })
    }

    fn provision(
        &self,
        img: Option<&env::EnvImage>,
        info: &CommitInfo,
        ref_name: Option<&str>,
    ) -> Result<StageReport, DeployError> {
        if let Some(d) = &self.booted_doubt {
            return Err(DeployError::BootedDoubt(d.clone()));
        }
        // A blank U-Boot environment starts from the board's default one (or is refused,
        // before anything is written).
        let board = match img {
            Some(_) => None,
            None => board_env::base_for_blank(&self.cfg, self.sysroot.path())?,
        };
        let img = img.or(board.as_ref());
        let slot = self.booted.map(|b| b.0).unwrap_or(Slot::A);
        // Only an interrupted provisioning (its marker present) or an empty S/deploy gets
        // here: a directory no environment names is that provisioning's garbage.
        self.remove_unnamed(&BootState::default())?;
        let dir = self.deploy_dir();
        fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
        let marker = dir.join(PROVISIONING_MARKER);
        let planned = deployment_name(&info.id, 0);
        fsops::write_atomic(&marker, format!("{planned}\n").as_bytes(), 0o644)
            .map_err(io_err("write", &marker))?;
        let (name, stats, hardlinked) =
            self.create_deployment(&info.id, &[SlotName::EMPTY, SlotName::EMPTY], ref_name)?;
        self.record_config(ref_name)?;
        for (p, _) in self.cfg.env_paths() {
            let dir = fsops::parent_of(&p);
            fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
        }
        let state = BootState::initial(slot, SlotName::from_str(&name)?);
        let kargs = self.cfg.kargs_for(self.sysroot.path(), slot, &name);
        // The booted slot first: once the boot state exists, a rerun must know it.
        self.write_booted(slot)?;
        fsops::point(Point::Step, &self.cfg.env.0);
        env::write(
            &self.cfg,
            img,
            &state,
            &[(KARGS_VARS[slot.index()], Some(&kargs))],
        )?;
        self.remove_provisioning_marker()?;
        Ok(StageReport {
            applied: None,
            commit: info.id.to_string(),
            version: info.version.clone(),
            deployment: name,
            slot: slot.to_string(),
            action: "provisioned".into(),
            tries: 0,
            replaced: None,
            adopted: None,
            checkout: Some(stats),
            hardlinked,
        })
    }

    /// Checks `commit` out as a new deployment directory (temp name, synced, renamed into
    /// place), with its origin file (`<name>.origin`: the ref it came from) written before
    /// the rename. Returns its name.
    fn create_deployment(
        &self,
        commit: &ObjectId,
        in_use: &[SlotName],
        ref_name: Option<&str>,
    ) -> Result<(String, checkout::CheckoutStats, bool), DeployError> {
        let dir = self.deploy_dir();
        fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
        let mut serial = 0u32;
        let name = loop {
            let n = deployment_name(commit, serial);
            if !in_use.iter().any(|u| u.as_str() == n) && !dir.join(&n).exists() {
                break n;
            }
            serial += 1;
        };
        let tmp = dir.join(format!(".tmp-{name}"));
        fsops::remove_tree(&tmp).map_err(io_err("remove", &tmp))?;
        fsops::point(Point::Step, &tmp);
        let repo = self.sysroot.repo();
        let (stats, hardlinked) =
            match checkout::checkout(repo, commit, &tmp, CheckoutMode::HardLink) {
                Ok(s) => (s, true),
                Err(CheckoutError::Io { source, .. })
                    if matches!(source.raw_os_error(), Some(18) | Some(1) | Some(31)) =>
                {
                    // EXDEV, EPERM, EMLINK: the repository cannot be linked from here; copy.
                    log::info!("hard links not possible ({source}); copying the checkout");
                    fsops::remove_tree(&tmp).map_err(io_err("remove", &tmp))?;
                    fsops::point(Point::Step, &tmp);
                    (
                        checkout::checkout(repo, commit, &tmp, CheckoutMode::Copy)?,
                        false,
                    )
                }
                Err(e) => {
                    let _ = fsops::remove_tree(&tmp);
                    return Err(e.into());
                }
            };
        fsops::syncfs(&tmp).map_err(io_err("sync", &tmp))?;
        let origin = dir.join(format!("{name}{ORIGIN_SUFFIX}"));
        let text = match ref_name {
            Some(r) => format!("commit={commit}\nref={r}\n"),
            None => format!("commit={commit}\n"),
        };
        fsops::write_atomic(&origin, text.as_bytes(), 0o644).map_err(io_err("write", &origin))?;
        let final_path = dir.join(&name);
        fsops::rename(&tmp, &final_path).map_err(io_err("rename into", &final_path))?;
        fsops::fsync_dir(&dir).map_err(io_err("fsync", &dir))?;
        Ok((name, stats, hardlinked))
    }

    /// Removes every directory of `S/deploy` that `state` does not name (renamed to
    /// `.del-<name>` first, so that a half-removed deployment never looks like one). Returns
    /// the names removed (leftovers of interrupted checkouts and removals included).
    /// The provisioning marker stays while `state` names nothing (a provisioning in
    /// progress) and goes last otherwise.
    fn remove_unnamed(&self, state: &BootState) -> Result<Vec<String>, DeployError> {
        let dir = self.deploy_dir();
        let mut removed = Vec::new();
        for n in self.deployment_dirs()? {
            if n == PROVISIONING_MARKER {
                continue;
            }
            let named = |x: &str| Slot::ALL.iter().any(|s| state.slot(*s).name.as_str() == x);
            let p = dir.join(&n);
            if let Some(stem) = n.strip_suffix(ORIGIN_SUFFIX) {
                if !named(stem) {
                    fsops::remove_file_if_exists(&p).map_err(io_err("remove", &p))?;
                }
                continue;
            }
            if named(&n) {
                continue;
            }
            if n.starts_with('.') {
                fsops::remove_tree(&p).map_err(io_err("remove", &p))?;
                removed.push(n);
                continue;
            }
            let del = dir.join(format!(".del-{n}"));
            fsops::remove_tree(&del).map_err(io_err("remove", &del))?;
            fsops::rename(&p, &del).map_err(io_err("rename", &p))?;
            fsops::fsync_dir(&dir).map_err(io_err("fsync", &dir))?;
            fsops::remove_tree(&del).map_err(io_err("remove", &del))?;
            removed.push(n);
        }
        if Slot::ALL.iter().any(|s| !state.slot(*s).name.is_empty()) {
            self.remove_provisioning_marker()?;
        }
        Ok(removed)
    }

    fn remove_provisioning_marker(&self) -> Result<(), DeployError> {
        let dir = self.deploy_dir();
        let marker = dir.join(PROVISIONING_MARKER);
        if fsops::remove_file_if_exists(&marker).map_err(io_err("remove", &marker))? {
            fsops::fsync_dir(&dir).map_err(io_err("fsync", &dir))?;
        }
        Ok(())
    }

    fn write_booted(&self, slot: Slot) -> Result<(), DeployError> {
        let run = self.sysroot.path().join(Sysroot::RUN_DIR);
        fsops::mkdir_all(&run, 0o755).map_err(io_err("create", &run))?;
        let p = run.join(Sysroot::BOOTED_FILE);
        fsops::write_atomic(&p, format!("{slot}\n").as_bytes(), 0o644).map_err(io_err("write", &p))
    }

    /// Writes `S/run/booted.next` naming `slot` (complete and fsynced), for
    /// [`Deployer::commit_booted`] to rename over `S/run/booted`: what needs disk space is
    /// done before anything else changes.
    fn prepare_booted(&self, slot: Slot) -> Result<PathBuf, DeployError> {
        let run = self.sysroot.path().join(Sysroot::RUN_DIR);
        fsops::mkdir_all(&run, 0o755).map_err(io_err("create", &run))?;
        let next = run.join(format!("{}.next", Sysroot::BOOTED_FILE));
        fsops::write_atomic(&next, format!("{slot}\n").as_bytes(), 0o644).map_err(|e| {
            let _ = fsops::remove_file(&next);
            io_err("write", &next)(e)
        })?;
        Ok(next)
    }

    /// Renames what [`Deployer::prepare_booted`] wrote over `S/run/booted` (no new space).
    fn commit_booted(&self, next: &Path) -> Result<(), DeployError> {
        let run = self.sysroot.path().join(Sysroot::RUN_DIR);
        let p = run.join(Sysroot::BOOTED_FILE);
        fsops::rename(next, &p).map_err(io_err("rename into", &p))?;
        fsops::fsync_dir(&run).map_err(io_err("fsync", &run))
    }

    /// The booted deployment reports a successful boot.
    pub fn mark_good(&self) -> Result<BootReport, DeployError> {
        let _lock = self.lock()?;
        let (img, mut state) = self.ready()?;
        let adopted = self.adoptable(&state)?;
        let x = if adopted {
            // The bootloader's own environment: the running system is recorded in the booted
            // slot (one more revision, unless confirming it changes the state anyway).
            let x = self.adoption_slot(&img, &state, false)?;
            state.slot_mut(x).name = SlotName::from_str(ADOPTED_NAME)?;
            x
        } else {
            self.check_named(&state)?;
            self.booted_slot()?
        };
        if state.slot(x).name.is_empty() {
            return Err(DeployError::BootedSlotEmpty(x));
        }
        let mut changed = state.mark_good(x);
        if adopted && !changed {
            state.revision = state.revision.wrapping_add(1);
            changed = true;
        }
        if changed {
            fsops::point(Point::Step, &self.cfg.env.0);
            env::write(&self.cfg, Some(&img), &state, &[])?;
        }
        // The floor follows the deployment confirmed good, after the environment says so (a
        // cut in between leaves the old floor; running mark-good again raises it). Never at
        // install time: a staged deployment that fails must still be able to fall back.
        let security_version = match Self::commit_of_slot(state.slot(x))? {
            Some(c) => self.sysroot.repo().read_commit(&c)?.security_version,
            None => 0,
        };
        let floor = floor::raise(self.sysroot.path(), security_version)?;
        Ok(BootReport {
            slot: x.to_string(),
            deployment: state.slot(x).name.as_str().to_string(),
            changed,
            kind: None,
            tries_left: state.slot(x).tries_left,
            verified: None,
            security_floor: Some(floor),
        })
    }

    /// Makes the other deployment the default for the next boot: the slot the next boot
    /// would take is given up (as `rpm-ostree rollback` swaps the first two deployments).
    /// When the other slot was already given up by a rollback, nothing changes and the
    /// report's `slot` is the one the next boot keeps taking (`changed` false).
    pub fn rollback(&self) -> Result<BootReport, DeployError> {
        let _lock = self.lock()?;
        let (img, mut state) = self.ready()?;
        let abandon = env::next_boot(&self.cfg, &img)?.decision.slot;
        let other = abandon.other();
        let o = *state.slot(other);
        if o.name.is_empty() {
            return Err(DeployError::NoOtherDeployment { abandon });
        }
        if o.is_retired() {
            // The other slot was given up by an earlier rollback: this one already happened
            // (a rerun after an interruption lands here), there is nothing to go back to.
            return Ok(BootReport {
                slot: abandon.to_string(),
                deployment: state.slot(abandon).name.as_str().to_string(),
                changed: false,
                kind: None,
                tries_left: state.slot(abandon).tries_left,
                verified: None,
                security_floor: None,
            });
        }
        match state.rollback(abandon) {
            Ok(true) => {
                fsops::point(Point::Step, &self.cfg.env.0);
                env::write(&self.cfg, Some(&img), &state, &[])?;
            }
            Ok(false) => {}
            Err(StateError::NoFallback { abandon }) => {
                return Err(DeployError::NoFallback { abandon })
            }
            Err(e) => return Err(e.into()),
        }
        Ok(BootReport {
            slot: other.to_string(),
            deployment: state.slot(other).name.as_str().to_string(),
            changed: true,
            kind: None,
            tries_left: state.slot(other).tries_left,
            verified: None,
            security_floor: None,
        })
    }

    /// Does what the bootloader does at the next boot (the decision of `bootloader-hooks`
    /// on the configured environment, counting a try), then records the chosen slot as booted
    /// in `S/run/booted` and checks its deployment against its commit.
    pub fn simulate_boot(&self) -> Result<BootReport, DeployError> {
        let _lock = self.lock()?;
        let (img, _) = self.ready()?;
        let boot = env::next_boot(&self.cfg, &img)?;
        let d = boot.decision;
        if d.kind == DecisionKind::Rescue {
            return self.simulate_rescue(&img, &boot.writes, d.changed);
        }
        // The run file first (written aside, fsynced): on a full disk this fails before a try
        // is counted. The environment's own write is atomic (in place for a redundant U-Boot
        // env, needing no new space), and the rename after it needs no new space either.
        let next = self.prepare_booted(d.slot)?;
        if d.changed {
            fsops::point(Point::Step, &self.cfg.env.0);
            if let Err(e) = env::write_set(&self.cfg, Some(&img), &boot.writes, &[]) {
                let _ = fsops::remove_file(&next);
                return Err(e.into());
            }
        }
        self.commit_booted(&next)?;
        let st = d.state.slot(d.slot);
        let verified = match Self::commit_of_slot(st)? {
            Some(c) => {
                let r = verify(
                    self.sysroot.repo(),
                    &c,
                    &self.deployment_path(st.name.as_str()),
                )?;
                Some(r.ok())
            }
            None => None,
        };
        Ok(BootReport {
            slot: d.slot.to_string(),
            deployment: st.name.as_str().to_string(),
            changed: d.changed,
            kind: Some(d.kind),
            tries_left: st.tries_left,
            verified,
            security_floor: None,
        })
    }

    /// [`Deployer::simulate_boot`] when GRUB boots RAUC's rescue entry: the environment gets
    /// the bootloader's writes, and no slot is recorded as booted (`S/run/booted` is removed:
    /// the rescue system is neither slot, so later commands must learn the booted slot from
    /// the running system, never from a stale file).
    fn simulate_rescue(
        &self,
        img: &env::EnvImage,
        writes: &bootloader_hooks::VarSet<'static>,
        changed: bool,
    ) -> Result<BootReport, DeployError> {
        let run = self.sysroot.path().join(Sysroot::RUN_DIR);
        let booted = run.join(Sysroot::BOOTED_FILE);
        match fsops::remove_file(&booted) {
            Ok(()) => fsops::fsync_dir(&run).map_err(io_err("fsync", &run))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &booted)(e)),
        }
        if changed {
            fsops::point(Point::Step, &self.cfg.env.0);
            env::write_set(&self.cfg, Some(img), writes, &[])?;
        }
        Ok(BootReport {
            slot: "rescue".into(),
            deployment: String::new(),
            changed,
            kind: Some(DecisionKind::Rescue),
            tries_left: 0,
            verified: None,
            security_floor: None,
        })
    }

    /// Rebuilds the boot environment from what is on disk and what the running system says:
    /// the booted slot (kernel command line, `S/run/booted`, or what the caller says), the
    /// booted deployment (the kernel command line's `ecu.deployment=`, or the only deployment
    /// on disk) and the deployments present. The booted deployment becomes the booted slot's,
    /// marked good (it is running); the other deployment, if there is one, goes into the other
    /// slot given up (priority 0, not marked good, no tries: nothing says it ever booted
    /// well), as after a rollback, so the next `install` replaces it. Refuses when it cannot tell; never a default. With `dry_run`,
    /// writes nothing.
    pub fn repair_env(&self, dry_run: bool) -> Result<RepairReport, DeployError> {
        let _lock = self.lock()?;
        let Some((b, source)) = self.booted else {
            if let Some(d) = &self.booted_doubt {
                return Err(DeployError::BootedDoubt(d.clone()));
            }
            return Err(DeployError::CannotRepair(format!(
                "nothing says which slot is booted (no ecu.slot= on the kernel command line, no S/run/booted); pass --booted-slot A|B or set {BOOTED_SLOT_VAR}"
            )));
        };
        let (img, found, old) = match env::read(&self.cfg) {
            Ok(EnvContent::Ready(img, st)) => {
                let found = if self.check_sources(&st).is_err() {
                    if Slot::ALL.iter().any(|s| {
                        let n = st.slot(*s).name;
                        !n.is_empty()
                            && !is_deployment_name(n.as_str())
                            && !adopt::is_adopted(n.as_str())
                    }) {
                        "invalid"
                    } else {
                        "disagrees"
                    }
                } else {
                    "ok"
                };
                (Some(img), found, Some(*st))
            }
            Ok(EnvContent::NoBootState(img)) => (Some(img), "no-boot-state", None),
            Ok(EnvContent::Missing) => (None, "lost", None),
            // A CRC-bad or undecodable environment is lost; an I/O error is not ours to paper
            // over.
            Err(BootEnvError::Uboot { .. } | BootEnvError::Grub { .. })
            | Err(BootEnvError::Scheme(_)) => (None, "lost", None),
            Err(e) => return Err(e.into()),
        };
        // A lost U-Boot environment is rebuilt from the board's default one (or refused).
        let img = match img {
            Some(i) => Some(i),
            None => board_env::base_for_blank(&self.cfg, self.sysroot.path())?,
        };
        if let (Some(o), "ok") = (&old, found) {
            // The environment agrees with what runs: nothing to repair.
            let name = o.slot(b).name.as_str().to_string();
            let other = o.slot(b.other()).name;
            return Ok(RepairReport {
                action: "unchanged".into(),
                found: found.into(),
                booted_slot: b.to_string(),
                booted_source: source,
                booted: name,
                booted_from: "environment".into(),
                fallback: (!other.is_empty()).then(|| other.as_str().to_string()),
                state: env::Report::new(self.cfg.scheme, env::flavor(&self.cfg), o, None),
            });
        }
        let on_disk: Vec<String> = self
            .deployment_dirs()?
            .into_iter()
            .filter(|n| is_deployment_name(n) && self.deployment_path(n).is_dir())
            .collect();
        let (booted, booted_from) = match &self.kernel_deployment {
            Some(k) if on_disk.contains(k) => (k.clone(), "kernel command line"),
            Some(k) => {
                return Err(DeployError::CannotRepair(format!(
                    "the kernel command line says deployment {k:?} is running, but {} holds no such deployment (found: {})",
                    self.deploy_dir().display(),
                    list_or_none(&on_disk)
                )))
            }
            // A real kernel command line without ecu.deployment= while every boot of a
            // deployment carries it (the kargs name it): what runs is none of them (the system
            // the bootloader ran before the agent adopted its environment, say).
            None if matches!(source, BootedSource::Cmdline | BootedSource::RootDevice)
                && self.cfg.kargs.contains("${name}") =>
            {
                return Err(DeployError::CannotRepair(format!(
                    "the kernel command line says slot {b} runs but names no deployment (no ecu.deployment=, which the kargs in agent.conf give every deployment), so what runs is none of the deployments on disk ({}): it may be the system that ran before the agent adopted the environment; boot a deployment of the agent (or give its slot with --booted-slot) to rebuild the environment",
                    list_or_none(&on_disk)
                )))
            }
            None if on_disk.len() == 1 => (on_disk[0].clone(), "only deployment on disk"),
            None => {
                return Err(DeployError::CannotRepair(format!(
                    "cannot tell which of the {} deployments on disk runs ({}): the kernel command line has no ecu.deployment= (the default kargs write it); boot with it",
                    on_disk.len(),
                    list_or_none(&on_disk)
                )))
            }
        };
        let others: Vec<&String> = on_disk.iter().filter(|n| **n != booted).collect();
        let fallback = match others.as_slice() {
            [] => None,
            [one] => Some((*one).clone()),
            many => {
                return Err(DeployError::CannotRepair(format!(
                    "besides the booted {booted}, {} deployments are on disk ({}) and only one can be the fallback; move the others out of {}",
                    many.len(),
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    self.deploy_dir().display()
                )))
            }
        };
        // The booted deployment's commit must be in the repository.
        let (commit, _) = parse_deployment_name(&booted)
            .ok_or_else(|| DeployError::BadDeploymentName(booted.clone()))?;
        self.sysroot.repo().read_commit(&commit)?;

        let mut state = BootState::initial(b, SlotName::from_str(&booted)?);
        if let Some(f) = &fallback {
            state.slot_mut(b.other()).name = SlotName::from_str(f)?;
        }
        if let Some(o) = &old {
            state.revision = o.revision.wrapping_add(1);
        }
        let action = if dry_run {
            "would-repair"
        } else {
            let kb = self.cfg.kargs_for(self.sysroot.path(), b, &booted);
            let ko = fallback
                .as_ref()
                .map(|f| self.cfg.kargs_for(self.sysroot.path(), b.other(), f));
            fsops::point(Point::Step, &self.cfg.env.0);
            env::write(
                &self.cfg,
                img.as_ref(),
                &state,
                &[
                    (KARGS_VARS[b.index()], Some(&kb)),
                    (KARGS_VARS[b.other().index()], ko.as_deref()),
                ],
            )?;
            self.remove_provisioning_marker()?;
            "repaired"
        };
        Ok(RepairReport {
            action: action.into(),
            found: found.into(),
            booted_slot: b.to_string(),
            booted_source: source,
            booted,
            booted_from: booted_from.into(),
            fallback,
            state: env::Report::new(self.cfg.scheme, env::flavor(&self.cfg), &state, None),
        })
    }

    /// Verifies the deployment in `slot` (default: the booted one) against its commit.
    pub fn verify_slot(&self, slot: Option<Slot>) -> Result<(String, VerifyReport), DeployError> {
        let (_, state) = self.ready()?;
        let s = match slot {
            Some(s) => s,
            None => self.booted_slot()?,
        };
        let st = state.slot(s);
        if adopt::is_adopted(st.name.as_str()) {
            return Err(DeployError::NotADeployment(s));
        }
        let Some(c) = Self::commit_of_slot(st)? else {
            return Err(DeployError::BootedSlotEmpty(s));
        };
        let name = st.name.as_str().to_string();
        let r = verify(self.sysroot.repo(), &c, &self.deployment_path(&name))?;
        Ok((name, r))
    }

    /// Removes deployment directories no slot names and objects that neither a deployment
    /// nor a ref needs.
    pub fn cleanup(&self) -> Result<CleanupReport, DeployError> {
        let _lock = self.lock()?;
        // Staging leftovers of crashed writers: the repository's lock removes them.
        let tmp = cleanup::tmp_leftovers(&self.sysroot.repo().tmp_dir());
        // No install may write objects while unreferenced ones are removed.
        let _repo_lock = self.sysroot.repo().lock()?;
        let (_, state) = self.ready()?;
        self.check_sources(&state)?;
        let mut r = cleanup::cleanup(self, &state)?;
        r.tmp_files += tmp.0;
        r.bytes_freed += tmp.1;
        Ok(r)
    }

    /// The state of the sysroot, like `rpm-ostree status`.
    pub fn status(&self) -> Result<Status, DeployError> {
        let cfg = &self.cfg;
        let env_info = |rev| EnvInfo {
            backend: cfg.kind.name().into(),
            scheme: cfg.scheme.name().into(),
            paths: cfg.env_paths().into_iter().map(|(p, _)| p).collect(),
            revision: rev,
        };
        let booted = self.booted;
        let (img, state) = match self.env()? {
            EnvContent::Ready(img, st) => (img, *st),
            _ => {
                let lost = self.has_deployment_dirs()?;
                return Ok(Status {
                    sysroot: self.sysroot.path().to_path_buf(),
                    state: if lost { "env-lost" } else { "empty" }.into(),
                    message: if lost {
                        DeployError::EnvLost(cfg.env.0.clone()).to_string()
                    } else {
                        "no deployment yet: install a from-scratch update".into()
                    },
                    booted_slot: booted.map(|b| b.0.to_string()),
                    booted_source: booted.map(|b| b.1),
                    booted_good: None,
                    next_boot: None,
                    next_boot_kind: None,
                    rolled_back: false,
                    deployments: Vec::new(),
                    refs_followed: self.cfg.refs.clone(),
                    security_floor: floor::read(self.sysroot.path())?,
                    env: env_info(None),
                });
            }
        };
        let d = env::next_boot(&self.cfg, &img)?.decision;
        if self.adoptable(&state)? {
            return Ok(Status {
                sysroot: self.sysroot.path().to_path_buf(),
                state: "empty".into(),
                message: format!(
                    "the {} boot state of the bootloader names no deployment of the agent yet; the first install (or mark-good) adopts the running system in the booted slot{}",
                    cfg.scheme.name(),
                    match (booted, &self.booted_doubt) {
                        (Some((s, src)), _) if src != BootedSource::RunFile =>
                            format!(" ({s}, from the {})", src.describe()),
                        (_, Some(doubt)) => format!(", once it is known: {doubt}"),
                        _ => ", once the running system says which it is (slot-a-root/slot-b-root in agent.conf, or --booted-slot)".into(),
                    }
                ),
                booted_slot: booted.map(|b| b.0.to_string()),
                booted_source: booted.map(|b| b.1),
                booted_good: None,
                next_boot: Some(d.slot.to_string()),
                next_boot_kind: Some(d.kind),
                rolled_back: false,
                deployments: Vec::new(),
                refs_followed: self.cfg.refs.clone(),
                security_floor: floor::read(self.sysroot.path())?,
                env: env_info(Some(state.revision)),
            });
        }
        let refs = self.sysroot.repo().list_refs()?;
        let booted_slot = booted.map(|b| b.0);
        let mut deployments = Vec::new();
        for s in Slot::ALL {
            let st = state.slot(s);
            let is_booted = booted_slot == Some(s);
            let role = match (is_booted, st.successful) {
                (true, true) => "booted",
                (true, false) if st.priority == 0 => "rolled-back",
                (true, false) => "trial",
                (false, true) => "rollback",
                (false, false) if st.tries_left > 0 && st.priority > 0 => "staged",
                (false, false) if st.priority == 0 => "rolled-back",
                (false, false) => "failed",
            };
            if adopt::is_adopted(st.name.as_str()) {
                // The system the bootloader ran before the agent: no commit, no directory.
                deployments.push(DeploymentStatus {
                    slot: s.to_string(),
                    name: ADOPTED_NAME.into(),
                    commit: String::new(),
                    ref_name: None,
                    version: String::new(),
                    subject: "the system that ran before the agent adopted the environment".into(),
                    timestamp: 0,
                    security_version: 0,
                    booted: is_booted,
                    next_boot: d.slot == s,
                    good: st.successful,
                    tries_left: st.tries_left,
                    priority: st.priority,
                    role: role.into(),
                    present: true,
                    kargs: img.get(KARGS_VARS[s.index()]).map(str::to_string),
                });
                continue;
            }
            let Some(c) = Self::commit_of_slot(st)? else {
                continue;
            };
            let info = self.sysroot.repo().read_commit(&c).ok();
            let ref_name = self.origin_ref(st.name.as_str()).or_else(|| {
                refs.iter()
                    .find(|(_, id)| *id == c)
                    .or_else(|| {
                        refs.iter().find(|(_, head)| {
                            self.sysroot
                                .repo()
                                .history(head)
                                .map(|(h, _)| h.iter().any(|i| i.id == c))
                                .unwrap_or(false)
                        })
                    })
                    .map(|(n, _)| n.clone())
            });
            deployments.push(DeploymentStatus {
                slot: s.to_string(),
                name: st.name.as_str().to_string(),
                commit: c.to_string(),
                ref_name,
                version: info.as_ref().map(|i| i.version.clone()).unwrap_or_default(),
                subject: info.as_ref().map(|i| i.subject.clone()).unwrap_or_default(),
                timestamp: info.as_ref().map(|i| i.timestamp).unwrap_or_default(),
                security_version: info
                    .as_ref()
                    .map(|i| i.security_version)
                    .unwrap_or_default(),
                booted: is_booted,
                next_boot: d.slot == s,
                good: st.successful,
                tries_left: st.tries_left,
                priority: st.priority,
                role: role.into(),
                present: self.deployment_path(st.name.as_str()).is_dir(),
                kargs: img.get(KARGS_VARS[s.index()]).map(str::to_string),
            });
        }
        let version_of = |s: Slot| {
            deployments
                .iter()
                .find(|d| d.slot == s.as_str())
                .map(|d| {
                    if d.commit.is_empty() {
                        d.name.clone()
                    } else if d.version.is_empty() {
                        d.commit.get(..12).unwrap_or(&d.commit).to_string()
                    } else {
                        d.version.clone()
                    }
                })
                .unwrap_or_else(|| "-".into())
        };
        let failed = Slot::ALL.into_iter().find(|&s| {
            let st = state.slot(s);
            !st.name.is_empty() && !st.successful && st.tries_left == 0 && Some(s) != booted_slot
        });
        let (st_name, message) = match (booted_slot, failed) {
            (Some(b), Some(f)) if d.slot == b => (
                "rolled-back",
                if state.slot(f).priority == 0 {
                    format!(
                        "rolled back: slot {f} ({}) was given up; slot {b} ({}) boots",
                        version_of(f),
                        version_of(b)
                    )
                } else {
                    format!(
                        "rolled back: slot {f} ({}) used its tries without being marked good; the device is back on slot {b} ({})",
                        version_of(f),
                        version_of(b)
                    )
                },
            ),
            (Some(b), _) if !state.slot(b).successful && d.slot == b => (
                "trial",
                format!(
                    "the booted deployment ({}) is on trial with {} tries left; run `ecu-agent mark-good` once it works",
                    version_of(b),
                    state.slot(b).tries_left
                ),
            ),
            (Some(b), _) if d.slot != b && d.kind == DecisionKind::Trial => (
                "staged",
                format!(
                    "slot {} ({}) is staged: the next boot tries it ({} tries left)",
                    d.slot,
                    version_of(d.slot),
                    state.slot(d.slot).tries_left
                ),
            ),
            (Some(b), _) if d.slot != b => (
                "rollback-pending",
                format!(
                    "the next boot goes to slot {} ({})",
                    d.slot,
                    version_of(d.slot)
                ),
            ),
            (Some(b), _) => (
                "idle",
                format!("booted slot {b} ({}) is good", version_of(b)),
            ),
            (None, _) => (
                if d.kind == DecisionKind::Trial { "staged" } else { "idle" },
                format!(
                    "booted slot unknown{}; the next boot takes slot {} ({})",
                    self.booted_doubt
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default(),
                    d.slot,
                    version_of(d.slot)
                ),
            ),
        };
        Ok(Status {
            sysroot: self.sysroot.path().to_path_buf(),
            state: st_name.into(),
            message,
            booted_slot: booted_slot.map(|b| b.to_string()),
            booted_source: booted.map(|b| b.1),
            booted_good: booted_slot.map(|b| state.slot(b).successful),
            next_boot: Some(d.slot.to_string()),
            next_boot_kind: Some(d.kind),
            rolled_back: st_name == "rolled-back",
            deployments,
            refs_followed: self.cfg.refs.clone(),
            security_floor: floor::read(self.sysroot.path())?,
            env: env_info(Some(state.revision)),
        })
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
