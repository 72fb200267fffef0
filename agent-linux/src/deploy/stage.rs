//! Putting a commit into a slot: `install` (apply an update, then stage), `deploy` (stage a
//! commit of the repository), the first provisioning of a sysroot, the adoption of the
//! bootloader's own environment, and the checkout and removal of deployment directories.
//! Every write of what boots comes after the deployment it names is complete on disk.

use std::io::Read;

use agent_core::object::ObjectId;
use bootloader_hooks::{BootState, Slot, SlotName};

use super::{
    adopt, board_env, deployment_name, env, io_err, BootedSource, DeployError, Deployer,
    EnvContent, InstallOptions, StageAction, StageReport, ADOPTED_NAME, ORIGIN_SUFFIX,
    PROVISIONING_MARKER,
};
use crate::apply;
use crate::bootcfg::{self, BootConfig, KARGS_VARS};
use crate::checkout::{self, CheckoutError, CheckoutMode};
use crate::floor;
use crate::fsops::{self, Point};
use crate::repo::CommitInfo;

impl Deployer {
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
    pub(super) fn adoptable(&self, state: &BootState) -> Result<bool, DeployError> {
        Ok(adopt::unowned(state)
            && (!self.has_deployment_dirs()? || self.interrupted_provisioning()?))
    }

    /// The booted slot of an environment being adopted: what the running system says
    /// (`--booted-slot`, [`BOOTED_SLOT_VAR`], the kernel command line; never the run file),
    /// which the bootloader's own variables must allow ([`adopt::bootloader_allows`]). With
    /// `staging`, also refused when the bootloader has that slot on trial and the other one is
    /// its good fallback (a new deployment would replace it).
    pub(super) fn adoption_slot(
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
        let (name, stats, hardlinked) = self.first_deployment(info, ref_name)?;
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
            slot: y,
            action: StageAction::Staged,
            tries: self.tries,
            replaced: None,
            adopted: Some(x),
            checkout: Some(stats),
            hardlinked,
        })
    }

    /// Stages a commit that is in the repository (a ref, an id or a unique prefix).
    pub fn deploy(&self, rev: &str) -> Result<StageReport, DeployError> {
        let _lock = self.lock()?;
        let repo = self.sysroot.repo();
        let commit = repo.resolve(rev)?;
        let ref_name = repo.infer_ref(Some(rev), &commit, crate::repo::RefSearch::Head)?;
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
                    slot: s,
                    action: StageAction::Unchanged,
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
            slot: y,
            action: StageAction::Staged,
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
        let (name, stats, hardlinked) = self.first_deployment(info, ref_name)?;
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
            slot,
            action: StageAction::Provisioned,
            tries: 0,
            replaced: None,
            adopted: None,
            checkout: Some(stats),
            hardlinked,
        })
    }

    /// The first deployment of a provisioning or an adoption, before any boot state names it:
    /// `S/deploy` emptied of what no slot names, the provisioning marker naming the deployment
    /// planned, the checkout, then `agent.conf`. Returns what [`Deployer::create_deployment`]
    /// returns.
    fn first_deployment(
        &self,
        info: &CommitInfo,
        ref_name: Option<&str>,
    ) -> Result<(String, checkout::CheckoutStats, bool), DeployError> {
        self.remove_unnamed(&BootState::default())?;
        let dir = self.deploy_dir();
        fsops::mkdir_all(&dir, 0o755).map_err(io_err("create", &dir))?;
        let marker = dir.join(PROVISIONING_MARKER);
        let planned = deployment_name(&info.id, 0);
        fsops::write_atomic(&marker, format!("{planned}\n").as_bytes(), 0o644)
            .map_err(io_err("write", &marker))?;
        let created =
            self.create_deployment(&info.id, &[SlotName::EMPTY, SlotName::EMPTY], ref_name)?;
        self.record_config(ref_name)?;
        Ok(created)
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
    pub(super) fn remove_unnamed(&self, state: &BootState) -> Result<Vec<String>, DeployError> {
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

    pub(super) fn remove_provisioning_marker(&self) -> Result<(), DeployError> {
        let dir = self.deploy_dir();
        let marker = dir.join(PROVISIONING_MARKER);
        if fsops::remove_file_if_exists(&marker).map_err(io_err("remove", &marker))? {
            fsops::fsync_dir(&dir).map_err(io_err("fsync", &dir))?;
        }
        Ok(())
    }
}
