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

use core::fmt;

use crate::state::{BootState, Slot, SlotName, StateError, MAX_PRIORITY, MAX_TRIES};
use crate::vars::{parse_dec, parse_hex, EnvRead, Value, VarSet, VarSetFull};

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
    /// Tries RAUC's U-Boot script gives a slot (`BOOT_x_LEFT` after `mark-good`; default 3).
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
    /// U-Boot: tries left, hex (RAUC's script counts with `setexpr`).
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
    /// `1` while the active slot is on trial.
    pub const UPGRADE_AVAILABLE: &str = "upgrade_available";
    /// Boots counted during the trial, hex (U-Boot's bootcount code writes it with `%lx`).
    pub const BOOTCOUNT: &str = "bootcount";
    /// Boots allowed, decimal (U-Boot reads it with base 10).
    pub const BOOTLIMIT: &str = "bootlimit";
}

/// Scheme errors: the environment is valid but its variables do not describe a boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SchemeError {
    /// None of the scheme's variables is set.
    NotThisScheme {
        /// The scheme's name.
        scheme: &'static str,
    },
    /// A required variable is missing.
    Missing {
        /// Its name.
        var: &'static str,
    },
    /// A variable does not hold a number of the expected base.
    NotANumber {
        /// Its name.
        var: &'static str,
    },
    /// A variable holds a number out of range.
    OutOfRange {
        /// Its name.
        var: &'static str,
        /// The number.
        value: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A slot order names something other than A and B, or a slot twice.
    BadOrder {
        /// The variable.
        var: &'static str,
    },
    /// `mender_boot_part` is neither slot's partition.
    UnknownPartition {
        /// The partition number.
        part: u32,
    },
    /// A name variable holds an invalid name.
    BadName {
        /// The variable.
        var: &'static str,
        /// Why.
        error: StateError,
    },
    /// Too many variables for one update (a bug).
    TooManyVars,
}

impl fmt::Display for SchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SchemeError::NotThisScheme { scheme } => write!(
                f,
                "the environment holds none of the {scheme} scheme's variables; pick another --scheme or initialise the boot state"
            ),
            SchemeError::Missing { var } => write!(
                f,
                "variable {var} is missing; the boot state in this environment is incomplete"
            ),
            SchemeError::NotANumber { var } => {
                write!(f, "variable {var} does not hold a number")
            }
            SchemeError::OutOfRange { var, value, max } => {
                write!(f, "variable {var} is {value}, above the maximum {max}")
            }
            SchemeError::BadOrder { var } => write!(
                f,
                "variable {var} must list the slots A and B (each at most once, space-separated)"
            ),
            SchemeError::UnknownPartition { part } => write!(
                f,
                "mender_boot_part is {part}, which is neither slot A's nor slot B's partition; check the Mender partition numbers"
            ),
            SchemeError::BadName { var, error } => write!(f, "variable {var}: {error}"),
            SchemeError::TooManyVars => {
                f.write_str("internal error: too many variables for one update")
            }
        }
    }
}

impl core::error::Error for SchemeError {}

impl From<VarSetFull> for SchemeError {
    fn from(_: VarSetFull) -> Self {
        SchemeError::TooManyVars
    }
}

fn hex_var(env: &impl EnvRead, var: &'static str, max: u32) -> Result<Option<u32>, SchemeError> {
    match env.get_raw(var) {
        None => Ok(None),
        Some(v) => {
            let n = parse_hex(v).ok_or(SchemeError::NotANumber { var })?;
            if n > max {
                return Err(SchemeError::OutOfRange { var, value: n, max });
            }
            Ok(Some(n))
        }
    }
}

fn dec_var(env: &impl EnvRead, var: &'static str, max: u32) -> Result<Option<u32>, SchemeError> {
    match env.get_raw(var) {
        None => Ok(None),
        Some(v) => {
            let n = parse_dec(v).ok_or(SchemeError::NotANumber { var })?;
            if n > max {
                return Err(SchemeError::OutOfRange { var, value: n, max });
            }
            Ok(Some(n))
        }
    }
}

fn required(v: Option<u32>, var: &'static str) -> Result<u32, SchemeError> {
    v.ok_or(SchemeError::Missing { var })
}

fn name_var(env: &impl EnvRead, var: &'static str) -> Result<SlotName, SchemeError> {
    match env.get_raw(var) {
        None => Ok(SlotName::EMPTY),
        Some(v) => SlotName::from_bytes(v).map_err(|error| SchemeError::BadName { var, error }),
    }
}

/// Parses a slot order (`"A B"`) into priorities: first 2, second 1, absent 0.
fn parse_order(v: &[u8], var: &'static str) -> Result<[u8; 2], SchemeError> {
    let mut prio = [0u8; 2];
    let mut next = 2u8;
    for tok in v.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        let s = match tok {
            b"A" => Slot::A,
            b"B" => Slot::B,
            _ => return Err(SchemeError::BadOrder { var }),
        };
        if prio[s.index()] != 0 || next == 0 {
            return Err(SchemeError::BadOrder { var });
        }
        prio[s.index()] = next;
        next -= 1;
    }
    Ok(prio)
}

/// Formats the order of slots with priority above 0, highest first; `" "` when there is none.
fn order_value(state: &BootState) -> Value {
    let [first, second] = state.order();
    let p1 = state.slot(first).priority > 0;
    let p2 = state.slot(second).priority > 0;
    let both = [
        first.as_str().as_bytes()[0],
        b' ',
        second.as_str().as_bytes()[0],
    ];
    let v: &[u8] = match (p1, p2) {
        (true, true) => &both,
        (true, false) => first.as_str().as_bytes(),
        (false, true) => second.as_str().as_bytes(),
        // No slot enabled. An empty value would read back as RAUC's default "A B"; a lone
        // space lists no slot and reads back as it was (found by fuzz/bootenv_parse).
        (false, false) => b" ",
    };
    // at most 3 bytes
    Value::new(v).unwrap_or(Value::hex(0))
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
            Scheme::Rauc(_) if flavor == Flavor::UBoot => {
                let present = env.get_raw(rauc::BOOT_ORDER).is_some()
                    || rauc::BOOT_LEFT.iter().any(|v| env.get_raw(v).is_some());
                if !present {
                    return Err(SchemeError::NotThisScheme { scheme: "rauc" });
                }
                // RAUC's script defaults: BOOT_ORDER "A B", BOOT_x_LEFT 3.
                let prio = match env.get_raw(rauc::BOOT_ORDER) {
                    Some(v) if !v.is_empty() => parse_order(v, rauc::BOOT_ORDER)?,
                    _ => [2, 1],
                };
                for s in Slot::ALL {
                    let i = s.index();
                    let slot = st.slot_mut(s);
                    slot.priority = prio[i];
                    slot.tries_left = match env.get_raw(rauc::BOOT_LEFT[i]) {
                        Some(v) if !v.is_empty() => {
                            hex_var(env, rauc::BOOT_LEFT[i], u8::MAX as u32)?.unwrap_or(0) as u8
                        }
                        _ => 3,
                    };
                    slot.successful = false;
                }
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
                // RAUC's grub.conf defaults: ORDER "A B", OK 0, TRY 0.
                let prio = match env.get_raw(rauc::ORDER) {
                    Some(v) if !v.is_empty() => parse_order(v, rauc::ORDER)?,
                    _ => [2, 1],
                };
                for s in Slot::ALL {
                    let i = s.index();
                    let ok = dec_var(env, rauc::OK[i], 1)?.unwrap_or(0) == 1;
                    let tried = dec_var(env, rauc::TRY[i], 1)?.unwrap_or(0) == 1;
                    let slot = st.slot_mut(s);
                    slot.priority = prio[i];
                    slot.tries_left = u8::from(ok && !tried);
                    slot.successful = false;
                }
            }
            Scheme::Mender(cfg) => {
                let part = match env.get_raw(mender::BOOT_PART) {
                    Some(_) => required(dec_var(env, mender::BOOT_PART, 255)?, mender::BOOT_PART)?,
                    None => {
                        if env.get_raw(mender::UPGRADE_AVAILABLE).is_none() {
                            return Err(SchemeError::NotThisScheme { scheme: "mender" });
                        }
                        return Err(SchemeError::Missing {
                            var: mender::BOOT_PART,
                        });
                    }
                };
                let active = if part == cfg.part_a as u32 {
                    Slot::A
                } else if part == cfg.part_b as u32 {
                    Slot::B
                } else {
                    return Err(SchemeError::UnknownPartition { part });
                };
                let upgrade = dec_var(env, mender::UPGRADE_AVAILABLE, 1)?.unwrap_or(0) == 1;
                let bootcount = hex_var(env, mender::BOOTCOUNT, u32::MAX)?.unwrap_or(0);
                let bootlimit = dec_var(env, mender::BOOTLIMIT, 999_999_999)?.unwrap_or(1);
                let tries = bootlimit.saturating_sub(bootcount).min(u8::MAX as u32) as u8;
                let a = st.slot_mut(active);
                a.priority = 2;
                a.successful = !upgrade;
                a.tries_left = if upgrade { tries } else { 0 };
                let o = st.slot_mut(active.other());
                o.priority = 1;
                o.successful = upgrade;
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
                for s in Slot::ALL {
                    let slot = state.slot(s);
                    let left = if slot.successful {
                        slot.tries_left.max(cfg.max_tries)
                    } else {
                        slot.tries_left
                    };
                    out.set_value(rauc::BOOT_LEFT[s.index()], Value::hex(left.into()))?;
                }
            }
            Scheme::Rauc(_) => {
                out.set_value(rauc::ORDER, order_value(state))?;
                for s in Slot::ALL {
                    let i = s.index();
                    let slot = state.slot(s);
                    // A bootable slot is OK and untried. A slot without tries is "tried and
                    // unconfirmed" (OK=1, TRY=1, what RAUC's grub.conf leaves after a boot),
                    // unless RAUC had already marked it bad (OK=0), which is kept.
                    let (ok, tried) = if slot.successful || slot.tries_left > 0 {
                        (1, 0)
                    } else if env.get_raw(rauc::OK[i]) == Some(b"0") {
                        (0, 0)
                    } else {
                        (1, 1)
                    };
                    out.set_value(rauc::OK[i], Value::dec(ok))?;
                    out.set_value(rauc::TRY[i], Value::dec(tried))?;
                }
            }
            Scheme::Mender(cfg) => {
                let active = state.order()[0];
                let part = match active {
                    Slot::A => cfg.part_a,
                    Slot::B => cfg.part_b,
                };
                out.set_value(mender::BOOT_PART, Value::dec(part.into()))?;
                out.set_value(mender::BOOT_PART_HEX, Value::hex(part.into()))?;
                let slot = state.slot(active);
                if slot.successful {
                    out.set_value(mender::UPGRADE_AVAILABLE, Value::dec(0))?;
                    out.set_value(mender::BOOTCOUNT, Value::hex(0))?;
                } else {
                    let limit = env
                        .get_raw(mender::BOOTLIMIT)
                        .and_then(parse_dec)
                        .unwrap_or(1);
                    let tries = u32::from(slot.tries_left);
                    out.set_value(mender::UPGRADE_AVAILABLE, Value::dec(1))?;
                    if tries <= limit {
                        out.set_value(mender::BOOTCOUNT, Value::hex(limit - tries))?;
                        if env.get_raw(mender::BOOTLIMIT).is_none() {
                            out.set_value(mender::BOOTLIMIT, Value::dec(limit))?;
                        }
                    } else {
                        out.set_value(mender::BOOTCOUNT, Value::hex(0))?;
                        out.set_value(mender::BOOTLIMIT, Value::dec(tries))?;
                    }
                }
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
}

#[cfg(test)]
mod test {
    use super::*;
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

    #[test]
    fn rauc_uboot_reads_hex_and_agrees_with_script() {
        let env = Pairs(Vec::from([
            ("BOOT_ORDER", b"B A".to_vec()),
            ("BOOT_A_LEFT", b"3".to_vec()),
            ("BOOT_B_LEFT", b"a".to_vec()),
        ]));
        let rauc = Scheme::Rauc(RaucConfig::default());
        let st = rauc.decode(Flavor::UBoot, &env).unwrap();
        assert_eq!(st.slot(Slot::B).tries_left, 10);
        assert_eq!(st.slot(Slot::B).priority, 2);
        let d = st.decide();
        assert_eq!(d.slot, Slot::B);
        assert_eq!(d.state.slot(Slot::B).tries_left, 9);
        // mark-good refills to max_tries as `rauc status mark-good` does
        let mut st = d.state;
        st.slot_mut(Slot::B).tries_left = 1;
        st.mark_good(Slot::B);
        let mut env = env;
        store(rauc, Flavor::UBoot, &mut env, &st);
        assert_eq!(env.get_raw("BOOT_B_LEFT"), Some(&b"3"[..]));
        assert_eq!(env.get_raw("BOOT_ORDER"), Some(&b"B A"[..]));
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
}
