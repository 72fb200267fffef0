//! `status`: what the sysroot holds and what the next boot takes ([`Status`], one
//! [`DeploymentStatus`] a slot, [`EnvInfo`]), like `rpm-ostree status`.

use std::path::PathBuf;

use bootloader_hooks::{DecisionKind, Scheme, Slot};

use super::{
    adopt, env, BootedSource, DeployError, Deployer, EnvContent, Role, SysrootState, ADOPTED_NAME,
};
use crate::bootcfg::{BackendKind, KARGS_VARS};
use crate::floor;

/// One deployment as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentStatus {
    /// `A` or `B`.
    pub slot: Slot,
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
    pub role: Role,
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
    pub state: SysrootState,
    /// A sentence about the state.
    pub message: String,
    /// The booted slot, when known.
    pub booted_slot: Option<Slot>,
    /// Where the booted slot was learnt.
    pub booted_source: Option<BootedSource>,
    /// Whether the booted deployment is confirmed good.
    pub booted_good: Option<bool>,
    /// The slot the next boot takes.
    pub next_boot: Option<Slot>,
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
    /// `uboot`, `uboot-redundant` or `grub` in JSON ([`BackendKind::name`]).
    pub backend: BackendKind,
    /// `native`, `rauc` or `mender` in JSON ([`Scheme::name`]).
    #[serde(serialize_with = "scheme_name")]
    pub scheme: Scheme,
    /// The files or devices.
    pub paths: Vec<PathBuf>,
    /// Boot-state revision.
    pub revision: Option<u32>,
}

/// A scheme by its name, as `agent.conf` writes it.
fn scheme_name<S: serde::Serializer>(scheme: &Scheme, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(scheme.name())
}

impl Deployer {
    /// The state of the sysroot, like `rpm-ostree status`.
    pub fn status(&self) -> Result<Status, DeployError> {
        let cfg = &self.cfg;
        let env_info = |rev| EnvInfo {
            backend: cfg.kind,
            scheme: cfg.scheme,
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
                    state: if lost {
                        SysrootState::EnvLost
                    } else {
                        SysrootState::Empty
                    },
                    message: if lost {
                        DeployError::EnvLost(cfg.env.0.clone()).to_string()
                    } else {
                        "no deployment yet: install a from-scratch update".into()
                    },
                    booted_slot: booted.map(|b| b.0),
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
                state: SysrootState::Empty,
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
                booted_slot: booted.map(|b| b.0),
                booted_source: booted.map(|b| b.1),
                booted_good: None,
                next_boot: Some(d.slot),
                next_boot_kind: Some(d.kind),
                rolled_back: false,
                deployments: Vec::new(),
                refs_followed: self.cfg.refs.clone(),
                security_floor: floor::read(self.sysroot.path())?,
                env: env_info(Some(state.revision)),
            });
        }
        let booted_slot = booted.map(|b| b.0);
        let mut deployments = Vec::new();
        for s in Slot::ALL {
            let st = state.slot(s);
            let is_booted = booted_slot == Some(s);
            let role = match (is_booted, st.successful) {
                (true, true) => Role::Booted,
                (true, false) if st.priority == 0 => Role::RolledBack,
                (true, false) => Role::Trial,
                (false, true) => Role::Rollback,
                (false, false) if st.tries_left > 0 && st.priority > 0 => Role::Staged,
                (false, false) if st.priority == 0 => Role::RolledBack,
                (false, false) => Role::Failed,
            };
            let mut ds = DeploymentStatus {
                slot: s,
                name: st.name.as_str().to_string(),
                commit: String::new(),
                ref_name: None,
                version: String::new(),
                subject: String::new(),
                timestamp: 0,
                security_version: 0,
                booted: is_booted,
                next_boot: d.slot == s,
                good: st.successful,
                tries_left: st.tries_left,
                priority: st.priority,
                role,
                present: true,
                kargs: img.get(KARGS_VARS[s.index()]).map(str::to_string),
            };
            if adopt::is_adopted(st.name.as_str()) {
                // The system the bootloader ran before the agent: no commit, no directory.
                ds.name = ADOPTED_NAME.into();
                ds.subject = "the system that ran before the agent adopted the environment".into();
                deployments.push(ds);
                continue;
            }
            let Some(c) = Self::commit_of_slot(st)? else {
                continue;
            };
            let info = self.sysroot.repo().read_commit(&c).ok();
            ds.ref_name = match self.origin_ref(st.name.as_str()) {
                Some(r) => Some(r),
                None => self.sysroot.repo().infer_ref(
                    None,
                    &c,
                    crate::repo::RefSearch::HeadThenHistory,
                )?,
            };
            ds.commit = c.to_string();
            if let Some(i) = info {
                ds.version = i.version;
                ds.subject = i.subject;
                ds.timestamp = i.timestamp;
                ds.security_version = i.security_version;
            }
            ds.present = self.deployment_path(st.name.as_str()).is_dir();
            deployments.push(ds);
        }
        let version_of = |s: Slot| {
            deployments
                .iter()
                .find(|d| d.slot == s)
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
                SysrootState::RolledBack,
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
                SysrootState::Trial,
                format!(
                    "the booted deployment ({}) is on trial with {} tries left; run `ecu-agent mark-good` once it works",
                    version_of(b),
                    state.slot(b).tries_left
                ),
            ),
            (Some(b), _) if d.slot != b && d.kind == DecisionKind::Trial => (
                SysrootState::Staged,
                format!(
                    "slot {} ({}) is staged: the next boot tries it ({} tries left)",
                    d.slot,
                    version_of(d.slot),
                    state.slot(d.slot).tries_left
                ),
            ),
            (Some(b), _) if d.slot != b => (
                SysrootState::RollbackPending,
                format!(
                    "the next boot goes to slot {} ({})",
                    d.slot,
                    version_of(d.slot)
                ),
            ),
            (Some(b), _) => (
                SysrootState::Idle,
                format!("booted slot {b} ({}) is good", version_of(b)),
            ),
            (None, _) => (
                if d.kind == DecisionKind::Trial {
                    SysrootState::Staged
                } else {
                    SysrootState::Idle
                },
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
            state: st_name,
            message,
            booted_slot,
            booted_source: booted.map(|b| b.1),
            booted_good: booted_slot.map(|b| state.slot(b).successful),
            next_boot: Some(d.slot),
            next_boot_kind: Some(d.kind),
            rolled_back: st_name == SysrootState::RolledBack,
            deployments,
            refs_followed: self.cfg.refs.clone(),
            security_floor: floor::read(self.sysroot.path())?,
            env: env_info(Some(state.revision)),
        })
    }
}
