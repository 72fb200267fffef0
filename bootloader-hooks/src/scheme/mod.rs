//! Which environment variables hold the boot state.
//!
//! - [`Scheme::Native`]: our variables `ECU_A_PRIO`, `ECU_A_TRIES`, `ECU_A_OK`, `ECU_A_NAME`,
//!   the same for B, and `ECU_REV`; read and written by our U-Boot script and GRUB snippet.
//! - [`Scheme::Rauc`]: RAUC's U-Boot (`BOOT_ORDER`, `BOOT_A_LEFT`, `BOOT_B_LEFT`) and GRUB
//!   (`ORDER`, `A_OK`, `A_TRY`, `B_OK`, `B_TRY`) variables.
//! - [`Scheme::Mender`]: `mender_boot_part`, `mender_boot_part_hex`, `upgrade_available`,
//!   `bootcount`, `bootlimit`.
//!
//! Every scheme also keeps `ECU_A_NAME`, `ECU_B_NAME` and `ECU_REV` (the bootloaders of RAUC and
//! Mender ignore them). The mappings, including what each foreign scheme cannot express, are in
//! `docs/BOOTSTATE.md`.
//!
//! [`Scheme::boot`] is what the scheme's own bootloader code does at one boot, on the
//! variables: the slot, why, and the variables it stores. The agent's predictions
//! (`simulate-boot`, `bootenv show`, `status`) come from it.

use crate::state::{BootRules, BootState, Decision, DecisionKind, Slot, MAX_PRIORITY, MAX_TRIES};
use crate::vars::{EnvRead, Value, VarSet};
mod error;
mod parse;

pub use error::SchemeError;
use parse::*;

/// Which bootloader reads the environment (RAUC uses different variables for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Flavor {
    /// A U-Boot environment.
    UBoot,
    /// A GRUB environment block.
    Grub,
}

impl Flavor {
    /// `uboot` or `grub`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Flavor::UBoot => "uboot",
            Flavor::Grub => "grub",
        }
    }
}

/// Options of the RAUC scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RaucConfig {
    /// RAUC's `boot-attempts` (default 3): what `rauc status mark-good` writes into
    /// `BOOT_x_LEFT`. On U-Boot a slot in `BOOT_ORDER` with at least this many tries reads as
    /// good ([`BootRules::RaucUBoot`]); 0 counts as 1.
    pub max_tries: u8,
}

impl Default for RaucConfig {
    fn default() -> Self {
        RaucConfig { max_tries: 3 }
    }
}

/// Options of the Mender scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MenderConfig {
    /// `mender_boot_part` of slot A (default 2).
    pub part_a: u8,
    /// `mender_boot_part` of slot B (default 3).
    pub part_b: u8,
}

impl Default for MenderConfig {
    fn default() -> Self {
        MenderConfig {
            part_a: 2,
            part_b: 3,
        }
    }
}

/// A variable mapping between an environment and [`BootState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// Our `ECU_*` variables.
    Native,
    /// RAUC's variables.
    Rauc(RaucConfig),
    /// Mender's variables.
    Mender(MenderConfig),
}

/// Native variable names, indexed by slot.
pub mod native {
    /// `ECU_A_PRIO`, `ECU_B_PRIO`: priority, one hex digit 0-9.
    pub const PRIO: [&str; 2] = ["ECU_A_PRIO", "ECU_B_PRIO"];
    /// `ECU_A_TRIES`, `ECU_B_TRIES`: tries left, one hex digit 0-9.
    pub const TRIES: [&str; 2] = ["ECU_A_TRIES", "ECU_B_TRIES"];
    /// `ECU_A_OK`, `ECU_B_OK`: success flag, `0` or `1`.
    pub const OK: [&str; 2] = ["ECU_A_OK", "ECU_B_OK"];
    /// `ECU_A_NAME`, `ECU_B_NAME`: what the slot holds (absent = nothing recorded).
    pub const NAME: [&str; 2] = ["ECU_A_NAME", "ECU_B_NAME"];
    /// `ECU_REV`: revision, hex.
    pub const REV: &str = "ECU_REV";
}

/// RAUC variable names.
pub mod rauc {
    /// U-Boot: `"A B"`, `"B A"`, `"A"`, `"B"` or empty.
    pub const BOOT_ORDER: &str = "BOOT_ORDER";
    /// U-Boot: tries left. RAUC's `contrib/uboot.sh` tests it with `test -gt` (U-Boot's
    /// `simple_strtol`, base 0: decimal unless `0x`/`0` prefixed) and counts it down with
    /// `setexpr` (hex in, hex out); see `docs/BOOTSTATE.md` §4.2.
    pub const BOOT_LEFT: [&str; 2] = ["BOOT_A_LEFT", "BOOT_B_LEFT"];
    /// GRUB: slot order.
    pub const ORDER: &str = "ORDER";
    /// GRUB: slot is good, `0`/`1`.
    pub const OK: [&str; 2] = ["A_OK", "B_OK"];
    /// GRUB: a boot attempt is in progress, `0`/`1`.
    pub const TRY: [&str; 2] = ["A_TRY", "B_TRY"];
}

/// Mender variable names.
pub mod mender {
    /// Partition number of the active slot, decimal.
    pub const BOOT_PART: &str = "mender_boot_part";
    /// The same in hex.
    pub const BOOT_PART_HEX: &str = "mender_boot_part_hex";
    /// `1` while the active slot is on trial (U-Boot: any decimal number but 0; GRUB: exactly
    /// `1`).
    pub const UPGRADE_AVAILABLE: &str = "upgrade_available";
    /// Boots counted during the trial, decimal: U-Boot's `bootcount_env.c` reads it with
    /// `env_get_ulong(.., 10, ..)` and writes it with `env_set_ulong` (decimal); Mender's GRUB
    /// script holds `0` or `1`.
    pub const BOOTCOUNT: &str = "bootcount";
    /// Boots allowed, decimal (U-Boot reads it with base 10; 0 or absent: no limit). Mender's
    /// GRUB script ignores it.
    pub const BOOTLIMIT: &str = "bootlimit";
    /// Set to `1` by meta-mender's `mender_setup` the first time it saves the environment.
    pub const SAVEENV_CANARY: &str = "mender_saveenv_canary";
    /// Saved by Mender's GRUB script with the three boot variables (unless GRUB enforces
    /// signatures).
    pub const MACHINE_ID: &str = "mender_systemd_machine_id";
    /// meta-mender's setup command, run by `bootcmd` at every boot (it saves the environment
    /// once, for the canary).
    pub const SETUP: &str = "mender_setup";
    /// Ours (Mender's code ignores it): the slot the agent last wrote as the inactive one and
    /// its state, `A:good`, `A:failed` or `A:off` (likewise for B). Mender keeps nothing about
    /// the inactive partition; this says whether it holds a good system to roll back to, and
    /// when it names the slot that is now active, the bootloader switched (rolled back) since.
    pub const INACTIVE: &str = "ECU_INACTIVE";
}

impl MenderConfig {
    /// The partition number of `slot`.
    pub const fn part(&self, slot: Slot) -> u8 {
        match slot {
            Slot::A => self.part_a,
            Slot::B => self.part_b,
        }
    }
}
/// An environment with updates stored on top: what it reads after they are written.
pub struct Updated<'a, E: EnvRead + ?Sized> {
    /// The environment as it was.
    pub env: &'a E,
    /// The updates (a deleted variable reads as absent).
    pub updates: &'a VarSet<'static>,
}

impl<E: EnvRead + ?Sized> EnvRead for Updated<'_, E> {
    fn get_raw(&self, key: &str) -> Option<&[u8]> {
        match self.updates.lookup(key.as_bytes()) {
            Some(v) => v,
            None => self.env.get_raw(key),
        }
    }
}

/// One boot as the scheme's own bootloader code runs it ([`Scheme::boot`]).
#[derive(Clone, Debug)]
#[must_use]
pub struct SchemeBoot {
    /// The slot booted and why; `state` is the boot state read back after the bootloader's
    /// writes, `changed` whether it writes.
    pub decision: Decision,
    /// The variables the bootloader stores before it boots (empty when it writes nothing).
    pub writes: VarSet<'static>,
}

impl Scheme {
    /// The scheme's name: `native`, `rauc` or `mender`.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Native => "native",
            Scheme::Rauc(_) => "rauc",
            Scheme::Mender(_) => "mender",
        }
    }

    /// The most tries the scheme's bootloader can give a staged slot: 1 for Mender's GRUB
    /// script (any `bootcount` but 0 rolls back), [`MAX_TRIES`] otherwise.
    pub fn max_tries(&self, flavor: Flavor) -> u8 {
        match (self, flavor) {
            (Scheme::Mender(_), Flavor::Grub) => 1,
            _ => MAX_TRIES,
        }
    }

    /// Reads the boot state from `env`.
    pub fn decode(&self, flavor: Flavor, env: &impl EnvRead) -> Result<BootState, SchemeError> {
        let mut st = BootState::default();
        for s in Slot::ALL {
            st.slot_mut(s).name = name_var(env, native::NAME[s.index()])?;
        }
        st.revision = hex_var(env, native::REV, u32::MAX)?.unwrap_or(0);
        match *self {
            Scheme::Native => {
                let present = native::PRIO
                    .iter()
                    .chain(&native::TRIES)
                    .chain(&native::OK)
                    .any(|v| env.get_raw(v).is_some());
                if !present {
                    return Err(SchemeError::NotThisScheme { scheme: "native" });
                }
                for s in Slot::ALL {
                    let i = s.index();
                    let slot = st.slot_mut(s);
                    slot.priority = required(
                        hex_var(env, native::PRIO[i], MAX_PRIORITY as u32)?,
                        native::PRIO[i],
                    )? as u8;
                    slot.tries_left = required(
                        hex_var(env, native::TRIES[i], MAX_TRIES as u32)?,
                        native::TRIES[i],
                    )? as u8;
                    slot.successful =
                        required(hex_var(env, native::OK[i], 1)?, native::OK[i])? == 1;
                }
            }
            Scheme::Rauc(cfg) if flavor == Flavor::UBoot => {
                let present = env.get_raw(rauc::BOOT_ORDER).is_some()
                    || rauc::BOOT_LEFT.iter().any(|v| env.get_raw(v).is_some());
                if !present {
                    return Err(SchemeError::NotThisScheme { scheme: "rauc" });
                }
                // contrib/uboot.sh line 1: a missing or empty BOOT_ORDER is "A B".
                let prio = match env.get_raw(rauc::BOOT_ORDER) {
                    Some(v) if !v.is_empty() => parse_order(v, rauc::BOOT_ORDER)?,
                    _ => [2, 1],
                };
                for s in Slot::ALL {
                    let i = s.index();
                    let slot = st.slot_mut(s);
                    slot.priority = prio[i];
                    slot.tries_left = rauc_uboot_tries(env, rauc::BOOT_LEFT[i])?;
                    slot.successful = false;
                }
                st.rules = BootRules::RaucUBoot {
                    full: cfg.max_tries.max(1),
                };
                st.normalize();
            }
            Scheme::Rauc(_) => {
                let present = env.get_raw(rauc::ORDER).is_some()
                    || rauc::OK
                        .iter()
                        .chain(&rauc::TRY)
                        .any(|v| env.get_raw(v).is_some());
                if !present {
                    return Err(SchemeError::NotThisScheme { scheme: "rauc" });
                }
                // contrib/grub.conf lines 4-9: ORDER "A B", x_OK 0 and x_TRY 0 unless the
                // environment holds them; a stored empty ORDER lists no slot.
                let prio = match env.get_raw(rauc::ORDER) {
                    Some(v) => parse_order(v, rauc::ORDER)?,
                    None => [2, 1],
                };
                for s in Slot::ALL {
                    let i = s.index();
                    // line 25: [ "$OK" -eq 1 -a "$TRY" -eq 0 ]
                    let ok = dec_var(env, rauc::OK[i], 1)?.unwrap_or(0) == 1;
                    let tried = dec_var(env, rauc::TRY[i], 1)?.unwrap_or(0) == 1;
                    let slot = st.slot_mut(s);
                    // A slot marked bad (x_OK=0) never boots, whatever the order says.
                    slot.priority = if ok { prio[i] } else { 0 };
                    slot.tries_left = u8::from(ok && !tried);
                    slot.successful = false;
                }
                // A lone bootable slot is first whatever its place in ORDER (a slot marked bad
                // before it never boots), so the decoded state does not depend on where the
                // bad slot was listed (found by fuzz/bootenv_parse: decode/encode/decode).
                let [a, b] = [st.slot(Slot::A).priority, st.slot(Slot::B).priority];
                if (a == 0) != (b == 0) {
                    let lone = if a == 0 { Slot::B } else { Slot::A };
                    st.slot_mut(lone).priority = 2;
                }
                st.rules = BootRules::RaucGrub;
                st.normalize();
            }
            Scheme::Mender(cfg) => {
                let m = MenderVars::read(cfg, flavor, env)?;
                let active = m.active.ok_or(SchemeError::UnknownPartition {
                    part: m.part_number,
                })?;
                let a = st.slot_mut(active);
                a.priority = 2;
                a.successful = !m.upgrade;
                a.tries_left = if m.upgrade { m.tries } else { 0 };
                let other = active.other();
                let (priority, successful) = match m.recorded {
                    // The agent last wrote `active` as the inactive slot: the bootloader switched
                    // to it since, so the slot the agent had made active failed its trial.
                    Some((s, _)) if s == active => (1, false),
                    Some((_, Inactive::Good)) => (1, true),
                    Some((_, Inactive::Failed)) => (1, false),
                    Some((_, Inactive::Off)) => (0, false),
                    // Nothing recorded (an environment Mender set up): while a trial runs, Mender
                    // rolls back to the other partition, so it is good; afterwards, U-Boot's
                    // altbootcmd leaves bootcount above bootlimit after a rollback; otherwise
                    // the other slot is good if it holds something.
                    None if m.upgrade => (1, true),
                    None if m.rolled_back_trace => (1, false),
                    None if !st.slot(other).name.is_empty() => (1, true),
                    None => (0, false),
                };
                let o = st.slot_mut(other);
                o.priority = priority;
                o.successful = successful;
                o.tries_left = 0;
            }
        }
        Ok(st)
    }

    /// The variable updates that store `state`; `env` is the current environment (Mender keeps
    /// its `bootlimit`).
    pub fn encode(
        &self,
        flavor: Flavor,
        state: &BootState,
        env: &impl EnvRead,
        out: &mut VarSet<'static>,
    ) -> Result<(), SchemeError> {
        match *self {
            Scheme::Native => {
                for s in Slot::ALL {
                    let i = s.index();
                    let slot = state.slot(s);
                    out.set_value(native::PRIO[i], Value::hex(slot.priority.into()))?;
                    out.set_value(native::TRIES[i], Value::hex(slot.tries_left.into()))?;
                    out.set_value(native::OK[i], Value::hex(slot.successful.into()))?;
                }
            }
            Scheme::Rauc(cfg) if flavor == Flavor::UBoot => {
                out.set_value(rauc::BOOT_ORDER, order_value(state))?;
                let full = cfg.max_tries.max(1);
                for s in Slot::ALL {
                    let slot = state.slot(s);
                    // A good slot holds at least `full` tries: what `rauc status mark-good`
                    // writes (RAUC's src/bootchooser.c, uboot_set_state).
                    let left = if slot.successful {
                        slot.tries_left.max(full)
                    } else {
                        slot.tries_left
                    };
                    let var = rauc::BOOT_LEFT[s.index()];
                    out.set_value(var, rauc_uboot_left(left))?;
                }
            }
            Scheme::Rauc(_) => {
                out.set_value(rauc::ORDER, order_value(state))?;
                for s in Slot::ALL {
                    let i = s.index();
                    let slot = state.slot(s);
                    // In the order and good or with a try: OK=1 TRY=0 (what `rauc status
                    // mark-good` and `mark-active` write). In the order without: OK=1 TRY=1,
                    // what grub.conf leaves after booting it. Out of the order: OK=0 TRY=0,
                    // what `rauc status mark-bad` writes (GRUB never boots it either way).
                    let (ok, tried) = if slot.priority == 0 {
                        (0, 0)
                    } else if slot.successful || slot.tries_left > 0 {
                        (1, 0)
                    } else {
                        (1, 1)
                    };
                    out.set_value(rauc::OK[i], Value::dec(ok))?;
                    out.set_value(rauc::TRY[i], Value::dec(tried))?;
                }
            }
            Scheme::Mender(cfg) => {
                let active = state.order()[0];
                let part = cfg.part(active);
                out.set_value(mender::BOOT_PART, Value::dec(part.into()))?;
                out.set_value(mender::BOOT_PART_HEX, Value::hex(part.into()))?;
                let slot = state.slot(active);
                if slot.successful {
                    out.set_value(mender::UPGRADE_AVAILABLE, Value::dec(0))?;
                    out.set_value(mender::BOOTCOUNT, Value::dec(0))?;
                } else {
                    let tries = u32::from(slot.tries_left);
                    out.set_value(mender::UPGRADE_AVAILABLE, Value::dec(1))?;
                    match flavor {
                        // Mender's GRUB script: bootcount 0 is one try, anything else none.
                        Flavor::Grub => {
                            out.set_value(mender::BOOTCOUNT, Value::dec(u32::from(tries == 0)))?
                        }
                        // U-Boot falls back once bootcount (incremented at each boot) exceeds
                        // bootlimit, which is kept unless it allows fewer boots than asked.
                        Flavor::UBoot => {
                            let limit = env.get_raw(mender::BOOTLIMIT).map_or(0, uboot_ulong);
                            if limit != 0 && tries <= limit {
                                out.set_value(mender::BOOTCOUNT, Value::dec(limit - tries))?;
                            } else if tries == 0 {
                                // No limit set: none left is a count at a limit of one.
                                out.set_value(mender::BOOTCOUNT, Value::dec(1))?;
                                out.set_value(mender::BOOTLIMIT, Value::dec(1))?;
                            } else {
                                out.set_value(mender::BOOTCOUNT, Value::dec(0))?;
                                out.set_value(mender::BOOTLIMIT, Value::dec(tries))?;
                            }
                        }
                    }
                }
                let other = state.slot(active.other());
                let status = if other.priority == 0 {
                    Inactive::Off
                } else if other.successful {
                    Inactive::Good
                } else {
                    Inactive::Failed
                };
                out.set_value(mender::INACTIVE, status.value(active.other()))?;
            }
        }
        for s in Slot::ALL {
            let name = &state.slot(s).name;
            if name.is_empty() {
                out.delete(native::NAME[s.index()])?;
            } else {
                out.set(native::NAME[s.index()], name.as_bytes())?;
            }
        }
        out.set_value(native::REV, Value::hex(state.revision))?;
        Ok(())
    }

    /// What the scheme's bootloader does at the next boot with `env`: the slot it boots, why,
    /// and the variables it stores first. Native and RAUC: [`BootState::decide`] on the decoded
    /// state, its result encoded. Mender: the shipped boot code itself, variable by variable
    /// (U-Boot's environment boot counter and meta-mender's `altbootcmd` and `mender_setup`;
    /// grub-mender-grubenv's script), see `docs/BOOTSTATE.md`.
    pub fn boot(&self, flavor: Flavor, env: &impl EnvRead) -> Result<SchemeBoot, SchemeError> {
        let mut writes = VarSet::new();
        let Scheme::Mender(cfg) = *self else {
            let d = self.decode(flavor, env)?.decide();
            if d.changed {
                self.encode(flavor, &d.state, env, &mut writes)?;
            }
            return Ok(SchemeBoot {
                decision: d,
                writes,
            });
        };
        // Refuse what the agent cannot decode before predicting anything.
        self.decode(flavor, env)?;
        let part = env.get_raw(mender::BOOT_PART).unwrap_or(b"");
        let ua = env.get_raw(mender::UPGRADE_AVAILABLE).unwrap_or(b"");
        let bc = env.get_raw(mender::BOOTCOUNT).unwrap_or(b"");
        let part_value = |s: Slot| Value::dec(cfg.part(s).into());
        let kind = match flavor {
            Flavor::UBoot => {
                // common/autoboot.c: bootcount_inc() then bootcount_error().
                let upgrade = uboot_ulong(ua) != 0;
                // bootcount_load() is 0 unless upgrade_available; the new count is stored
                // (env_save) only then, but always set in the running environment.
                let count = if upgrade { uboot_ulong(bc) } else { 0 }.wrapping_add(1);
                let limit = env.get_raw(mender::BOOTLIMIT).map_or(0, uboot_ulong);
                let mut saved = upgrade;
                let kind = if upgrade && limit != 0 && count > limit {
                    // altbootcmd = "run mender_altbootcmd; run bootcmd": the other
                    // partition (any value but A's string goes to A), upgrade_available=0,
                    // saveenv.
                    let to = if part == part_value(Slot::A).as_bytes() {
                        Slot::B
                    } else {
                        Slot::A
                    };
                    writes.set_value(mender::BOOT_PART, part_value(to))?;
                    writes.set_value(mender::BOOT_PART_HEX, Value::hex(cfg.part(to).into()))?;
                    writes.set_value(mender::UPGRADE_AVAILABLE, Value::dec(0))?;
                    DecisionKind::Rollback
                } else if upgrade {
                    DecisionKind::Trial
                } else {
                    DecisionKind::Confirmed
                };
                // mender_setup saves the environment once, setting its canary.
                let has_canary_step = env
                    .get_raw(mender::SETUP)
                    .is_some_and(|v| v.windows(21).any(|w| w == b"mender_saveenv_canary"));
                if has_canary_step && env.get_raw(mender::SAVEENV_CANARY) != Some(b"1") {
                    writes.set_value(mender::SAVEENV_CANARY, Value::dec(1))?;
                    saved = true;
                }
                if saved {
                    writes.set_value(mender::BOOTCOUNT, Value::dec(count))?;
                }
                kind
            }
            Flavor::Grub => {
                // 04_mender_setup_env_functions_grub.cfg: mender_load_env then
                // mender_load_env_with_rollback.
                let is = |v: &[u8], s: Slot| grub_strtol(v) == i64::from(cfg.part(s));
                let valid = (is(part, Slot::A) || is(part, Slot::B))
                    && (bc == b"0" || bc == b"1")
                    && (ua == b"0" || ua == b"1");
                // mender_boot_part as held in memory: a corrupt environment boots A unless
                // the value is B's.
                let mut now = Value::new(part).unwrap_or(part_value(Slot::B));
                if !valid && !is(part, Slot::B) {
                    now = part_value(Slot::A);
                }
                if ua == b"1" {
                    let kind = if bc != b"0" {
                        now = if is(now.as_bytes(), Slot::A) {
                            part_value(Slot::B)
                        } else {
                            part_value(Slot::A)
                        };
                        DecisionKind::Rollback
                    } else {
                        DecisionKind::Trial
                    };
                    let rollback = kind == DecisionKind::Rollback;
                    // mender_save_env stores the three variables as they are in memory.
                    writes.set_value(mender::BOOTCOUNT, Value::dec(u32::from(!rollback)))?;
                    writes.set_value(mender::BOOT_PART, now)?;
                    writes
                        .set_value(mender::UPGRADE_AVAILABLE, Value::dec(u32::from(!rollback)))?;
                    // ...and mender_systemd_machine_id, empty when it was not set (GRUB 2.06's
                    // save_env stores an unset variable as empty; seen in grub-emu).
                    let id = env.get_raw(mender::MACHINE_ID).unwrap_or(b"");
                    writes.set(mender::MACHINE_ID, id)?;
                    kind
                } else {
                    DecisionKind::Confirmed
                }
            }
        };
        let after = Updated {
            env,
            updates: &writes,
        };
        let state = self.decode(flavor, &after)?;
        let slot =
            MenderVars::read(cfg, flavor, &after)?
                .active
                .ok_or(SchemeError::UnknownPartition {
                    part: uboot_ulong(part),
                })?;
        Ok(SchemeBoot {
            decision: Decision {
                slot,
                kind,
                state,
                changed: !writes.is_empty(),
            },
            writes,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::state::SlotName;
    use crate::DecisionKind;
    use std::vec::Vec;

    /// A tiny env over a list of pairs, with updates applied.
    struct Pairs(Vec<(&'static str, Vec<u8>)>);
    impl EnvRead for Pairs {
        fn get_raw(&self, key: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| &v[..])
        }
    }
    impl Pairs {
        fn apply(&mut self, set: &VarSet<'static>) {
            for (k, v) in set.iter() {
                self.0.retain(|(kk, _)| *kk != k);
                if let Some(v) = v {
                    self.0.push((k, v.to_vec()));
                }
            }
        }
    }

    fn store(scheme: Scheme, flavor: Flavor, env: &mut Pairs, st: &BootState) {
        let mut set = VarSet::new();
        scheme.encode(flavor, st, env, &mut set).unwrap();
        env.apply(&set);
    }

    #[test]
    fn native_roundtrip() {
        let mut st = BootState::initial(Slot::A, SlotName::from_str("abc").unwrap());
        st.stage(Slot::B, 3, SlotName::from_str("def.0").unwrap())
            .unwrap();
        for flavor in [Flavor::UBoot, Flavor::Grub] {
            let mut env = Pairs(Vec::new());
            store(Scheme::Native, flavor, &mut env, &st);
            assert_eq!(Scheme::Native.decode(flavor, &env).unwrap(), st);
            assert_eq!(env.get_raw("ECU_B_TRIES"), Some(&b"3"[..]));
        }
    }

    #[test]
    fn native_errors() {
        let env = Pairs(Vec::from([("bootcmd", b"boot".to_vec())]));
        assert_eq!(
            Scheme::Native.decode(Flavor::UBoot, &env),
            Err(SchemeError::NotThisScheme { scheme: "native" })
        );
        let mut env = Pairs(Vec::new());
        store(
            Scheme::Native,
            Flavor::UBoot,
            &mut env,
            &BootState::initial(Slot::A, SlotName::EMPTY),
        );
        env.0.retain(|(k, _)| *k != "ECU_B_OK");
        assert_eq!(
            Scheme::Native.decode(Flavor::UBoot, &env),
            Err(SchemeError::Missing { var: "ECU_B_OK" })
        );
        env.0.push(("ECU_B_OK", b"2".to_vec()));
        assert!(matches!(
            Scheme::Native.decode(Flavor::UBoot, &env),
            Err(SchemeError::OutOfRange { .. })
        ));
        env.0.push(("ECU_B_OK", b"x".to_vec()));
        assert_eq!(
            Scheme::Native.decode(Flavor::UBoot, &env),
            Err(SchemeError::NotANumber { var: "ECU_B_OK" })
        );
    }

    fn pairs(vars: &[(&'static str, &str)]) -> Pairs {
        Pairs(
            vars.iter()
                .map(|(k, v)| (*k, v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn name(s: &str) -> SlotName {
        SlotName::from_str(s).unwrap()
    }

    /// BOOT_x_LEFT as contrib/uboot.sh reads it: `test -gt` (base 0) decides, `setexpr` (hex)
    /// counts. `a` and `19` were booted in real U-Boot 2023.01 (tests/uboot_boot.rs).
    #[test]
    fn rauc_uboot_counter_reads_as_the_script_tests_it() {
        let rauc = Scheme::Rauc(RaucConfig::default());
        let tries = |v: &str| {
            rauc.decode(Flavor::UBoot, &pairs(&[("BOOT_A_LEFT", v)]))
                .map(|st| st.slot(Slot::A).tries_left)
        };
        assert_eq!(tries("3"), Ok(3));
        // `test a -gt 0` is false: the slot is skipped although RAUC's userland reads 10
        assert_eq!(tries("a"), Ok(0));
        // 0x10 boots once, then setexpr writes "f", which test reads as 0
        assert_eq!(tries("10"), Ok(1));
        assert_eq!(tries("19"), Ok(10));
        assert_eq!(tries("0x3"), Ok(3));
        assert_eq!(tries("010"), Ok(1), "octal 8 > 0, then hex 0x10 - 1 = f");
        assert_eq!(tries("-1"), Ok(0));
        assert_eq!(tries("ffffffff"), Ok(0));
        assert_eq!(tries(""), Ok(3), "empty is unset: line 2 sets 3");
        assert!(matches!(
            tries("99999999"),
            Err(SchemeError::OutOfRange { .. })
        ));
        assert_eq!(
            tries("3 4"),
            Err(SchemeError::NotANumber { var: "BOOT_A_LEFT" })
        );
        // every count the model can hold is written as a value giving exactly that many boots
        // (found by fuzz/bootenv_parse: "1E9UN" decodes as 234 boots, which must encode)
        for n in 0..=u8::MAX {
            let v = rauc_uboot_left(n);
            assert_eq!(rauc_uboot_boots(v.as_bytes()), Some(n.into()), "{n}");
        }
        assert_eq!(tries("1E9UN"), Ok(234));
        assert_eq!(rauc_uboot_left(145).as_bytes(), b"190");
        // B's "a" is no try: the script boots A
        let env = pairs(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "a"),
        ]);
        let d = rauc.decode(Flavor::UBoot, &env).unwrap().decide();
        assert_eq!((d.slot, d.kind), (Slot::A, DecisionKind::Trial));
        assert_eq!(d.state.slot(Slot::A).tries_left, 2);
    }

    /// Case 3 of issue 10 on U-Boot: every boot counts, mark-good refills the counter, and the
    /// refilled booted slot reads as good, so the next update is accepted.
    #[test]
    fn rauc_uboot_mark_good_refills_and_reads_good() {
        let rauc = Scheme::Rauc(RaucConfig::default());
        let mut env = Pairs(Vec::new());
        store(
            rauc,
            Flavor::UBoot,
            &mut env,
            &BootState::initial(Slot::A, name("a")),
        );
        assert_eq!(env.get_raw("BOOT_A_LEFT"), Some(&b"3"[..]));
        let mut st = rauc.decode(Flavor::UBoot, &env).unwrap();
        assert!(st.slot(Slot::A).successful);
        assert!(st.stage(Slot::B, 5, name("b")).unwrap());
        assert_eq!(st.slot(Slot::B).tries_left, 3, "capped at boot-attempts");
        store(rauc, Flavor::UBoot, &mut env, &st);
        assert_eq!(env.get_raw("BOOT_ORDER"), Some(&b"B A"[..]));
        // the boot: B counted (the script writes), and B is on trial
        let d = rauc.decode(Flavor::UBoot, &env).unwrap().decide();
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::B, DecisionKind::Trial, true)
        );
        store(rauc, Flavor::UBoot, &mut env, &d.state);
        assert_eq!(env.get_raw("BOOT_B_LEFT"), Some(&b"2"[..]));
        let mut st = rauc.decode(Flavor::UBoot, &env).unwrap();
        assert_eq!(st, d.state);
        assert!(!st.slot(Slot::B).successful, "booted, not yet marked good");
        // mark-good: BOOT_B_LEFT back to 3, and B is good
        assert!(st.mark_good(Slot::B));
        store(rauc, Flavor::UBoot, &mut env, &st);
        assert_eq!(env.get_raw("BOOT_B_LEFT"), Some(&b"3"[..]));
        assert_eq!(env.get_raw("BOOT_ORDER"), Some(&b"B A"[..]));
        let mut back = rauc.decode(Flavor::UBoot, &env).unwrap();
        assert_eq!(back, st);
        assert!(back.slot(Slot::B).successful);
        assert!(
            !back.mark_good(Slot::B),
            "a second mark-good writes nothing"
        );
        // a good slot still counts every boot
        let d = back.decide();
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::B, DecisionKind::Trial, true)
        );
        assert!(!d.state.slot(Slot::B).successful);
    }

    /// Both counters at 0: the script refills both to 3, saves, resets, and the boot after the
    /// reset takes the first slot of BOOT_ORDER.
    #[test]
    fn rauc_uboot_refills_when_no_slot_has_tries() {
        let rauc = Scheme::Rauc(RaucConfig::default());
        let env = pairs(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "0"),
        ]);
        let st = rauc.decode(Flavor::UBoot, &env).unwrap();
        let d = st.decide();
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::B, DecisionKind::Refill, true)
        );
        assert_eq!(d.state.slot(Slot::A).tries_left, 3);
        assert_eq!(d.state.slot(Slot::B).tries_left, 2);
        assert!(d.state.slot(Slot::A).successful);
        // a slot outside BOOT_ORDER is refilled too, but never booted
        let env = pairs(&[
            ("BOOT_ORDER", "A"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "0"),
        ]);
        let d = rauc.decode(Flavor::UBoot, &env).unwrap().decide();
        assert_eq!((d.slot, d.kind), (Slot::A, DecisionKind::Refill));
        assert_eq!(d.state.slot(Slot::B).tries_left, 3);
        assert!(!d.state.slot(Slot::B).successful);
    }

    /// Case 3 on GRUB: a boot sets x_TRY=1, mark-good sets x_OK=1 x_TRY=0 and the slot reads
    /// as good; with no slot left GRUB boots the rescue entry and clears the try flags.
    #[test]
    fn rauc_grub_mark_good_and_rescue() {
        let rauc = Scheme::Rauc(RaucConfig::default());
        let mut env = pairs(&[
            ("ORDER", "A B"),
            ("A_OK", "1"),
            ("A_TRY", "0"),
            ("B_OK", "1"),
            ("B_TRY", "0"),
        ]);
        let st = rauc.decode(Flavor::Grub, &env).unwrap();
        assert!(st.slot(Slot::A).successful && st.slot(Slot::B).successful);
        let d = st.decide();
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::A, DecisionKind::Trial, true)
        );
        store(rauc, Flavor::Grub, &mut env, &d.state);
        assert_eq!(env.get_raw("A_TRY"), Some(&b"1"[..]));
        let mut st = rauc.decode(Flavor::Grub, &env).unwrap();
        assert!(!st.slot(Slot::A).successful);
        assert!(st.mark_good(Slot::A));
        store(rauc, Flavor::Grub, &mut env, &st);
        assert_eq!(env.get_raw("A_TRY"), Some(&b"0"[..]));
        assert_eq!(env.get_raw("A_OK"), Some(&b"1"[..]));
        assert!(
            rauc.decode(Flavor::Grub, &env)
                .unwrap()
                .slot(Slot::A)
                .successful
        );
        // both tried: rescue, both try flags cleared
        let env = pairs(&[
            ("ORDER", "B A"),
            ("A_OK", "1"),
            ("A_TRY", "1"),
            ("B_OK", "1"),
            ("B_TRY", "1"),
        ]);
        let d = rauc.decode(Flavor::Grub, &env).unwrap().decide();
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::B, DecisionKind::Rescue, true)
        );
        assert_eq!(d.state.slot(Slot::A).tries_left, 1);
        assert_eq!(d.state.slot(Slot::B).tries_left, 1);
        // a slot marked bad (OK=0) keeps out, also after the rescue
        let env = pairs(&[
            ("ORDER", "B A"),
            ("A_OK", "1"),
            ("A_TRY", "1"),
            ("B_OK", "0"),
            ("B_TRY", "0"),
        ]);
        let d = rauc.decode(Flavor::Grub, &env).unwrap().decide();
        assert_eq!((d.slot, d.kind), (Slot::A, DecisionKind::Rescue));
        assert_eq!(d.state.slot(Slot::B).priority, 0);
        assert_eq!(d.state.slot(Slot::B).tries_left, 0);
        // a stored empty ORDER lists no slot: rescue every boot, nothing changes
        let env = pairs(&[("ORDER", ""), ("A_OK", "1"), ("A_TRY", "0")]);
        let d = rauc.decode(Flavor::Grub, &env).unwrap().decide();
        assert_eq!((d.kind, d.changed), (DecisionKind::Rescue, false));
    }

    #[test]
    fn rauc_grub_one_try() {
        let rauc = Scheme::Rauc(RaucConfig::default());
        let env = Pairs(Vec::from([
            ("ORDER", b"B A".to_vec()),
            ("A_OK", b"1".to_vec()),
            ("A_TRY", b"0".to_vec()),
            ("B_OK", b"1".to_vec()),
            ("B_TRY", b"1".to_vec()),
        ]));
        let st = rauc.decode(Flavor::Grub, &env).unwrap();
        assert_eq!(st.slot(Slot::B).tries_left, 0);
        assert_eq!(st.slot(Slot::A).tries_left, 1);
        assert_eq!(st.decide().slot, Slot::A);
        assert!(matches!(
            rauc.decode(
                Flavor::Grub,
                &Pairs(Vec::from([("ORDER", b"A C".to_vec())]))
            ),
            Err(SchemeError::BadOrder { .. })
        ));
        assert!(matches!(
            rauc.decode(
                Flavor::Grub,
                &Pairs(Vec::from([("ORDER", b"A A".to_vec())]))
            ),
            Err(SchemeError::BadOrder { .. })
        ));
    }

    #[test]
    fn mender_trial_and_rollback() {
        let m = Scheme::Mender(MenderConfig::default());
        let mut env = Pairs(Vec::from([("bootlimit", b"1".to_vec())]));
        let mut st = BootState::initial(Slot::A, SlotName::EMPTY);
        store(m, Flavor::UBoot, &mut env, &st);
        assert_eq!(env.get_raw("mender_boot_part"), Some(&b"2"[..]));
        assert_eq!(env.get_raw("upgrade_available"), Some(&b"0"[..]));
        st.stage(Slot::B, 1, SlotName::EMPTY).unwrap();
        store(m, Flavor::UBoot, &mut env, &st);
        assert_eq!(env.get_raw("mender_boot_part"), Some(&b"3"[..]));
        assert_eq!(env.get_raw("upgrade_available"), Some(&b"1"[..]));
        assert_eq!(env.get_raw("bootcount"), Some(&b"0"[..]));
        let dec = m.decode(Flavor::UBoot, &env).unwrap();
        assert_eq!(dec.slot(Slot::B).tries_left, 1);
        assert!(!dec.slot(Slot::B).successful);
        // U-Boot counted one boot (hex), the limit is exhausted: next boot is A
        env.0.push(("bootcount", b"1".to_vec()));
        let dec = m.decode(Flavor::UBoot, &env).unwrap();
        assert_eq!(dec.decide().slot, Slot::A);
        // more tries than bootlimit raise bootlimit
        st.stage(Slot::B, 5, SlotName::EMPTY).unwrap();
        store(m, Flavor::UBoot, &mut env, &st);
        assert_eq!(env.get_raw("bootlimit"), Some(&b"5"[..]));
        assert_eq!(
            m.decode(Flavor::UBoot, &env)
                .unwrap()
                .slot(Slot::B)
                .tries_left,
            5
        );
        env.0.push(("mender_boot_part", b"7".to_vec()));
        assert_eq!(
            m.decode(Flavor::UBoot, &env),
            Err(SchemeError::UnknownPartition { part: 7 })
        );
    }

    /// Applies what the bootloader stores at one boot and returns its decision.
    fn boot(m: Scheme, flavor: Flavor, env: &mut Pairs) -> Decision {
        let b = m.boot(flavor, env).unwrap();
        assert_eq!(b.decision.changed, !b.writes.is_empty());
        env.apply(&b.writes);
        assert_eq!(m.decode(flavor, env).unwrap(), b.decision.state);
        b.decision
    }

    #[test]
    fn mender_uboot_bootcount_is_decimal_past_nine() {
        let m = Scheme::Mender(MenderConfig::default());
        // U-Boot's bootcount_env.c: env_get_ulong(.., 10, ..) and env_set_ulong (decimal).
        let mut env = pairs(&[
            ("mender_boot_part", "3"),
            ("upgrade_available", "1"),
            ("bootlimit", "12"),
            ("bootcount", "10"),
            ("ECU_INACTIVE", "A:good"),
        ]);
        assert_eq!(
            m.decode(Flavor::UBoot, &env)
                .unwrap()
                .slot(Slot::B)
                .tries_left,
            2
        );
        for (count, kind) in [("11", DecisionKind::Trial), ("12", DecisionKind::Trial)] {
            let d = boot(m, Flavor::UBoot, &mut env);
            assert_eq!((d.slot, d.kind, d.changed), (Slot::B, kind, true));
            assert_eq!(env.get_raw("bootcount"), Some(count.as_bytes()));
        }
        // 13 > 12: altbootcmd switches to A, clears upgrade_available and saves (bootcount 13).
        let d = boot(m, Flavor::UBoot, &mut env);
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::A, DecisionKind::Rollback, true)
        );
        assert_eq!(env.get_raw("bootcount"), Some(&b"13"[..]));
        assert_eq!(env.get_raw("mender_boot_part"), Some(&b"2"[..]));
        assert_eq!(env.get_raw("mender_boot_part_hex"), Some(&b"2"[..]));
        assert_eq!(env.get_raw("upgrade_available"), Some(&b"0"[..]));
        // B failed its trial; A is good; further boots write nothing.
        assert!(d.state.slot(Slot::A).successful);
        assert!(!d.state.slot(Slot::B).successful);
        assert_eq!(d.state.slot(Slot::B).priority, 1);
        let d = boot(m, Flavor::UBoot, &mut env);
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::A, DecisionKind::Confirmed, false)
        );
        // Staging with more tries than bootlimit allows keeps counting in decimal.
        let mut st = d.state;
        st.stage(Slot::B, 3, SlotName::EMPTY).unwrap();
        store(m, Flavor::UBoot, &mut env, &st);
        assert_eq!(env.get_raw("bootcount"), Some(&b"9"[..]));
        assert_eq!(env.get_raw("bootlimit"), Some(&b"12"[..]));
        for count in ["10", "11", "12"] {
            assert_eq!(boot(m, Flavor::UBoot, &mut env).slot, Slot::B);
            assert_eq!(env.get_raw("bootcount"), Some(count.as_bytes()));
        }
        assert_eq!(
            boot(m, Flavor::UBoot, &mut env).kind,
            DecisionKind::Rollback
        );
    }

    #[test]
    fn mender_after_a_good_update_the_previous_slot_is_a_fallback() {
        let m = Scheme::Mender(MenderConfig::default());
        for flavor in [Flavor::UBoot, Flavor::Grub] {
            let mut env = pairs(&[("bootlimit", "1")]);
            let mut st = BootState::initial(Slot::A, SlotName::from_str("a.0").unwrap());
            store(m, flavor, &mut env, &st);
            assert_eq!(m.decode(flavor, &env).unwrap(), st, "{flavor:?}");
            st.stage(Slot::B, 1, SlotName::from_str("b.0").unwrap())
                .unwrap();
            store(m, flavor, &mut env, &st);
            let d = boot(m, flavor, &mut env);
            assert_eq!((d.slot, d.kind), (Slot::B, DecisionKind::Trial));
            let mut st = d.state;
            assert!(st.mark_good(Slot::B));
            store(m, flavor, &mut env, &st);
            let back = m.decode(flavor, &env).unwrap();
            assert_eq!(back, st, "{flavor:?}: mark-good round trip");
            // Not a rollback: A is the good previous system, and rolling back to it works.
            assert!(back.slot(Slot::A).successful);
            let mut rb = back;
            assert_eq!(rb.rollback(Slot::B), Ok(true));
            store(m, flavor, &mut env, &rb);
            assert_eq!(env.get_raw("mender_boot_part"), Some(&b"2"[..]));
            assert_eq!(env.get_raw("upgrade_available"), Some(&b"0"[..]));
            let back = m.decode(flavor, &env).unwrap();
            assert_eq!(back.slot(Slot::B).priority, 0, "B given up");
            let d = boot(m, flavor, &mut env);
            assert_eq!(
                (d.slot, d.kind, d.changed),
                (Slot::A, DecisionKind::Confirmed, false)
            );
        }
    }

    #[test]
    fn mender_grub_gives_one_try_whatever_bootlimit_says() {
        let m = Scheme::Mender(MenderConfig::default());
        let mut env = pairs(&[("bootlimit", "5")]);
        let mut st = BootState::initial(Slot::A, SlotName::EMPTY);
        st.stage(Slot::B, 3, SlotName::EMPTY).unwrap();
        store(m, Flavor::Grub, &mut env, &st);
        assert_eq!(env.get_raw("bootcount"), Some(&b"0"[..]));
        assert_eq!(env.get_raw("bootlimit"), Some(&b"5"[..]), "GRUB ignores it");
        assert_eq!(
            m.decode(Flavor::Grub, &env)
                .unwrap()
                .slot(Slot::B)
                .tries_left,
            1
        );
        let d = boot(m, Flavor::Grub, &mut env);
        assert_eq!((d.slot, d.kind), (Slot::B, DecisionKind::Trial));
        assert_eq!(env.get_raw("bootcount"), Some(&b"1"[..]));
        assert_eq!(env.get_raw("mender_systemd_machine_id"), Some(&b""[..]));
        let d = boot(m, Flavor::Grub, &mut env);
        assert_eq!((d.slot, d.kind), (Slot::A, DecisionKind::Rollback));
        assert_eq!(env.get_raw("bootcount"), Some(&b"0"[..]));
        assert_eq!(env.get_raw("upgrade_available"), Some(&b"0"[..]));
        assert_eq!(env.get_raw("mender_boot_part"), Some(&b"2"[..]));
        assert!(!d.state.slot(Slot::B).successful);
        // Corrupt: bootcount outside 0 and 1 while on trial rolls back; an upgrade_available
        // other than 1 is no trial (nothing written).
        for (bc, ua, slot, kind) in [
            ("2", "1", Slot::A, DecisionKind::Rollback),
            ("01", "1", Slot::A, DecisionKind::Rollback),
            ("0", "2", Slot::B, DecisionKind::Confirmed),
            ("0", "01", Slot::B, DecisionKind::Confirmed),
        ] {
            let env = pairs(&[
                ("mender_boot_part", "3"),
                ("bootcount", bc),
                ("upgrade_available", ua),
            ]);
            let b = m.boot(Flavor::Grub, &env).unwrap();
            assert_eq!(
                (b.decision.slot, b.decision.kind),
                (slot, kind),
                "{bc} {ua}"
            );
        }
        // The U-Boot reading of the same variables counts up to bootlimit.
        let env = pairs(&[
            ("mender_boot_part", "3"),
            ("bootcount", "2"),
            ("upgrade_available", "1"),
            ("bootlimit", "5"),
        ]);
        let b = m.boot(Flavor::UBoot, &env).unwrap();
        assert_eq!(
            (b.decision.slot, b.decision.kind),
            (Slot::B, DecisionKind::Trial)
        );
    }

    #[test]
    fn mender_uboot_canary_is_saved_once_by_mender_setup() {
        let m = Scheme::Mender(MenderConfig::default());
        let mut env = pairs(&[
            ("mender_boot_part", "2"),
            ("upgrade_available", "0"),
            ("bootcount", "0"),
            ("bootlimit", "1"),
            ("mender_setup", "if test \"${mender_saveenv_canary}\" != \"1\"; then setenv mender_saveenv_canary 1; saveenv; fi"),
        ]);
        let d = boot(m, Flavor::UBoot, &mut env);
        assert_eq!(
            (d.slot, d.kind, d.changed),
            (Slot::A, DecisionKind::Confirmed, true)
        );
        // The running environment's bootcount (1) is saved with the canary.
        assert_eq!(env.get_raw("bootcount"), Some(&b"1"[..]));
        assert_eq!(env.get_raw("mender_saveenv_canary"), Some(&b"1"[..]));
        assert!(!boot(m, Flavor::UBoot, &mut env).changed);
    }

    #[test]
    fn mender_number_readers_follow_the_bootloaders() {
        assert_eq!(uboot_ulong(b"13"), 13);
        assert_eq!(uboot_ulong(b"0x10"), 0);
        assert_eq!(uboot_ulong(b"a"), 0);
        assert_eq!(uboot_ulong(b"12abc"), 12);
        assert_eq!(uboot_ulong(b"4294967297"), 1);
        assert_eq!(grub_strtol(b"3"), 3);
        assert_eq!(grub_strtol(b" 03"), 3);
        assert_eq!(grub_strtol(b"0x3"), 3);
        assert_eq!(grub_strtol(b"-2"), -2);
        assert_eq!(grub_strtol(b"x"), 0);
        assert_eq!(grub_strtol(b"99999999999999999999999"), i64::MAX);
        assert_eq!(Inactive::parse(b"B:off"), Some((Slot::B, Inactive::Off)));
        assert_eq!(Inactive::parse(b"C:off"), None);
    }
}
