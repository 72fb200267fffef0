//! The boot-state model, the pure boot decision and the operations the agent runs.
//!
//! Two slots, A and B. Each has a priority (0 = never boot it), a number of tries left, a
//! success flag and the name of what it holds. The whole state carries a revision that every
//! change increments (wrapping). See `docs/BOOTSTATE.md` for the rules in prose.

use core::fmt;
mod decide;
mod name;
mod ops;

pub use decide::{Decision, DecisionKind};
pub use name::SlotName;

/// Longest slot name (a commit id in hex is 64 characters; an OSTree deployment name
/// `<osname>/<checksum>.<serial>` is well under 128). Costs 128 bytes per slot.
pub const MAX_NAME_LEN: usize = 128;

/// Most tries a slot can be staged with. Single decimal digits read the same in hex (U-Boot's
/// `setexpr`/`itest`) and decimal (GRUB's `test`), and GRUB steps the counter down with an
/// if/elif chain of this length.
pub const MAX_TRIES: u8 = 9;

/// Highest priority a scheme may hold (single digit for the same reason as [`MAX_TRIES`]).
/// Operations only ever write 0, 1 and 2.
pub const MAX_PRIORITY: u8 = 9;

/// One of the two slots. With feature `serde`, serialized as `"A"` or `"B"` ([`Slot::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Slot {
    /// Slot A (index 0).
    A,
    /// Slot B (index 1).
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// 0 for A, 1 for B.
    pub const fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    /// The slot with index `i` (0 or 1).
    pub const fn from_index(i: usize) -> Option<Slot> {
        match i {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            _ => None,
        }
    }

    /// The other slot.
    pub const fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `"A"` or `"B"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// Parses `"A"`/`"B"` (also lowercase).
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the model's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StateError {
    /// A slot name is longer than [`MAX_NAME_LEN`].
    NameTooLong {
        /// Length given.
        len: usize,
    },
    /// A slot name holds a byte outside the allowed set.
    InvalidNameByte {
        /// Offset of the byte in the name.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// `stage` was asked for 0 tries or more than [`MAX_TRIES`].
    TriesOutOfRange {
        /// Tries asked for.
        tries: u8,
    },
    /// `rollback` of a slot whose other slot cannot boot (neither successful nor with tries).
    NoFallback {
        /// The slot that was to be abandoned.
        abandon: Slot,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StateError::NameTooLong { len } => write!(
                f,
                "slot name is {len} bytes long; at most {MAX_NAME_LEN} fit, use a shorter commit id or deployment name"
            ),
            StateError::InvalidNameByte { offset, byte } => write!(
                f,
                "slot name byte {offset} is 0x{byte:02x}; only ASCII letters, digits and ._-:/+@,~ are allowed"
            ),
            StateError::TriesOutOfRange { tries } => write!(
                f,
                "{tries} tries asked for; stage a slot with 1 to {MAX_TRIES} tries"
            ),
            StateError::NoFallback { abandon } => write!(
                f,
                "cannot roll back from slot {abandon}: slot {} was never marked good and has no tries left",
                abandon.other()
            ),
        }
    }
}

impl core::error::Error for StateError {}

/// One slot's boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotState {
    /// Higher boots first; 0 never boots (except as the last resort, see [`BootState::decide`]).
    pub priority: u8,
    /// Boots left while the slot is on trial (not successful).
    pub tries_left: u8,
    /// The slot booted and the system reported success (`mark-good`).
    pub successful: bool,
    /// What the slot holds.
    pub name: SlotName,
    /// The security version of what the slot holds, recorded when it is staged
    /// ([`BootState::stage_versioned`]); 0 when unknown. Only the flash record stores it (the
    /// environment schemes read it as 0; the Linux side keeps its floor in the sysroot).
    pub security_version: u64,
}

impl SlotState {
    /// Whether the decision may pick this slot: priority above 0 and either successful or with
    /// tries left.
    pub fn is_bootable(&self) -> bool {
        self.priority > 0 && (self.successful || self.tries_left > 0)
    }

    /// Whether the slot is on trial: not successful and still has tries.
    pub fn on_trial(&self) -> bool {
        !self.successful && self.tries_left > 0
    }

    /// Whether the slot is out of the boot order, as [`BootState::rollback`] leaves it:
    /// priority 0, not successful, no tries left.
    pub fn is_retired(&self) -> bool {
        self.priority == 0 && !self.successful && self.tries_left == 0
    }
}

/// Tries RAUC's `contrib/uboot.sh` gives every slot when none has tries left (its lines 29-31:
/// `setenv BOOT_A_LEFT 3`, `setenv BOOT_B_LEFT 3`).
pub const RAUC_UBOOT_REFILL: u8 = 3;

/// Which bootloader logic reads the state: ours, or a foreign script whose rules differ. Set by
/// the scheme that decoded the state ([`crate::Scheme::decode`]); [`BootState::decide`] and the
/// operations follow it. Everything but RAUC's scripts (our U-Boot script and GRUB snippet, the
/// C and flash-record bootloaders, Mender) uses [`BootRules::Native`]. See `docs/BOOTSTATE.md`
/// §2 and §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BootRules {
    /// A successful slot boots without counting; with no bootable slot the second slot in order
    /// boots and nothing is written.
    #[default]
    Native,
    /// RAUC's `contrib/uboot.sh`: every boot counts (also of a good slot); a slot is good when
    /// it is in `BOOT_ORDER` with at least `full` tries (what `rauc status mark-good` refills);
    /// with no slot left the script refills both counters to [`RAUC_UBOOT_REFILL`], saves and
    /// resets.
    RaucUBoot {
        /// The counter `rauc status mark-good` writes (RAUC's `boot-attempts`, at least 1).
        full: u8,
    },
    /// RAUC's `contrib/grub.conf`: one try per slot (`x_OK=1 x_TRY=0`), every boot sets the
    /// booted slot's `x_TRY=1`; a slot is good while it is untried; with no slot left GRUB boots
    /// the rescue entry and clears the try flag of every slot marked OK.
    RaucGrub,
}

/// The whole boot state: both slots and a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BootState {
    /// Slot A (index 0) and B (index 1).
    pub slots: [SlotState; 2],
    /// Incremented (wrapping) by every operation that changes the state (`stage`,
    /// `mark_good`, `rollback`) and by every write of a flash record copy. The bootloader's
    /// try counting ([`BootState::decide`]) leaves it alone, so the U-Boot script and the
    /// GRUB snippet (which has no arithmetic) store exactly the state `decide` returns.
    pub revision: u32,
    /// The anti-rollback floor: nothing with a lower security version may be installed. Only
    /// [`BootState::mark_good`] changes it, raising it to the marked slot's
    /// [`SlotState::security_version`]; nothing lowers it. Only the flash record stores it.
    pub floor: u64,
    /// The rules of the bootloader that reads the state (not stored: the scheme sets them
    /// when it decodes).
    pub rules: BootRules,
}

impl BootState {
    /// A fresh state for a system running `booted`: that slot successful with priority 2 and
    /// `name`, the other slot empty with priority 0. Revision 0.
    pub fn initial(booted: Slot, name: SlotName) -> BootState {
        let mut s = BootState::default();
        *s.slot_mut(booted) = SlotState {
            priority: 2,
            tries_left: 0,
            successful: true,
            name,
            security_version: 0,
        };
        s
    }

    /// The state of slot `s`.
    pub fn slot(&self, s: Slot) -> &SlotState {
        &self.slots[s.index()]
    }

    /// The state of slot `s`, mutably.
    pub fn slot_mut(&mut self, s: Slot) -> &mut SlotState {
        &mut self.slots[s.index()]
    }

    /// Slots in the order the decision considers them: higher priority first, A on a tie.
    pub fn order(&self) -> [Slot; 2] {
        if self.slots[1].priority > self.slots[0].priority {
            [Slot::B, Slot::A]
        } else {
            [Slot::A, Slot::B]
        }
    }
}

/// A state change the agent (or a simulated bootloader) makes; see [`BootState::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Operation {
    /// [`BootState::stage`].
    Stage {
        /// Slot to try.
        slot: Slot,
        /// Boots it gets to be marked good.
        tries: u8,
        /// What it holds.
        name: SlotName,
    },
    /// [`BootState::mark_good`].
    MarkGood {
        /// The booted slot.
        slot: Slot,
    },
    /// [`BootState::rollback`].
    Rollback {
        /// The slot to give up.
        abandon: Slot,
    },
    /// One boot as the bootloader runs it: [`BootState::decide`], then store its state.
    Boot,
}

/// What [`BootState::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Applied {
    /// Whether the state changed (and so must be stored).
    pub changed: bool,
    /// The decision, for [`Operation::Boot`].
    pub decision: Option<Decision>,
}

#[cfg(test)]
mod test {
    use super::*;

    fn name(s: &str) -> SlotName {
        SlotName::from_str(s).unwrap()
    }

    #[test]
    fn confirmed_reboot_writes_nothing() {
        let s = BootState::initial(Slot::A, name("c0"));
        let d = s.decide();
        assert_eq!(d.slot, Slot::A);
        assert_eq!(d.kind, DecisionKind::Confirmed);
        assert!(!d.changed);
        assert_eq!(d.state, s);
    }

    #[test]
    fn staged_slot_tried_then_rolled_back() {
        let mut s = BootState::initial(Slot::A, name("c0"));
        assert!(s.stage(Slot::B, 3, name("c1")).unwrap());
        assert_eq!(s.revision, 1);
        let d = s.decide();
        assert_eq!(d.state.revision, 1, "counting a try keeps the revision");
        for left in [2u8, 1, 0] {
            let d = s.decide();
            assert_eq!(
                (d.slot, d.kind, d.changed),
                (Slot::B, DecisionKind::Trial, true)
            );
            s = d.state;
            assert_eq!(s.slot(Slot::B).tries_left, left);
        }
        let rev = s.revision;
        for _ in 0..3 {
            let d = s.decide();
            assert_eq!(
                (d.slot, d.kind, d.changed),
                (Slot::A, DecisionKind::Confirmed, false)
            );
        }
        assert_eq!(s.revision, rev);
        assert!(s.rollback(Slot::B).unwrap());
        assert_eq!(s.slot(Slot::B).priority, 0);
        assert_eq!(s.decide().slot, Slot::A);
    }

    #[test]
    fn staged_slot_marked_good_stays() {
        let mut s = BootState::initial(Slot::A, name("c0"));
        s.stage(Slot::B, 2, name("c1")).unwrap();
        s = s.decide().state;
        assert!(s.mark_good(Slot::B));
        assert!(!s.mark_good(Slot::B), "second mark-good changes nothing");
        for _ in 0..5 {
            let d = s.decide();
            assert_eq!((d.slot, d.changed), (Slot::B, false));
        }
        assert_eq!(s.slot(Slot::A).priority, 1);
        assert_eq!(s.slot(Slot::B).name.as_str(), "c1");
    }

    #[test]
    fn floor_rises_at_mark_good_only_and_never_falls() {
        let mut s = BootState::initial(Slot::A, name("c0"));
        s.stage_versioned(Slot::B, 2, name("c1"), 7).unwrap();
        assert_eq!((s.floor, s.slot(Slot::B).security_version), (0, 7));
        s = s.decide().state;
        assert_eq!(s.floor, 0, "booting a staged slot keeps the floor");
        assert!(s.mark_good(Slot::B));
        assert_eq!(s.floor, 7);
        s.stage_versioned(Slot::A, 2, name("c2"), 3).unwrap();
        s.rollback(Slot::A).unwrap();
        assert_eq!(s.floor, 7, "staging and rollback keep the floor");
        s.stage_versioned(Slot::A, 2, name("c2"), 3).unwrap();
        assert!(s.mark_good(Slot::A));
        assert_eq!(
            s.floor, 7,
            "marking a lower version good does not lower the floor"
        );
    }

    #[test]
    fn last_resort_is_second_in_order() {
        let mut s = BootState::default();
        s.slots[0].priority = 1;
        s.slots[1].priority = 2;
        let d = s.decide();
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::A, DecisionKind::LastResort, false)
        );
        let d = BootState::default().decide();
        assert_eq!(d.slot, Slot::B);
    }

    #[test]
    fn stage_rejects_bad_tries_and_rollback_without_fallback() {
        let mut s = BootState::initial(Slot::A, SlotName::EMPTY);
        assert_eq!(
            s.stage(Slot::B, 0, SlotName::EMPTY),
            Err(StateError::TriesOutOfRange { tries: 0 })
        );
        assert_eq!(
            s.stage(Slot::B, MAX_TRIES + 1, SlotName::EMPTY),
            Err(StateError::TriesOutOfRange {
                tries: MAX_TRIES + 1
            })
        );
        assert_eq!(
            s.rollback(Slot::A),
            Err(StateError::NoFallback { abandon: Slot::A })
        );
        assert_eq!(s, BootState::initial(Slot::A, SlotName::EMPTY));
    }

    #[test]
    fn retire_takes_a_slot_out_of_the_order_once_and_never_the_last_bootable_one() {
        // A slot out of the order already: nothing to do, even when the other slot could not
        // boot again (where a rollback is refused).
        let mut s = BootState::initial(Slot::A, name("a"));
        s.slot_mut(Slot::A).successful = false;
        assert!(s.slot(Slot::B).is_retired());
        let before = s;
        assert_eq!(s.retire(Slot::B), Ok(false));
        assert_eq!(s, before);
        assert_eq!(
            s.rollback(Slot::B),
            Err(StateError::NoFallback { abandon: Slot::B })
        );
        // A slot in the order: what a rollback does.
        let mut s = BootState::initial(Slot::A, name("a"));
        s.stage(Slot::B, 3, name("b")).unwrap();
        let mut rolled = s;
        assert_eq!(rolled.rollback(Slot::B), Ok(true));
        assert_eq!(s.retire(Slot::B), Ok(true));
        assert_eq!(s, rolled);
        assert!(s.slot(Slot::B).is_retired());
        assert_eq!(s.decide().slot, Slot::A);
        // The slot that boots, while the other could not: refused, nothing changed.
        let mut s = BootState::initial(Slot::A, name("a"));
        let before = s;
        assert_eq!(
            s.retire(Slot::A),
            Err(StateError::NoFallback { abandon: Slot::A })
        );
        assert_eq!(s, before);
    }

    #[test]
    fn names_are_validated() {
        assert!(SlotName::from_str(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            SlotName::from_str(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(StateError::NameTooLong {
                len: MAX_NAME_LEN + 1
            })
        );
        assert_eq!(
            SlotName::from_str("ab c"),
            Err(StateError::InvalidNameByte {
                offset: 2,
                byte: b' '
            })
        );
        assert_eq!(name("os/abc.0").as_str(), "os/abc.0");
    }
}
