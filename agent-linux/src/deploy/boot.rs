//! What happens at and after a boot: `mark-good` (the booted deployment works; the
//! anti-rollback floor follows it), `rollback`, and `simulate-boot` (the bootloader's decision
//! run on the environment, with `S/run/booted` recording the slot taken).

use std::io;
use std::path::{Path, PathBuf};

use bootloader_hooks::{DecisionKind, Slot, SlotName, StateError};

use super::{env, io_err, verify, BootReport, DeployError, Deployer, ADOPTED_NAME};
use crate::floor;
use crate::fsops::{self, Point};
use crate::sysroot::Sysroot;

impl Deployer {
    pub(super) fn write_booted(&self, slot: Slot) -> Result<(), DeployError> {
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
}
