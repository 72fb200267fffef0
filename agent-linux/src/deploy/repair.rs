//! `repair-env`: rebuilding a lost, invalid or disagreeing boot environment from what is on
//! disk and what the running system says, refusing whenever it cannot tell.

use bootloader_hooks::{BootState, Slot, SlotName};

use super::{
    adopt, board_env, env, is_deployment_name, list_or_none, parse_deployment_name, BootEnvError,
    BootedFrom, BootedSource, DeployError, Deployer, EnvContent, EnvFound, RepairAction,
    RepairReport, BOOTED_SLOT_VAR,
};
use crate::bootcfg::KARGS_VARS;
use crate::fsops::{self, Point};

impl Deployer {
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
                        EnvFound::Invalid
                    } else {
                        EnvFound::Disagrees
                    }
                } else {
                    EnvFound::Ok
                };
                (Some(img), found, Some(*st))
            }
            Ok(EnvContent::NoBootState(img)) => (Some(img), EnvFound::NoBootState, None),
            Ok(EnvContent::Missing) => (None, EnvFound::Lost, None),
            // A CRC-bad or undecodable environment is lost; an I/O error is not ours to paper
            // over.
            Err(BootEnvError::Uboot { .. } | BootEnvError::Grub { .. })
            | Err(BootEnvError::Scheme(_)) => (None, EnvFound::Lost, None),
            Err(e) => return Err(e.into()),
        };
        // A lost U-Boot environment is rebuilt from the board's default one (or refused).
        let img = match img {
            Some(i) => Some(i),
            None => board_env::base_for_blank(&self.cfg, self.sysroot.path())?,
        };
        if let (Some(o), EnvFound::Ok) = (&old, found) {
            // The environment agrees with what runs: nothing to repair.
            let name = o.slot(b).name.as_str().to_string();
            let other = o.slot(b.other()).name;
            return Ok(RepairReport {
                action: RepairAction::Unchanged,
                found,
                booted_slot: b,
                booted_source: source,
                booted: name,
                booted_from: BootedFrom::Environment,
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
            Some(k) if on_disk.contains(k) => (k.clone(), BootedFrom::KernelCommandLine),
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
            None if on_disk.len() == 1 => (on_disk[0].clone(), BootedFrom::OnlyDeployment),
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
            RepairAction::WouldRepair
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
            RepairAction::Repaired
        };
        Ok(RepairReport {
            action,
            found,
            booted_slot: b,
            booted_source: source,
            booted,
            booted_from,
            fallback,
            state: env::Report::new(self.cfg.scheme, env::flavor(&self.cfg), &state, None),
        })
    }
}
