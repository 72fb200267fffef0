//! The shipped GRUB snippet (`boot/grub/ecu-ab.cfg`) in real GRUB (grub-emu 2.06). The
//! grubenv lives in a FAT image mapped as (hd0); between boots it is copied out with mtools,
//! read and changed with this crate and grub-editenv, and copied back. Every boot's decision
//! printed by GRUB must equal `BootState::decide`, and the stored state must equal its result.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bootloader_hooks::{BootState, Operation, Scheme, Slot, SlotName};
use common::host::{Backend, BootEnv};
use common::*;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

struct Rig {
    dir: tempfile::TempDir,
    disk: PathBuf,
    local: PathBuf,
    env: BootEnv,
    boots: usize,
}

fn tools_present(test: &str) -> bool {
    ["grub-emu", "grub-editenv", "mkfs.vfat", "mcopy"]
        .iter()
        .all(|t| have(t, test))
}

const ECU_GRUB_CFG: &str = "set timeout=0\nset ecu_env=(hd0)/grubenv\nsource $prefix/ecu-ab.cfg\n\
                            echo \"ECU-BOOT: $ecu_boot default=$default\"\nhalt\n";

impl Rig {
    fn new(initial: &BootState) -> Rig {
        Rig::with(ECU_GRUB_CFG, Scheme::Native, initial)
    }

    /// A rig whose grub.cfg is `grub_cfg`, with the state in `scheme`.
    fn with(grub_cfg: &str, scheme: Scheme, initial: &BootState) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("grub")).unwrap();
        std::fs::copy(
            Path::new(CRATE).join("boot/grub/ecu-ab.cfg"),
            d.join("grub/ecu-ab.cfg"),
        )
        .unwrap();
        std::fs::write(d.join("grub/grub.cfg"), grub_cfg).unwrap();
        let disk = d.join("disk.img");
        fat_image(&disk, "GRUBENV", 4096);
        grub_device_map(d, &disk);
        let local = d.join("grubenv");
        let env = BootEnv::new(Backend::grub(&local), scheme);
        env.init(initial).unwrap();
        let rig = Rig {
            dir,
            disk,
            local,
            env,
            boots: 0,
        };
        rig.push();
        rig
    }

    /// Copies the local grubenv into the disk image.
    fn push(&self) {
        mcopy(&self.disk, &self.local, "::grubenv");
    }

    /// Copies the grubenv out of the disk image.
    fn pull(&self) {
        mcopy(&self.disk, "::grubenv", &self.local);
    }

    /// Changes the state between boots (pull, change, push).
    fn change(&self, f: impl FnOnce(&Rig)) {
        self.pull();
        f(self);
        self.push();
    }

    /// Applies `op` with the host API between boots and checks that it changed the state.
    fn apply(&self, op: Operation) {
        self.change(|r| assert!(r.env.apply(&op).unwrap().changed, "{op:?} changed nothing"));
    }

    fn boot_raw(&mut self) -> (Slot, String, bool) {
        let (line, log) = self.boot_line("ECU-DECISION:");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_string()
        };
        let slot = Slot::parse(&field("slot=")).unwrap();
        let booted = format!("ECU-BOOT: {slot} default=ecu-slot-{slot}");
        assert!(log.contains(&booted), "{booted} missing:\n{log}");
        (slot, field("kind="), field("changed=") == "1")
    }

    /// One boot in grub-emu: the line starting with `prefix`, and the whole log.
    fn boot_line(&mut self, prefix: &str) -> (String, String) {
        let d = self.dir.path();
        let log = grub_emu(d, "20", &["-d".as_ref(), d.join("grub").as_os_str()]);
        self.boots += 1;
        let line = log
            .lines()
            .find_map(|l| l.find(prefix).map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no {prefix} printed:\n{log}"))
            .to_string();
        (line, log)
    }

    fn boot(&mut self) -> Slot {
        self.pull();
        let before = self.env.load().unwrap();
        let raw_before = std::fs::read(&self.local).unwrap();
        let expected = before.decide();
        let (slot, kind, changed) = self.boot_raw();
        assert_eq!(slot, expected.slot, "slot, from {before:?}");
        let kind_expected = expected.kind.as_str();
        assert_eq!(kind, kind_expected);
        assert_eq!(changed, expected.changed);
        self.pull();
        assert_eq!(
            self.env.load().unwrap(),
            expected.state,
            "stored state after boot"
        );
        let raw_after = std::fs::read(&self.local).unwrap();
        if !expected.changed {
            assert_eq!(
                raw_after, raw_before,
                "a boot without change writes nothing"
            );
        }
        assert_eq!(raw_after.len(), 1024);
        slot
    }
}

fn name(s: &str) -> SlotName {
    SlotName::from_str(s).unwrap()
}

fn editenv(file: &Path, args: &[&str]) {
    run(Command::new("grub-editenv").arg(file).args(args));
}

#[test]
fn grub_snippet_scenario() {
    if !tools_present("grub_snippet_scenario") {
        return;
    }
    let t = Instant::now();
    let mut rig = Rig::new(&BootState::initial(Slot::A, name("base")));
    assert_eq!(rig.boot(), Slot::A);
    rig.apply(Operation::Stage {
        slot: Slot::B,
        tries: 9,
        name: name("new1"),
    });
    for _ in 0..9 {
        assert_eq!(rig.boot(), Slot::B);
    }
    assert_eq!(rig.boot(), Slot::A, "never marked good: rolled back");
    // staged by hand with grub-editenv, marked good with our crate
    rig.change(|r| {
        editenv(
            &r.local,
            &["set", "ECU_B_TRIES=2", "ECU_B_PRIO=2", "ECU_A_PRIO=1"],
        );
    });
    assert_eq!(rig.boot(), Slot::B);
    rig.apply(Operation::MarkGood { slot: Slot::B });
    assert_eq!(rig.boot(), Slot::B);
    assert_eq!(rig.boot(), Slot::B);
    // equal priorities: A first, in GRUB as in the decision
    rig.change(|r| {
        editenv(
            &r.local,
            &[
                "set",
                "ECU_A_PRIO=2",
                "ECU_A_OK=1",
                "ECU_B_PRIO=2",
                "ECU_B_OK=1",
            ],
        );
    });
    assert_eq!(rig.boot(), Slot::A);
    rig.change(|r| editenv(&r.local, &["set", "ECU_A_OK=0", "ECU_A_TRIES=1"]));
    assert_eq!(rig.boot(), Slot::A, "tie: A on trial still goes first");
    assert_eq!(rig.boot(), Slot::B);
    // a block GRUB cannot read: GRUB boots A as confirmed and writes nothing; we refuse to guess
    rig.change(|r| {
        let mut raw = std::fs::read(&r.local).unwrap();
        raw[0] = b'X';
        std::fs::write(&r.local, raw).unwrap();
    });
    let (slot, kind, changed) = rig.boot_raw();
    assert_eq!(
        (slot, kind.as_str(), changed),
        (Slot::A, "confirmed", false)
    );
    rig.pull();
    assert!(rig.env.load().is_err());
    assert_eq!(std::fs::read(&rig.local).unwrap()[0], b'X');
    eprintln!("{} boots in {:.2} s", rig.boots, t.elapsed().as_secs_f64());
}

#[test]
fn grub_snippet_random_sequences_agree() {
    if !tools_present("grub_snippet_random_sequences_agree") {
        return;
    }
    let t = Instant::now();
    for seed in [1u64, 2, 3, 4] {
        let mut rng = Rng::from_state(0x6AB0_0000 + seed);
        let mut rig = Rig::new(&BootState::initial(Slot::A, name("g0")));
        let mut booted = Slot::A;
        let mut n = 0;
        while rig.boots < 40 {
            n += 1;
            match rng.below(8) {
                0 | 1 => {
                    let slot = booted.other();
                    let tries = 1 + rng.below(9) as u8;
                    rig.change(|r| {
                        r.env.apply_checked(&Operation::Stage {
                            slot,
                            tries,
                            name: SlotName::from_str(&format!("g{n}")).unwrap(),
                        });
                    });
                }
                2 => rig.change(|r| {
                    r.env.apply_checked(&Operation::MarkGood { slot: booted });
                }),
                3 => rig.change(|r| {
                    r.env.apply_checked(&Operation::Rollback {
                        abandon: booted.other(),
                    });
                }),
                4 => {
                    let s = if rng.below(2) == 0 { "A" } else { "B" };
                    let k = ["TRIES", "PRIO", "OK"][rng.below(3) as usize];
                    let v = if k == "OK" {
                        rng.below(2)
                    } else {
                        rng.below(10)
                    };
                    rig.change(|r| editenv(&r.local, &["set", &format!("ECU_{s}_{k}={v}")]));
                }
                _ => booted = rig.boot(),
            }
        }
    }
    eprintln!("160 boots in {:.2} s", t.elapsed().as_secs_f64());
}
