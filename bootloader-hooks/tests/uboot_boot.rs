//! The shipped U-Boot script (`boot/uboot/boot.cmd`, built with mkimage) in real U-Boot
//! (Debian u-boot-qemu, qemu-system-arm -machine virt). Between boots the state is read and
//! changed with this crate and with fw_printenv/fw_setenv; every boot's decision printed by
//! U-Boot must equal `BootState::decide`, and the stored state must equal its result.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bootloader_hooks::{BootState, DecisionKind, Operation, Scheme, Slot, SlotName};
use common::host::{Backend, BootEnv};
use common::*;

const UBOOT: &str = "/usr/lib/u-boot/qemu_arm/u-boot.bin";
const SIZE: usize = 0x4000;
const CRATE: &str = env!("CARGO_MANIFEST_DIR");

struct Rig {
    dir: tempfile::TempDir,
    copies: [PathBuf; 2],
    env: BootEnv,
    cfg: PathBuf,
    boots: usize,
}

fn tools_present(test: &str) -> bool {
    [
        "qemu-system-arm",
        "mkimage",
        "mkenvimage",
        "mkfs.vfat",
        "mcopy",
        "fw_printenv",
    ]
    .iter()
    .all(|t| have(t, test))
        && have_file(UBOOT, test)
}

const NATIVE_VARS: &str =
    "ECU_A_PRIO ECU_A_TRIES ECU_A_OK ECU_A_NAME ECU_B_PRIO ECU_B_TRIES ECU_B_OK ECU_B_NAME ECU_REV";

impl Rig {
    fn new(initial: &BootState) -> Rig {
        Rig::with(
            &Path::new(CRATE).join("boot/uboot/boot.cmd"),
            Scheme::Native,
            NATIVE_VARS,
            initial,
        )
    }

    /// A rig running `script` as boot.scr, with the state env holding `vars` in `scheme`.
    fn with(script: &Path, scheme: Scheme, vars: &str, initial: &BootState) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(Command::new("mkimage")
            .args([
                "-A", "arm", "-O", "linux", "-T", "script", "-C", "none", "-n", "ecu-ab", "-d",
            ])
            .arg(script)
            .arg(d.join("boot.scr")));
        fat_image(&d.join("bootfs.img"), "BOOT", 8192);
        mcopy(d.join("bootfs.img"), d.join("boot.scr"), "::boot.scr");
        let flashenv: String =
            std::fs::read_to_string(Path::new(CRATE).join("boot/uboot/qemu-virtio-state.env"))
                .unwrap()
                .lines()
                .map(|l| {
                    if l.starts_with("ecu_vars=") {
                        format!("ecu_vars={vars}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
        std::fs::write(d.join("flashenv.txt"), flashenv).unwrap();
        run(Command::new("mkenvimage")
            .args(["-s", "0x40000", "-o"])
            .arg(d.join("flashenv.bin"))
            .arg(d.join("flashenv.txt")));
        let mut flash = std::fs::read(d.join("flashenv.bin")).unwrap();
        flash.resize(64 << 20, 0);
        std::fs::write(d.join("flash1.img"), flash).unwrap();
        let copies = [d.join("c0.img"), d.join("c1.img")];
        let env = BootEnv::new(
            Backend::uboot_redundant(&copies[0], 0, &copies[1], 0, SIZE),
            scheme,
        );
        env.init(initial).unwrap();
        let cfg = fw_config_redundant(d, &copies[0], &copies[1], SIZE);
        Rig {
            dir,
            copies,
            env,
            cfg,
            boots: 0,
        }
    }

    fn raw(&self) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(&self.copies[0]).unwrap(),
            std::fs::read(&self.copies[1]).unwrap(),
        )
    }

    /// One boot in U-Boot: returns (slot, kind, changed) as printed.
    fn boot_raw(&mut self) -> (Slot, String, bool) {
        let line = self.boot_line("ECU-DECISION:");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_string()
        };
        (
            Slot::parse(&field("slot=")).unwrap(),
            field("kind="),
            field("changed=") == "1",
        )
    }

    /// One boot in U-Boot: returns the line starting with `prefix`.
    fn boot_line(&mut self, prefix: &str) -> String {
        let d = self.dir.path();
        let drive = |id: &str, f: &Path| {
            [
                "-drive".to_string(),
                format!("if=none,id={id},format=raw,file={}", f.display()),
                "-device".to_string(),
                format!("virtio-blk-device,drive={id}"),
            ]
        };
        let t = Instant::now();
        // U-Boot numbers virtio devices in reverse order: boot = 0, c0 = 1, c1 = 2.
        let out = run(Command::new("timeout")
            .args([
                "60",
                "qemu-system-arm",
                "-machine",
                "virt",
                "-cpu",
                "cortex-a15",
                "-m",
                "256M",
            ])
            // No network: the virt board's default NIC needs an option ROM (efi-virtio.rom) that
            // qemu-system-arm only recommends, and U-Boot boots from the virtio disks here.
            .args(["-nographic", "-no-reboot", "-nic", "none", "-bios", UBOOT])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,index=1,file={}",
                d.join("flash1.img").display()
            ))
            .args(drive("c1", &self.copies[1]))
            .args(drive("c0", &self.copies[0]))
            .args(drive("boot", &d.join("bootfs.img")))
            .stdin(std::process::Stdio::null()));
        self.boots += 1;
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = log
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} printed:\n{log}"))
            .to_string();
        if prefix == "ECU-DECISION:" {
            let slot = line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .trim_start_matches("slot=");
            let booted = format!("ECU-BOOT: {slot}");
            assert!(log.contains(&booted), "{booted} missing:\n{log}");
        }
        eprintln!(
            "boot {}: {line} ({:.2} s)",
            self.boots,
            t.elapsed().as_secs_f64()
        );
        line
    }

    /// Boots once and checks U-Boot against the decision function; returns the booted slot.
    fn boot(&mut self) -> Slot {
        let before = self.env.load().unwrap();
        let expected = before.decide();
        let raw_before = self.raw();
        let (slot, kind, changed) = self.boot_raw();
        assert_eq!(slot, expected.slot, "slot, from {before:?}");
        let kind_expected = expected.kind.as_str();
        assert_eq!(kind, kind_expected);
        assert_eq!(changed, expected.changed);
        let after = self.env.load().unwrap();
        assert_eq!(after, expected.state, "stored state after boot");
        if !expected.changed {
            assert_eq!(
                self.raw(),
                raw_before,
                "a boot without change writes nothing"
            );
        }
        // fw_printenv reads what U-Boot wrote
        let listed = fw_printenv(&self.cfg);
        let get = |k: &str| {
            listed
                .iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v.clone())
        };
        for s in Slot::ALL {
            let st = after.slot(s);
            assert_eq!(
                get(&format!("ECU_{s}_TRIES")),
                Some(format!("{:x}", st.tries_left))
            );
            assert_eq!(
                get(&format!("ECU_{s}_PRIO")),
                Some(format!("{:x}", st.priority))
            );
        }
        slot
    }

    /// Applies `op` to the environment; whether it changed anything.
    fn changes(&self, op: Operation) -> bool {
        self.env.apply(&op).unwrap().changed
    }

    fn corrupt_current(&self) -> usize {
        let (a, b) = self.raw();
        let (cur, _) = bootloader_hooks::uboot_env::parse_redundant(&a, &b).unwrap();
        let mut raw = std::fs::read(&self.copies[cur]).unwrap();
        raw[20] ^= 0xA5;
        std::fs::write(&self.copies[cur], raw).unwrap();
        cur
    }
}

/// Staging `slot` with `tries` boots to try and the name `n`.
fn stage(slot: Slot, tries: u8, n: &str) -> Operation {
    Operation::Stage {
        slot,
        tries,
        name: name(n),
    }
}

fn name(s: &str) -> SlotName {
    SlotName::from_str(s).unwrap()
}

#[test]
fn uboot_script_scenario() {
    if !tools_present("uboot_script_scenario") {
        return;
    }
    let t = Instant::now();
    let mut rig = Rig::new(&BootState::initial(Slot::A, name("base")));
    // a confirmed slot reboots without a write
    assert_eq!(rig.boot(), Slot::A);
    // staged with our crate: B tried exactly 3 times, then back to A
    assert!(rig.changes(stage(Slot::B, 3, "new1")));
    for _ in 0..3 {
        assert_eq!(rig.boot(), Slot::B);
    }
    assert_eq!(rig.env.load().unwrap().slot(Slot::B).tries_left, 0);
    assert_eq!(rig.boot(), Slot::A, "never marked good: rolled back");
    assert_eq!(rig.boot(), Slot::A);
    // staged by hand with fw_setenv (hex values), marked good with our crate: B stays
    fw_setenv(
        &rig.cfg,
        &[
            ("ECU_B_TRIES", "2"),
            ("ECU_B_PRIO", "2"),
            ("ECU_A_PRIO", "1"),
            ("ECU_B_NAME", "new2"),
        ],
    );
    assert_eq!(rig.boot(), Slot::B);
    assert!(rig.changes(Operation::MarkGood { slot: Slot::B }));
    assert_eq!(rig.boot(), Slot::B);
    assert_eq!(rig.boot(), Slot::B);
    // a corrupted copy is survived: stage A, corrupt the newest copy, U-Boot and we both use
    // the older one (B confirmed)
    assert!(rig.changes(stage(Slot::A, 2, "new3")));
    rig.corrupt_current();
    assert!(rig.env.load().unwrap().slot(Slot::B).successful);
    assert_eq!(rig.boot(), Slot::B);
    // stage again (the write replaces the corrupted copy) and U-Boot tries A
    assert!(rig.changes(stage(Slot::A, 1, "new4")));
    assert_eq!(rig.boot(), Slot::A);
    assert_eq!(rig.boot(), Slot::B, "A used its only try");
    // equal priorities: A first, in U-Boot as in the decision
    fw_setenv(
        &rig.cfg,
        &[
            ("ECU_A_PRIO", "2"),
            ("ECU_A_OK", "0"),
            ("ECU_A_TRIES", "1"),
            ("ECU_B_PRIO", "2"),
        ],
    );
    assert_eq!(rig.boot(), Slot::A);
    assert_eq!(rig.boot(), Slot::B);
    // nothing bootable: the second slot in order boots as a last resort, nothing written
    fw_setenv(&rig.cfg, &[("ECU_B_OK", "0"), ("ECU_B_TRIES", "0")]);
    assert_eq!(
        rig.env.load().unwrap().decide().kind,
        DecisionKind::LastResort
    );
    assert_eq!(rig.boot(), Slot::B);
    eprintln!("{} boots in {:.1} s", rig.boots, t.elapsed().as_secs_f64());
}

#[test]
fn uboot_script_random_sequences_agree() {
    if !tools_present("uboot_script_random_sequences_agree") {
        return;
    }
    let t = Instant::now();
    let mut rng = Rng::from_state(0x5EED_0001);
    let mut rig = Rig::new(&BootState::initial(Slot::A, name("r0")));
    let mut booted = Slot::A;
    let mut n = 0;
    while rig.boots < 20 {
        n += 1;
        match rng.below(8) {
            0 | 1 => {
                let slot = booted.other();
                let tries = 1 + rng.below(4) as u8;
                rig.env.apply_checked(&Operation::Stage {
                    slot,
                    tries,
                    name: SlotName::from_str(&format!("r{n}")).unwrap(),
                });
            }
            2 => {
                rig.env.apply_checked(&Operation::MarkGood { slot: booted });
            }
            3 => {
                rig.env.apply_checked(&Operation::Rollback {
                    abandon: booted.other(),
                });
            }
            4 => {
                // change tries with fw_setenv (a digit, as the agent of another vendor might)
                let s = if rng.below(2) == 0 { "A" } else { "B" };
                let v = rng.below(10).to_string();
                fw_setenv(&rig.cfg, &[(&format!("ECU_{s}_TRIES"), &v)]);
            }
            5 if rng.below(3) == 0 => {
                // only while both copies are valid, so one always survives
                let (a, b) = rig.raw();
                let valid = |c: &[u8]| {
                    bootloader_hooks::uboot_env::Env::parse(
                        c,
                        bootloader_hooks::uboot_env::Layout::Redundant,
                    )
                    .is_ok()
                };
                if valid(&a) && valid(&b) {
                    rig.corrupt_current();
                }
            }
            _ => booted = rig.boot(),
        }
    }
    eprintln!(
        "{} boots, {n} steps in {:.1} s",
        rig.boots,
        t.elapsed().as_secs_f64()
    );
}

fn field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .to_string()
}

/// Mender's U-Boot behaviour (fixture) against the decision on the Mender scheme.
#[test]
fn mender_uboot_script_agrees() {
    if !tools_present("mender_uboot_script_agrees") {
        return;
    }
    let mender = Scheme::Mender(Default::default());
    let mut rig = Rig::with(
        &Path::new(CRATE).join("tests/fixtures/mender-uboot.cmd"),
        mender,
        "mender_boot_part mender_boot_part_hex upgrade_available bootcount bootlimit ECU_A_NAME ECU_B_NAME ECU_REV",
        &BootState::initial(Slot::A, name("base")),
    );
    let boot = |rig: &mut Rig| {
        let before = rig.env.load().unwrap();
        let expected = before.decide();
        let line = rig.boot_line("MENDER-DECISION:");
        assert_eq!(field(&line, "slot="), expected.slot.as_str(), "{before:?}");
        let after = rig.env.load().unwrap();
        match field(&line, "action=").as_str() {
            "counted" | "normal" => assert_eq!(after, expected.state, "after {line}"),
            _ => assert_eq!(after.decide().slot, expected.slot, "after {line}"),
        }
        expected.slot
    };
    assert_eq!(boot(&mut rig), Slot::A);
    assert!(rig.changes(stage(Slot::B, 2, "mb")));
    assert_eq!(boot(&mut rig), Slot::B);
    assert_eq!(boot(&mut rig), Slot::B);
    assert_eq!(boot(&mut rig), Slot::A, "bootcount > bootlimit: altbootcmd");
    assert_eq!(boot(&mut rig), Slot::A);
    assert!(rig.changes(stage(Slot::B, 1, "mb2")));
    assert_eq!(boot(&mut rig), Slot::B);
    assert!(rig.changes(Operation::MarkGood { slot: Slot::B }));
    assert_eq!(boot(&mut rig), Slot::B);
    assert_eq!(boot(&mut rig), Slot::B);
}
