//! RAUC's own `contrib/uboot.sh` (RAUC 1.8, Debian's `rauc` 1.8-2 source, fetched and checked
//! by `common::upstream`; the only change: the kernel load and `bootm` replaced by echoes) in
//! real U-Boot 2023.01 built from Debian's source for QEMU's `vexpress-a9` with its
//! environment on the SD card, redundant (`cargo xtask uboot`, cached per machine). The
//! script's own `saveenv` and `reset` run unchanged: the board's `bootcmd` loads `boot.scr`
//! from the SD card's FAT partition and sources it; QEMU runs with `-no-reboot`, so a `reset`
//! ends the run. A long boot sequence: every boot's slot (or the refill and reset) is compared
//! with the agent's prediction (`BootState::decide` on the state `Scheme::Rauc` decodes) and
//! every environment U-Boot wrote with what the agent reads back.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use bootloader_hooks::{
    BootRules, DecisionKind, Operation, RaucConfig, Scheme, Slot, SlotName, RAUC_UBOOT_REFILL,
};
use common::host::{Backend, BootEnv};
use common::*;

/// The SD card: 32 MiB (QEMU wants a power of two), the redundant environment at 4 MiB and
/// 6 MiB (`CONFIG_ENV_OFFSET`, `CONFIG_ENV_OFFSET_REDUND`, 128 KiB each), a FAT partition
/// from 8 MiB holding `boot.scr`.
const SD_SIZE: usize = 32 << 20;
const ENV_OFFSETS: [u64; 2] = [0x40_0000, 0x60_0000];
const ENV_SIZE: usize = 0x2_0000;
const PART_START: usize = 8 << 20;

struct Rig {
    dir: tempfile::TempDir,
    uboot: PathBuf,
    sd: PathBuf,
    env: BootEnv,
    cfg: PathBuf,
    runs: usize,
    checked: usize,
}

/// What one run of U-Boot did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// uboot.sh chose a slot and "booted" it.
    Boot(Slot),
    /// uboot.sh found no slot, refilled, saved and reset.
    Reset,
}

fn name(s: &str) -> SlotName {
    SlotName::from_str(s).unwrap()
}

/// An MBR with one FAT partition (type 0x0c) from `start` to the end of a `size`-byte disk.
fn mbr(size: usize, start: usize) -> Vec<u8> {
    let mut m = vec![0u8; 512];
    let (lba, n) = ((start / 512) as u32, ((size - start) / 512) as u32);
    m[446 + 4] = 0x0c;
    m[446 + 8..446 + 12].copy_from_slice(&lba.to_le_bytes());
    m[446 + 12..446 + 16].copy_from_slice(&n.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

impl Rig {
    fn new(test: &str) -> Option<Rig> {
        if ![
            "qemu-system-arm",
            "mkimage",
            "mkfs.vfat",
            "mcopy",
            "fw_printenv",
        ]
        .iter()
        .all(|t| have(t, test))
        {
            return None;
        }
        let uboot = uboot_vexpress(test)?;
        let script = upstream::rauc_uboot_sh(test)?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("uboot.sh"), script).unwrap();
        run(Command::new("mkimage")
            .args([
                "-A", "arm", "-O", "linux", "-T", "script", "-C", "none", "-n", "rauc", "-d",
            ])
            .arg(d.join("uboot.sh"))
            .arg(d.join("boot.scr")));
        let sd = d.join("sd.img");
        let mut img = mbr(SD_SIZE, PART_START);
        img.resize(SD_SIZE, 0);
        std::fs::write(&sd, img).unwrap();
        run(Command::new("mkfs.vfat")
            .arg(format!("--offset={}", PART_START / 512))
            .args(["-n", "BOOT"])
            .arg(&sd)
            .arg(((SD_SIZE - PART_START) / 1024).to_string()));
        mcopy(
            format!("{}@@{}", sd.display(), PART_START),
            d.join("boot.scr"),
            "::boot.scr",
        );
        let env = BootEnv::new(
            Backend::uboot_redundant(&sd, ENV_OFFSETS[0], &sd, ENV_OFFSETS[1], ENV_SIZE),
            Scheme::Rauc(RaucConfig::default()),
        );
        let cfg = d.join("fw_env.config");
        std::fs::write(
            &cfg,
            format!(
                "{0} {1:#x} {3:#x}\n{0} {2:#x} {3:#x}\n",
                sd.display(),
                ENV_OFFSETS[0],
                ENV_OFFSETS[1],
                ENV_SIZE
            ),
        )
        .unwrap();
        Some(Rig {
            dir,
            uboot,
            sd,
            env,
            cfg,
            runs: 0,
            checked: 0,
        })
    }

    /// One run of U-Boot from power-on to the script's end (`reset` ends QEMU).
    fn run_uboot(&mut self) -> Run {
        let t = Instant::now();
        let out = run(Command::new("timeout")
            .args(["60", "qemu-system-arm", "-M", "vexpress-a9", "-m", "256M"])
            .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
            .arg(&self.uboot)
            .arg("-sd")
            .arg(&self.sd)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null()));
        self.runs += 1;
        let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let booted = log.lines().find_map(|l| l.strip_prefix("RAUC-BOOT: "));
        let reset = log.contains("No valid slot found, resetting tries to 3");
        let r = match (booted, reset) {
            (Some(args), false) => {
                let slot = args
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("rauc.slot="))
                    .and_then(Slot::parse)
                    .unwrap_or_else(|| panic!("no rauc.slot= in {args:?}"));
                Run::Boot(slot)
            }
            (None, true) => Run::Reset,
            _ => panic!("run {}: neither one boot nor a reset:\n{log}", self.runs),
        };
        assert!(
            log.contains("Saving Environment to MMC") && log.contains("OK"),
            "run {}: the script saves on every run:\n{log}",
            self.runs
        );
        eprintln!(
            "run {}: {r:?} ({:.1} s)",
            self.runs,
            t.elapsed().as_secs_f64()
        );
        r
    }

    /// One boot, checked against the prediction: a trial boot takes the predicted slot and
    /// leaves the predicted state; a refill is a run that resets, leaving both counters at 3,
    /// then a run that boots the predicted slot and leaves the predicted state.
    fn boot(&mut self) -> Slot {
        let before = self.env.load().unwrap();
        assert!(matches!(before.rules, BootRules::RaucUBoot { full: 3 }));
        let d = before.decide();
        assert!(d.changed, "uboot.sh writes on every boot");
        match d.kind {
            DecisionKind::Trial => {}
            DecisionKind::Refill => {
                assert_eq!(self.run_uboot(), Run::Reset, "from {before:?}");
                let refilled = self.env.load().unwrap();
                for s in Slot::ALL {
                    assert_eq!(refilled.slot(s).tries_left, RAUC_UBOOT_REFILL);
                    assert_eq!(refilled.slot(s).priority, before.slot(s).priority);
                }
                let again = refilled.decide();
                assert_eq!((again.slot, again.state), (d.slot, d.state));
            }
            k => panic!("RAUC's U-Boot rules never decide {k:?}"),
        }
        assert_eq!(self.run_uboot(), Run::Boot(d.slot), "from {before:?}");
        let after = self.env.load().unwrap();
        assert_eq!(after, d.state, "run {}: the env U-Boot wrote", self.runs);
        // libubootenv reads what U-Boot wrote too
        assert!(fw_printenv(&self.cfg)
            .iter()
            .any(|(k, _)| k == "BOOT_ORDER"));
        self.checked += 1;
        d.slot
    }

    /// The agent changes the environment between boots (the same encoders as
    /// `agent_linux::deploy::env`); the operation must change something.
    fn agent(&self, op: Operation) {
        assert!(
            self.env.apply(&op).unwrap().changed,
            "{op:?} changed nothing"
        );
    }

    fn get(&self, k: &str) -> Option<String> {
        fw_printenv(&self.cfg)
            .into_iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v)
    }
}

/// The U-Boot ELF: `$ECU_RAUC_UBOOT`, else the one `cargo xtask uboot` cached (missing: SKIP,
/// or a failure under `CI=true`; `cargo xtask test` builds it first).
fn uboot_vexpress(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("ECU_RAUC_UBOOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| uboot_cache::VEXPRESS.path());
    have_file(path.to_str().expect("a UTF-8 path"), test).then_some(path)
}

#[path = "../../xtask/src/uboot_key.rs"]
#[allow(dead_code)]
mod uboot_cache;

#[test]
fn rauc_uboot_sh_long_sequence() {
    let t = Instant::now();
    let Some(mut rig) = Rig::new("rauc_uboot_sh_long_sequence") else {
        return;
    };
    // first boot on a blank environment: U-Boot's default env, uboot.sh's defaults
    // ("A B", 3 and 3), A counted and the whole env saved by U-Boot itself
    assert!(
        rig.env.load().is_err(),
        "a blank env: the agent refuses to guess"
    );
    assert_eq!(rig.run_uboot(), Run::Boot(Slot::A));
    assert_eq!(rig.get("BOOT_ORDER").as_deref(), Some("A B"));
    assert_eq!(rig.get("BOOT_A_LEFT").as_deref(), Some("2"));
    assert_eq!(rig.get("BOOT_B_LEFT").as_deref(), Some("3"));
    assert!(
        rig.get("bootcmd").is_some(),
        "the board's variables are kept"
    );
    let st = rig.env.load().unwrap();
    assert!(!st.slot(Slot::A).successful, "booted, not marked good");
    assert!(st.slot(Slot::B).successful, "B: in the order with 3 tries");
    assert_eq!(rig.boot(), Slot::A);
    // mark-good (what `rauc status mark-good` does): the counter refilled, A good
    rig.agent(Operation::MarkGood { slot: Slot::A });
    assert_eq!(rig.get("BOOT_A_LEFT").as_deref(), Some("3"));
    assert!(rig.env.load().unwrap().slot(Slot::A).successful);
    // a good slot still counts every boot
    assert_eq!(rig.boot(), Slot::A);
    rig.agent(Operation::MarkGood { slot: Slot::A });
    // update: B staged, tried three times, never marked good
    rig.agent(Operation::Stage {
        slot: Slot::B,
        tries: 3,
        name: name("u1"),
    });
    assert_eq!(rig.get("BOOT_ORDER").as_deref(), Some("B A"));
    for _ in 0..3 {
        assert_eq!(rig.boot(), Slot::B);
    }
    // fallback: A, whose counter then runs out too (nothing marks it good)
    for _ in 0..3 {
        assert_eq!(rig.boot(), Slot::A);
    }
    // both at 0: uboot.sh refills both to 3, saves, resets; then B again
    assert_eq!(rig.env.load().unwrap().decide().kind, DecisionKind::Refill);
    assert_eq!(rig.boot(), Slot::B);
    // marked good this time: case 3, the booted slot is good and the next update goes on
    rig.agent(Operation::MarkGood { slot: Slot::B });
    assert!(rig.env.load().unwrap().slot(Slot::B).successful);
    rig.agent(Operation::Stage {
        slot: Slot::A,
        tries: 3,
        name: name("u2"),
    });
    assert_eq!(rig.boot(), Slot::A);
    rig.agent(Operation::MarkGood { slot: Slot::A });
    assert_eq!(rig.boot(), Slot::A);
    rig.agent(Operation::MarkGood { slot: Slot::A });
    // rollback to B: A leaves BOOT_ORDER with no tries (RAUC's mark-bad)
    rig.agent(Operation::Rollback { abandon: Slot::A });
    assert_eq!(rig.get("BOOT_ORDER").as_deref(), Some("B"));
    assert_eq!(rig.get("BOOT_A_LEFT").as_deref(), Some("0"));
    assert_eq!(rig.boot(), Slot::B);
    rig.agent(Operation::MarkGood { slot: Slot::B });
    // a never-confirmed update: A three times, then back to B
    rig.agent(Operation::Stage {
        slot: Slot::A,
        tries: 3,
        name: name("u3"),
    });
    for _ in 0..3 {
        assert_eq!(rig.boot(), Slot::A);
    }
    assert_eq!(rig.boot(), Slot::B);
    rig.agent(Operation::MarkGood { slot: Slot::B });
    // counters past nine: RAUC with boot-attempts=25 writes "19" (%x); the script reads it
    // with `test` (19 > 0) and counts it down with setexpr (hex), so B boots ten times, not
    // 25, and then A, whose "a" (as RAUC writes 10) the script never boots at all
    fw_setenv(&rig.cfg, &[("BOOT_B_LEFT", "19"), ("BOOT_A_LEFT", "a")]);
    let st = rig.env.load().unwrap();
    assert_eq!(st.slot(Slot::B).tries_left, 10);
    assert_eq!(st.slot(Slot::A).tries_left, 0);
    for _ in 0..10 {
        assert_eq!(rig.boot(), Slot::B);
    }
    assert_eq!(rig.get("BOOT_B_LEFT").as_deref(), Some("f"));
    // B ("f") and A ("a") read as 0: refill, then B
    assert_eq!(rig.boot(), Slot::B);
    assert_eq!(rig.get("BOOT_A_LEFT").as_deref(), Some("3"));
    eprintln!(
        "{} U-Boot runs, {} boots compared with the prediction, 0 mismatches, {:.1} s",
        rig.runs,
        rig.checked,
        t.elapsed().as_secs_f64()
    );
}
