//! Mender on U-Boot with U-Boot's own boot counter: a U-Boot built from Debian's source package
//! with `CONFIG_BOOTCOUNT_LIMIT` and `CONFIG_BOOTCOUNT_ENV` (`cargo xtask uboot`, cached per
//! machine), booted in `qemu-system-arm -M vexpress-a9` with its redundant environment on the
//! SD card (the build the RAUC test boots too). U-Boot itself counts `bootcount` (decimal, only while
//! `upgrade_available` is not 0), saves it, and runs `altbootcmd` once `bootcount > bootlimit`.
//! `altbootcmd` switches `mender_boot_part`, clears `upgrade_available` and saves (what
//! meta-mender's `mender_altbootcmd` does); `bootcmd` prints the partition instead of booting a
//! kernel. Before every boot the agent's prediction (`Scheme::boot`) is taken; after it, the
//! slot U-Boot chose, whether it wrote, every Mender variable it stored (read back with
//! `fw_printenv` and with this crate) and the decoded state must equal the prediction.

mod common;

#[path = "../../xtask/src/uboot_key.rs"]
#[allow(dead_code)]
mod uboot_key;

use std::path::PathBuf;
use std::process::Command;

use bootloader_hooks::uboot_env;
use bootloader_hooks::{
    BootState, DecisionKind, EnvRead, Flavor, MenderConfig, Operation, Scheme, Slot, SlotName,
};
use common::host::{Backend, BootEnv};
use common::*;

/// One environment copy (`CONFIG_ENV_SIZE`).
const SIZE: usize = 0x2_0000;
/// The copies on the SD card (`CONFIG_ENV_OFFSET`, `CONFIG_ENV_OFFSET_REDUND`).
const OFFSETS: [usize; 2] = [0x40_0000, 0x60_0000];
/// The SD card: 32 MiB (QEMU wants a power of two).
const SD_SIZE: usize = 32 << 20;

const MENDER: Scheme = Scheme::Mender(MenderConfig {
    part_a: 2,
    part_b: 3,
});

/// The variables compared after every boot (Mender's and ours).
const VARS: [&str; 8] = [
    "mender_boot_part",
    "mender_boot_part_hex",
    "upgrade_available",
    "bootcount",
    "bootlimit",
    "ECU_INACTIVE",
    "ECU_A_NAME",
    "ECU_B_NAME",
];

/// The board's environment: no kernel, `bootcmd` prints what it would boot (QEMU runs with
/// `-no-reboot`, so the `reset` ends the run).
fn board_vars(bootlimit: &str) -> Vec<(String, String)> {
    let echo = "echo \"MENDER-BOOT: part=${mender_boot_part}\"; reset";
    [
        ("bootdelay", "0"),
        ("bootlimit", bootlimit),
        ("bootcount", "0"),
        ("upgrade_available", "0"),
        ("mender_boot_part", "2"),
        ("mender_boot_part_hex", "2"),
        ("bootcmd", echo),
        (
            "altbootcmd",
            "if test ${mender_boot_part} = 2; then setenv mender_boot_part 3; setenv mender_boot_part_hex 3; else setenv mender_boot_part 2; setenv mender_boot_part_hex 2; fi; setenv upgrade_available 0; saveenv; run bootcmd",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The vexpress-a9 U-Boot with the boot counter, or `None` (SKIP; a failure under `CI=true`) when it is not built.
fn uboot(test: &str) -> Option<PathBuf> {
    let tools = ["qemu-system-arm", "mkenvimage", "fw_printenv"];
    if !tools.iter().all(|t| have(t, test)) {
        return None;
    }
    let bin = uboot_key::VEXPRESS.path();
    if !bin.is_file() {
        test_support::tool::skip(
            test,
            &format!(
                "{} is not built; `cargo xtask uboot` (or `cargo xtask test`) builds it once",
                bin.display()
            ),
        );
        return None;
    }
    Some(bin)
}

struct Rig {
    _dir: tempfile::TempDir,
    uboot: PathBuf,
    sd: PathBuf,
    fw_cfg: PathBuf,
    env: BootEnv,
    boots: usize,
}

/// The environment's variables as stored.
struct Vars(Vec<(String, String)>);

impl EnvRead for Vars {
    fn get_raw(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_bytes())
    }
}

impl Rig {
    fn new(uboot: PathBuf, bootlimit: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sd = d.join("sd.img");
        let vars = board_vars(bootlimit);
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let copy = d.join("copy.img");
        mkenvimage(d, &copy, SIZE, true, None, &pairs);
        let img = std::fs::read(&copy).unwrap();
        let mut card = vec![0u8; SD_SIZE];
        for off in OFFSETS {
            card[off..off + SIZE].copy_from_slice(&img);
        }
        std::fs::write(&sd, &card).unwrap();
        let fw_cfg = d.join("fw_env.config");
        std::fs::write(
            &fw_cfg,
            format!(
                "{0} {1:#x} {SIZE:#x}\n{0} {2:#x} {SIZE:#x}\n",
                sd.display(),
                OFFSETS[0],
                OFFSETS[1]
            ),
        )
        .unwrap();
        let env = BootEnv::new(
            Backend::uboot_redundant(&sd, OFFSETS[0] as u64, &sd, OFFSETS[1] as u64, SIZE),
            MENDER,
        );
        Rig {
            _dir: dir,
            uboot,
            sd,
            fw_cfg,
            env,
            boots: 0,
        }
    }

    fn vars(&self) -> Vars {
        let [a, b] = self.copies();
        let (_, env) = uboot_env::parse_redundant(&a, &b).unwrap();
        Vars(
            env.vars()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect(),
        )
    }

    /// Both environment copies as stored, flag bytes included (`env/mmc.c` writes a copy only
    /// in `saveenv`, with its flag counted up).
    fn copies(&self) -> [Vec<u8>; 2] {
        let b = std::fs::read(&self.sd).unwrap();
        OFFSETS.map(|off| b[off..off + SIZE].to_vec())
    }

    /// Boots U-Boot once and checks it against the prediction; returns the slot and kind.
    fn boot(&mut self) -> (Slot, DecisionKind) {
        let before = self.vars();
        let predicted = MENDER.boot(Flavor::UBoot, &before).unwrap();
        let stored = self.copies();
        let start = std::time::Instant::now();
        let out = Command::new("timeout")
            .args(["60", "qemu-system-arm", "-M", "vexpress-a9", "-m", "256M"])
            .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
            .arg(&self.uboot)
            .arg("-sd")
            .arg(&self.sd)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        self.boots += 1;
        eprintln!(
            "boot {}: {:.1} s",
            self.boots,
            start.elapsed().as_secs_f64()
        );
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let line = text
            .lines()
            .find(|l| l.starts_with("MENDER-BOOT:"))
            .unwrap_or_else(|| panic!("boot {}: no MENDER-BOOT line:\n{text}", self.boots));
        let part = line.trim_start_matches("MENDER-BOOT: part=").trim();
        let slot = match part {
            "2" => Slot::A,
            "3" => Slot::B,
            p => panic!("boot {}: U-Boot booted partition {p:?}", self.boots),
        };
        let d = &predicted.decision;
        let ctx = format!(
            "boot {} from {:?}:\n{text}",
            self.boots,
            VARS.map(|k| (k, before.get_raw(k).map(String::from_utf8_lossy)))
        );
        assert_eq!(slot, d.slot, "slot, {ctx}");
        assert_eq!(
            text.contains("Bootlimit (") && text.contains("exceeded. Using altbootcmd"),
            d.kind == DecisionKind::Rollback,
            "altbootcmd, {ctx}"
        );
        assert_eq!(
            self.copies() != stored,
            d.changed,
            "whether U-Boot saved, {ctx}"
        );
        // (A rollback saves twice: the count, then altbootcmd's saveenv.)
        assert_eq!(
            text.contains("Saving Environment to MMC"),
            d.changed,
            "saveenv runs when the prediction writes, {ctx}"
        );
        // Every compared variable as predicted: before, with the writes on top.
        let after = self.vars();
        for k in VARS {
            let want = match predicted.writes.lookup(k.as_bytes()) {
                Some(v) => v,
                None => before.get_raw(k),
            };
            assert_eq!(after.get_raw(k), want, "{k}, {ctx}");
        }
        // The same through libubootenv's fw_printenv, and the state the agent reads back.
        let fw = fw_printenv(&self.fw_cfg);
        for k in ["bootcount", "mender_boot_part", "upgrade_available"] {
            let fw_value = fw.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_bytes());
            assert_eq!(fw_value, after.get_raw(k), "fw_printenv {k}, {ctx}");
        }
        assert_eq!(self.env.load().unwrap(), d.state, "decoded state, {ctx}");
        (slot, d.kind)
    }

    /// Changes the state as the agent does, written by this crate's redundant writer into the
    /// copy that is not current with the flag counted up, as `env/mmc.c` expects.
    fn apply(&self, op: Operation) {
        assert!(self.env.apply(&op).unwrap().changed, "{op:?}");
    }

    fn store(&self, state: BootState) {
        self.env.store(&state).unwrap();
    }

    fn bootcount(&self) -> String {
        String::from_utf8_lossy(self.vars().get_raw("bootcount").unwrap()).into_owned()
    }
}

fn name(s: &str) -> SlotName {
    SlotName::from_str(s).unwrap()
}

/// A sequence with `bootlimit=12`: first boot, update, trial boots with counters past nine
/// (decimal), fallback by `altbootcmd`, the next update marked good (no rollback reported, the
/// previous system a fallback), a rollback by the agent; every boot compared with the
/// prediction.
#[test]
fn uboot_bootcount_past_nine_agrees_with_the_prediction() {
    let Some(bin) = uboot("uboot_bootcount_past_nine_agrees_with_the_prediction") else {
        return;
    };
    let mut rig = Rig::new(bin, "12");
    use DecisionKind::*;
    // First boot of Mender's default environment: A, nothing counted, nothing written.
    assert_eq!(rig.boot(), (Slot::A, Confirmed));
    // The agent records the running system, then stages B with 3 tries: bootcount = 12 - 3.
    rig.store(BootState::initial(Slot::A, name("base.0")));
    assert_eq!(rig.boot(), (Slot::A, Confirmed));
    rig.apply(Operation::Stage {
        slot: Slot::B,
        tries: 3,
        name: name("v1.0"),
    });
    assert_eq!(rig.bootcount(), "9");
    for count in ["10", "11", "12"] {
        assert_eq!(rig.boot(), (Slot::B, Trial));
        assert_eq!(rig.bootcount(), count, "U-Boot writes decimal");
    }
    // 13 > 12: altbootcmd.
    assert_eq!(rig.boot(), (Slot::A, Rollback));
    assert_eq!(rig.bootcount(), "13");
    let st = rig.env.load().unwrap();
    assert!(st.slot(Slot::A).successful && !st.slot(Slot::B).successful);
    assert_eq!(rig.boot(), (Slot::A, Confirmed));
    // The next update, marked good after its first boot: no rollback, A stays a fallback.
    rig.apply(Operation::Stage {
        slot: Slot::B,
        tries: 2,
        name: name("v2.0"),
    });
    assert_eq!(rig.boot(), (Slot::B, Trial));
    rig.apply(Operation::MarkGood { slot: Slot::B });
    for _ in 0..2 {
        assert_eq!(rig.boot(), (Slot::B, Confirmed));
    }
    let st = rig.env.load().unwrap();
    assert!(
        st.slot(Slot::A).successful,
        "the previous system is a fallback"
    );
    // The agent rolls back to it.
    rig.apply(Operation::Rollback { abandon: Slot::B });
    assert_eq!(rig.boot(), (Slot::A, Confirmed));
    assert_eq!(rig.env.load().unwrap().slot(Slot::B).priority, 0);
    eprintln!("{} boots compared", rig.boots);
}
