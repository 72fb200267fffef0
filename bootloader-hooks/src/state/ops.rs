//! The operations the agent runs on the boot state ([`BootState::stage`],
//! [`BootState::mark_good`], [`BootState::rollback`], [`BootState::retire`],
//! [`BootState::apply`]) and the normal form the rules' encodings read back.

use super::{Applied, BootRules, BootState, Operation, Slot, SlotName, StateError, MAX_TRIES};

impl BootState {
    /// Brings the slots into the one form the rules' encoding reads back (nothing under
    /// [`BootRules::Native`]). [`BootRules::RaucUBoot`]: a successful slot holds at least
    /// `full` tries (`rauc status mark-good` refills the counter), and a slot is successful
    /// exactly when it has priority above 0 and at least `full` tries (RAUC cannot tell a
    /// refilled counter from a fresh one). [`BootRules::RaucGrub`]: a slot with priority 0
    /// has no tries and is not successful (GRUB never boots it, whatever its flags); any
    /// other holds one try when successful or on trial and is successful exactly when it has
    /// it (`x_OK=1 x_TRY=0`).
    pub fn normalize(&mut self) {
        match self.rules {
            BootRules::Native => {}
            BootRules::RaucUBoot { full } => {
                let full = full.max(1);
                for st in &mut self.slots {
                    if st.successful && st.tries_left < full {
                        st.tries_left = full;
                    }
                    st.successful = st.priority > 0 && st.tries_left >= full;
                }
            }
            BootRules::RaucGrub => {
                for st in &mut self.slots {
                    if st.priority == 0 {
                        st.tries_left = 0;
                        st.successful = false;
                    } else {
                        st.tries_left = u8::from(st.successful || st.tries_left > 0);
                        st.successful = st.tries_left == 1;
                    }
                }
            }
        }
    }

    /// Gives `s` priority 2 and the other slot priority 1 (or 0 if it had 0), unless `s` is
    /// already strictly first.
    fn promote(&mut self, s: Slot) {
        let other = self.slot(s.other()).priority;
        if self.slot(s).priority > other {
            return;
        }
        self.slot_mut(s).priority = 2;
        self.slot_mut(s.other()).priority = if other > 0 { 1 } else { 0 };
    }

    /// Stages `slot` for trial: it becomes first in order, holds `name`, is not successful and
    /// has `tries` boots to be marked good. Returns whether anything changed (false only when
    /// `slot` was already staged exactly so). `tries` must be 1..=[`MAX_TRIES`]. Under RAUC's
    /// [rules](BootRules) the result is [normalized](Self::normalize): on U-Boot at most `full`
    /// tries, and a slot staged with `full` tries reads as good until its first boot (as
    /// `rauc status` reports it); on GRUB one try, good until its first boot.
    pub fn stage(&mut self, slot: Slot, tries: u8, name: SlotName) -> Result<bool, StateError> {
        self.stage_versioned(slot, tries, name, 0)
    }

    /// [`stage`](Self::stage), recording `security_version` as what the slot holds; marking
    /// the slot good later raises the [floor](BootState::floor) to it.
    pub fn stage_versioned(
        &mut self,
        slot: Slot,
        tries: u8,
        name: SlotName,
        security_version: u64,
    ) -> Result<bool, StateError> {
        if tries == 0 || tries > MAX_TRIES {
            return Err(StateError::TriesOutOfRange { tries });
        }
        let before = *self;
        // RAUC's U-Boot counter cannot hold more tries than a refilled, good slot has without
        // reading as good (`rauc install` gives the new slot `boot-attempts` tries too).
        let tries = match self.rules {
            BootRules::RaucUBoot { full } => tries.min(full.max(1)),
            _ => tries,
        };
        {
            let st = self.slot_mut(slot);
            st.tries_left = tries;
            st.successful = false;
            st.name = name;
            st.security_version = security_version;
        }
        self.slot_mut(slot).priority = 0; // force promote to reorder
        self.promote(slot);
        self.normalize();
        Ok(self.bump_if_changed(&before))
    }

    /// Marks `slot` (the booted one) good: successful, no tries counted, first in order, and
    /// the [floor](BootState::floor) raised to its security version (never lowered).
    /// Returns whether anything changed; an already-good first slot changes nothing, so the
    /// caller writes nothing. Under RAUC's [rules](BootRules) this is what `rauc status
    /// mark-good` writes (the U-Boot counter refilled to `full`, GRUB's `x_OK=1 x_TRY=0`), and
    /// the slot is also put first in the order when it is not.
    pub fn mark_good(&mut self, slot: Slot) -> bool {
        let before = *self;
        {
            let st = self.slot_mut(slot);
            st.successful = true;
            st.tries_left = 0;
        }
        self.floor = self.floor.max(self.slot(slot).security_version);
        self.promote(slot);
        self.normalize();
        self.bump_if_changed(&before)
    }

    /// Rolls back from `abandon`: it gets priority 0, no tries and no success flag, so the
    /// other slot boots next (its priority is raised to 1 if it was 0). Fails if the other
    /// slot could not boot (neither successful nor with tries left). Returns whether anything
    /// changed.
    pub fn rollback(&mut self, abandon: Slot) -> Result<bool, StateError> {
        let other = *self.slot(abandon.other());
        if !other.successful && other.tries_left == 0 {
            return Err(StateError::NoFallback { abandon });
        }
        let before = *self;
        {
            let st = self.slot_mut(abandon);
            st.priority = 0;
            st.tries_left = 0;
            st.successful = false;
        }
        if self.slot(abandon.other()).priority == 0 {
            self.slot_mut(abandon.other()).priority = 1;
        }
        self.normalize();
        Ok(self.bump_if_changed(&before))
    }

    /// Takes `target` out of the boot order before its slot is erased or overwritten (an
    /// install into it): nothing when it is out already ([`SlotState::is_retired`](super::SlotState::is_retired)), else
    /// [`BootState::rollback`]`(target)`, refused ([`StateError::NoFallback`]) when the other
    /// slot could not boot again, since erasing `target` would then leave nothing bootable.
    /// Returns whether anything changed.
    pub fn retire(&mut self, target: Slot) -> Result<bool, StateError> {
        if self.slot(target).is_retired() {
            return Ok(false);
        }
        self.rollback(target)
    }

    /// Applies `op`. Returns whether the state changed and, for [`Operation::Boot`], the
    /// decision.
    pub fn apply(&mut self, op: &Operation) -> Result<Applied, StateError> {
        let (changed, decision) = match *op {
            Operation::Stage { slot, tries, name } => (self.stage(slot, tries, name)?, None),
            Operation::MarkGood { slot } => (self.mark_good(slot), None),
            Operation::Rollback { abandon } => (self.rollback(abandon)?, None),
            Operation::Boot => {
                let d = self.decide();
                *self = d.state;
                (d.changed, Some(d))
            }
        };
        Ok(Applied { changed, decision })
    }

    fn bump_if_changed(&mut self, before: &BootState) -> bool {
        if self == before {
            false
        } else {
            self.revision = before.revision.wrapping_add(1);
            true
        }
    }
}
