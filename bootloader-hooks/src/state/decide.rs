//! The boot decision ([`BootState::decide`]): a pure function of the state, under the rules of
//! the bootloader that reads it ([`super::BootRules`]).

use super::{BootRules, BootState, Slot, RAUC_UBOOT_REFILL};

/// Why the decision picked its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecisionKind {
    /// The slot is successful: nothing counted, nothing written.
    Confirmed,
    /// The slot is on trial: one try was used (written before the boot).
    Trial,
    /// No slot is bootable: the slot after the highest-priority one is booted as a last resort,
    /// nothing written.
    LastResort,
    /// [`BootRules::RaucUBoot`], no slot has tries: the script refills both counters, saves and
    /// resets; the boot after the reset takes `slot` and counts its try. `state` is what the
    /// environment holds when the kernel starts (the refill is written first).
    Refill,
    /// [`BootRules::RaucGrub`], no slot is bootable: GRUB boots RAUC's rescue entry (neither A
    /// nor B) and clears the try flag of every slot marked OK; `slot` is the slot the boot after
    /// that takes (if any can).
    Rescue,
    /// The slot on trial used its tries and the bootloader's own code switched to the other
    /// slot, writing the switch before booting it (Mender's `altbootcmd` on U-Boot, the
    /// rollback in Mender's GRUB script). [`BootState::decide`] never returns it; the schemes'
    /// [`boot`](crate::Scheme::boot) does.
    Rollback,
}

impl DecisionKind {
    /// The code C callers get (`ecu_boot_decide`, `ecu_agent_simulate_boot`): 0 confirmed,
    /// 1 trial, 2 last resort, 3 refill, 4 rescue, 5 rollback.
    pub const fn code(self) -> u8 {
        match self {
            DecisionKind::Confirmed => 0,
            DecisionKind::Trial => 1,
            DecisionKind::LastResort => 2,
            DecisionKind::Refill => 3,
            DecisionKind::Rescue => 4,
            DecisionKind::Rollback => 5,
        }
    }

    /// `confirmed`, `trial`, `last-resort`, `refill`, `rescue` or `rollback`: the name reports
    /// and scripts use.
    pub const fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Confirmed => "confirmed",
            DecisionKind::Trial => "trial",
            DecisionKind::LastResort => "last-resort",
            DecisionKind::Refill => "refill",
            DecisionKind::Rescue => "rescue",
            DecisionKind::Rollback => "rollback",
        }
    }
}

/// Serialized as its name ([`DecisionKind::as_str`]).
#[cfg(feature = "serde")]
impl serde::Serialize for DecisionKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The outcome of [`BootState::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct Decision {
    /// The slot to boot.
    pub slot: Slot,
    /// Why.
    pub kind: DecisionKind,
    /// The state to store before booting (equal to the input unless `changed`).
    pub state: BootState,
    /// Whether `state` differs from the input, i.e. whether it must be written.
    pub changed: bool,
}

impl BootState {
    /// The boot decision, a pure function.
    ///
    /// Under [`BootRules::Native`]: slots are taken in [`order`](Self::order). The first with
    /// priority above 0 that is successful boots unchanged; the first that is on trial boots
    /// with one try used (the revision is not changed, see [`BootState::revision`]). If neither
    /// qualifies, the second slot in order boots as a last resort and nothing changes. So a
    /// confirmed slot reboots without any write, and a slot that used its tries without being
    /// marked good falls back to the other slot.
    ///
    /// Under RAUC's rules every boot counts: the first slot in order with priority above 0 and
    /// tries left boots with one try used, successful or not ([`DecisionKind::Trial`]). With no
    /// such slot, U-Boot refills ([`DecisionKind::Refill`]) and GRUB boots its rescue entry
    /// ([`DecisionKind::Rescue`]); see [`BootRules`].
    pub fn decide(&self) -> Decision {
        match self.rules {
            BootRules::Native => self.decide_native(),
            BootRules::RaucUBoot { .. } | BootRules::RaucGrub => self.decide_rauc(),
        }
    }

    fn decide_native(&self) -> Decision {
        let order = self.order();
        for s in order {
            let st = self.slot(s);
            if st.priority == 0 {
                continue;
            }
            if st.successful {
                return Decision {
                    slot: s,
                    kind: DecisionKind::Confirmed,
                    state: *self,
                    changed: false,
                };
            }
            if st.tries_left > 0 {
                let mut next = *self;
                next.slot_mut(s).tries_left -= 1;
                return Decision {
                    slot: s,
                    kind: DecisionKind::Trial,
                    state: next,
                    changed: true,
                };
            }
        }
        Decision {
            slot: order[1],
            kind: DecisionKind::LastResort,
            state: *self,
            changed: false,
        }
    }

    /// The first slot in order with priority above 0 and tries left.
    fn first_with_tries(&self) -> Option<Slot> {
        self.order().into_iter().find(|&s| {
            let st = self.slot(s);
            st.priority > 0 && st.tries_left > 0
        })
    }

    fn decide_rauc(&self) -> Decision {
        // uboot.sh lines 6-24 / grub.conf lines 12-29: the first slot of the order with tries
        // left boots and its try is used before the boot.
        let count = |st: &BootState, s: Slot| {
            let mut next = *st;
            let slot = next.slot_mut(s);
            slot.tries_left -= 1;
            slot.successful = false;
            next.normalize();
            next
        };
        if let Some(s) = self.first_with_tries() {
            let next = count(self, s);
            return Decision {
                slot: s,
                kind: DecisionKind::Trial,
                changed: next != *self,
                state: next,
            };
        }
        let mut next = *self;
        if let BootRules::RaucUBoot { .. } = self.rules {
            // uboot.sh lines 28-33: refill both counters, saveenv, reset; the boot after the
            // reset runs lines 6-27 again.
            for slot in &mut next.slots {
                slot.tries_left = RAUC_UBOOT_REFILL;
                slot.successful = false;
            }
            next.normalize();
            let (slot, state) = match next.first_with_tries() {
                Some(s) => (s, count(&next, s)),
                None => (self.order()[1], next),
            };
            return Decision {
                slot,
                kind: DecisionKind::Refill,
                changed: state != *self,
                state,
            };
        }
        // grub.conf lines 31-39: no slot chosen, `default=0` (the rescue entry); every slot with
        // x_OK=1 gets x_TRY=0 (a slot with priority 0 is canonical whatever its flags).
        for s in Slot::ALL {
            if next.slot(s).priority > 0 {
                next.slot_mut(s).tries_left = 1;
            }
        }
        next.normalize();
        let slot = next.first_with_tries().unwrap_or(self.order()[1]);
        Decision {
            slot,
            kind: DecisionKind::Rescue,
            changed: next != *self,
            state: next,
        }
    }
}
