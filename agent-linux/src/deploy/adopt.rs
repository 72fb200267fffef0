//! Adopting an environment that a RAUC or Mender bootloader already owns.
//!
//! On its very first boot such a bootloader writes its own variables (`BOOT_ORDER`,
//! `mender_boot_part`, ...), so the agent finds a boot state that names no deployment of its
//! own. The first `install` (or `deploy`, or `mark-good`) adopts it: it learns the booted slot
//! from the running system (the kernel command line: `ecu.slot=`, `rauc.slot=`, `root=`
//! mapped through `slot-a-root`/`slot-b-root`; or `--booted-slot`, never the run file) and
//! checks it against the bootloader's own variables, records the running system in that slot
//! under [`ADOPTED_NAME`] and goes on. When the two disagree, nothing is written.

use bootloader_hooks::{BootState, Flavor, Scheme, Slot};

use super::env::{self, EnvImage};
use super::parse_slot;
use crate::bootcfg::BootConfig;

/// The name recorded for the system that ran before the agent adopted the environment (it
/// is not a deployment directory of the agent: never removed, never verified, no commit).
pub const ADOPTED_NAME: &str = "adopted-system";

/// Whether a slot name is [`ADOPTED_NAME`].
pub fn is_adopted(name: &str) -> bool {
    name == ADOPTED_NAME
}

/// Whether a boot state names nothing in either slot: the bootloader's own state, which the
/// agent has not adopted yet.
pub fn unowned(state: &BootState) -> bool {
    Slot::ALL.iter().all(|s| state.slot(*s).name.is_empty())
}

/// RAUC's default `BOOT_x_LEFT` when the variable is missing (its `uboot.sh`).
const RAUC_DEFAULT_LEFT: &str = "3";

fn order_of(v: Option<&str>) -> Vec<Option<Slot>> {
    v.filter(|v| !v.trim().is_empty())
        .unwrap_or("A B")
        .split_whitespace()
        .map(parse_slot)
        .collect()
}

/// Whether a counter written by U-Boot (hex, maybe `0x`) or by hand is zero. Anything that is
/// not a number counts as non-zero (the script's `test` would not take it for 0 either).
fn is_zero(v: &str) -> bool {
    let v = v.trim();
    let v = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    !v.is_empty() && u64::from_str_radix(v, 16) == Ok(0)
}

/// Whether the bootloader's own variables allow that it booted `slot` at the last boot:
/// `Err` says which variable rules it out.
///
/// - Mender: it boots `mender_boot_part` (its rollback switches the variable before booting),
///   so that is the booted slot.
/// - RAUC, U-Boot: its script boots the first slot of `BOOT_ORDER` with `BOOT_x_LEFT` > 0
///   and counts only that slot down: the booted slot is listed, every slot before it has no
///   tries left.
/// - RAUC, GRUB: `grub.conf` boots the first slot of `ORDER` with `x_OK=1` and `x_TRY=0`:
///   the booted slot is listed, no slot before it is still bootable that way.
/// - Native: the variables do not record the booted slot; nothing to check.
pub fn bootloader_allows(cfg: &BootConfig, img: &EnvImage, slot: Slot) -> Result<(), String> {
    let get = |k: &str| img.get(k);
    match (cfg.scheme, env::flavor(cfg)) {
        (Scheme::Mender(m), _) => {
            let part = get("mender_boot_part").unwrap_or("");
            let said = match part.trim().parse::<u32>() {
                Ok(p) if p == u32::from(m.part_a) => Slot::A,
                Ok(p) if p == u32::from(m.part_b) => Slot::B,
                _ => {
                    return Err(format!(
                    "mender_boot_part={part} is neither mender-part-a ({}) nor mender-part-b ({})",
                    m.part_a, m.part_b
                ))
                }
            };
            if said == slot {
                Ok(())
            } else {
                Err(format!(
                    "the bootloader's mender_boot_part={part} says it booted slot {said} (mender-part-a = {}, mender-part-b = {})",
                    m.part_a, m.part_b
                ))
            }
        }
        (Scheme::Rauc(_), Flavor::UBoot) => {
            let raw = get("BOOT_ORDER").unwrap_or("A B");
            let order = order_of(get("BOOT_ORDER"));
            let Some(pos) = order.iter().position(|s| *s == Some(slot)) else {
                return Err(format!(
                    "BOOT_ORDER={raw:?} does not list slot {slot}, so RAUC's boot script cannot have booted it"
                ));
            };
            for y in order[..pos].iter().flatten() {
                let var = format!("BOOT_{y}_LEFT");
                let left = get(&var)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(RAUC_DEFAULT_LEFT);
                if !is_zero(left) {
                    return Err(format!(
                        "BOOT_ORDER={raw:?} puts slot {y} before slot {slot} and {var}={left} leaves it tries, so RAUC's boot script boots slot {y}"
                    ));
                }
            }
            Ok(())
        }
        (Scheme::Rauc(_), Flavor::Grub) => {
            let raw = get("ORDER").unwrap_or("A B");
            let order = order_of(get("ORDER"));
            let Some(pos) = order.iter().position(|s| *s == Some(slot)) else {
                return Err(format!(
                    "ORDER={raw:?} does not list slot {slot}, so RAUC's grub.conf cannot have booted it"
                ));
            };
            for y in order[..pos].iter().flatten() {
                let ok = get(&format!("{y}_OK")).unwrap_or("0").trim() == "1";
                let tried = get(&format!("{y}_TRY")).unwrap_or("0").trim() != "0";
                if ok && !tried {
                    return Err(format!(
                        "ORDER={raw:?} puts slot {y} before slot {slot} and {y}_OK=1, {y}_TRY=0 leave it bootable, so RAUC's grub.conf boots slot {y}"
                    ));
                }
            }
            Ok(())
        }
        (Scheme::Native, _) => Ok(()),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::path::Path;

    fn check(conf: &str, vars: &[(&str, &str)], slot: Slot) -> Result<(), String> {
        let cfg = BootConfig::parse(Path::new("/s"), Path::new("c"), conf).unwrap();
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let img = EnvImage {
            raw_vars: vars
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            loaded: env::Loaded {
                vars,
                current_copy: None,
            },
            grub_size: 0,
        };
        bootloader_allows(&cfg, &img, slot)
    }

    #[test]
    fn the_bootloaders_variables_say_which_slot_it_booted() {
        let m = "scheme = mender\n";
        let vars = [("mender_boot_part", "3"), ("upgrade_available", "0")];
        assert_eq!(check(m, &vars, Slot::B), Ok(()));
        let e = check(m, &vars, Slot::A).unwrap_err();
        assert!(
            e.contains("mender_boot_part=3 says it booted slot B"),
            "{e}"
        );
        assert!(check(m, &[("mender_boot_part", "7")], Slot::A).is_err());

        let r = "scheme = rauc\n";
        // First boot of RAUC's script: A counted down from 3.
        let first = [
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "2"),
            ("BOOT_B_LEFT", "3"),
        ];
        assert_eq!(check(r, &first, Slot::A), Ok(()));
        let e = check(r, &first, Slot::B).unwrap_err();
        assert!(e.contains("BOOT_A_LEFT=2 leaves it tries"), "{e}");
        // A used its tries: B booted.
        let fell = [
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "2"),
        ];
        assert_eq!(check(r, &fell, Slot::B), Ok(()));
        // Defaults of the script: A B, 3 each.
        assert!(check(r, &[("BOOT_A_LEFT", "2")], Slot::B).is_err());
        assert_eq!(check(r, &[("BOOT_ORDER", "B")], Slot::B), Ok(()));
        let e = check(r, &[("BOOT_ORDER", "B")], Slot::A).unwrap_err();
        assert!(e.contains("does not list slot A"), "{e}");

        let g = "backend = grub\nscheme = rauc\n";
        let tried = [
            ("ORDER", "A B"),
            ("A_OK", "1"),
            ("A_TRY", "1"),
            ("B_OK", "1"),
            ("B_TRY", "0"),
        ];
        assert_eq!(check(g, &tried, Slot::A), Ok(()));
        assert_eq!(check(g, &tried, Slot::B), Ok(()));
        let fresh = [("ORDER", "A B"), ("A_OK", "1"), ("A_TRY", "0")];
        assert_eq!(check(g, &fresh, Slot::A), Ok(()));
        let e = check(g, &fresh, Slot::B).unwrap_err();
        assert!(e.contains("A_OK=1, A_TRY=0 leave it bootable"), "{e}");

        assert_eq!(check("", &[], Slot::B), Ok(()));
    }
}
