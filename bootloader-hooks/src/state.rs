//! The boot-state model, the pure boot decision and the operations the agent runs.
//!
//! Two slots, A and B. Each has a priority (0 = never boot it), a number of tries left, a
//! success flag and the name of what it holds. The whole state carries a revision that every
//! change increments (wrapping). See `docs/BOOTSTATE.md` for the rules in prose.

use core::fmt;

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

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// What a slot holds: a commit id or deployment name, at most [`MAX_NAME_LEN`] bytes of
/// ASCII letters, digits and `._-:/+@,~`. Empty means "nothing recorded".
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl SlotName {
    /// The empty name.
    pub const EMPTY: SlotName = SlotName {
        len: 0,
        bytes: [0; MAX_NAME_LEN],
    };

    /// Whether `b` may appear in a slot name.
    pub const fn is_allowed_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'.' | b'_' | b'-' | b':' | b'/' | b'+' | b'@' | b',' | b'~'
            )
    }

    /// Validates and copies `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<SlotName, StateError> {
        if bytes.len() > MAX_NAME_LEN {
            return Err(StateError::NameTooLong { len: bytes.len() });
        }
        let mut name = SlotName::EMPTY;
        for (offset, &byte) in bytes.iter().enumerate() {
            if !Self::is_allowed_byte(byte) {
                return Err(StateError::InvalidNameByte { offset, byte });
            }
            name.bytes[offset] = byte;
        }
        name.len = bytes.len() as u8;
        Ok(name)
    }

    /// Validates and copies `s`.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Result<SlotName, StateError> {
        Self::from_bytes(s.as_bytes())
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name as text (always ASCII).
    pub fn as_str(&self) -> &str {
        // Only allowed (ASCII) bytes are ever stored, so this never fails.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for SlotName {
    fn default() -> Self {
        SlotName::EMPTY
    }
}

impl fmt::Debug for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SlotName {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=str}", self.as_str())
    }
}

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
    /// install into it): nothing when it is out already ([`SlotState::is_retired`]), else
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
