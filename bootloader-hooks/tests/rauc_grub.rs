//! RAUC's own `contrib/grub.conf` (RAUC 1.8, Debian's `rauc` 1.8-2 source, fetched and checked
//! by `common::upstream`; the only change: each entry's kernel boot replaced by an echo of its
//! command line and `halt`) in real GRUB (grub-emu 2.06). grub.cfg and grubenv live in a FAT
//! image mapped as (hd0), with `$prefix` = (hd0)/grub, so the script's plain `load_env` and
//! `save_env` work on it as on a device. A long boot sequence: every boot's entry is compared
//! with the agent's prediction (`BootState::decide` on the state `Scheme::Rauc` decodes) and
//! every environment GRUB wrote with what the agent reads back.

mod common;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use bootloader_hooks::{
    BootRules, BootState, DecisionKind, Operation, RaucConfig, Scheme, SchemeError, Slot, SlotName,
};
use common::host::{Backend, BootEnv};
use common::*;

struct Rig {
    dir: tempfile::TempDir,
    disk: PathBuf,
    local: PathBuf,
    env: BootEnv,
    boots: usize,
    checked: usize,
}

/// What GRUB booted: RAUC's rescue entry or a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Booted {
    Rescue,
    Slot(Slot),
}

fn name(s: &str) -> SlotName {
    SlotName::from_str(s).unwrap()
}

impl Rig {
    /// A FAT image holding RAUC's grub.cfg and a grubenv made by `grub-editenv create` plus
    /// `set` of `vars` (none: blank).
    fn new(test: &str, vars: &[&str]) -> Option<Rig> {
        if !["grub-emu", "grub-editenv", "mkfs.vfat", "mcopy", "mmd"]
            .iter()
            .all(|t| have(t, test))
        {
            return None;
        }
        let cfg = upstream::rauc_grub_conf(test)?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("grub.cfg"), cfg).unwrap();
        let disk = d.join("disk.img");
        fat_image(&disk, "BOOT", 4096);
        run(Command::new("mmd").arg("-i").arg(&disk).arg("::grub"));
        mcopy(&disk, d.join("grub.cfg"), "::grub/grub.cfg");
        grub_device_map(d, &disk);
        let local = d.join("grubenv");
        run(Command::new("grub-editenv").arg(&local).arg("create"));
        if !vars.is_empty() {
            run(Command::new("grub-editenv")
                .arg(&local)
                .arg("set")
                .args(vars));
        }
        let env = BootEnv::new(Backend::grub(&local), Scheme::Rauc(RaucConfig::default()));
        let rig = Rig {
            dir,
            disk,
            local,
            env,
            boots: 0,
            checked: 0,
        };
        rig.push();
        Some(rig)
    }

    fn push(&self) {
        mcopy(&self.disk, &self.local, "::grub/grubenv");
    }

    fn pull(&self) {
        mcopy(&self.disk, "::grub/grubenv", &self.local);
    }

    /// The agent changes the environment between boots (the same encoders as
    /// `agent_linux::deploy::env`); the operation must change something.
    fn agent(&self, op: Operation) {
        self.pull();
        assert!(
            self.env.apply(&op).unwrap().changed,
            "{op:?} changed nothing"
        );
        self.push();
    }

    /// Runs grub-emu once and returns the entry it booted.
    fn boot_raw(&mut self) -> Booted {
        let d = self.dir.path();
        let t = Instant::now();
        let log = grub_emu(d, "30", &["-r", "hd0", "-d", "/grub"].map(OsStr::new));
        self.boots += 1;
        let line = log
            .lines()
            .find_map(|l| l.find("RAUC-BOOT:").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no RAUC-BOOT printed:\n{log}"));
        // The line wraps at 80 columns; the root device names the entry.
        let booted = match line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("root="))
        {
            Some("/dev/sda1") => Booted::Rescue,
            Some("/dev/sda2") => Booted::Slot(Slot::A),
            Some("/dev/sda3") => Booted::Slot(Slot::B),
            other => panic!("unknown entry {other:?} in {line}"),
        };
        eprintln!(
            "boot {}: {booted:?} ({:.1} s)",
            self.boots,
            t.elapsed().as_secs_f64()
        );
        booted
    }

    /// One boot, checked: the entry equals the prediction and the environment GRUB wrote
    /// decodes to the predicted state.
    fn boot(&mut self) -> Booted {
        self.pull();
        let before = self.env.load().unwrap();
        assert_eq!(before.rules, BootRules::RaucGrub);
        let d = before.decide();
        let booted = self.boot_raw();
        let expected = match d.kind {
            DecisionKind::Trial => Booted::Slot(d.slot),
            DecisionKind::Rescue => Booted::Rescue,
            k => panic!("RAUC's GRUB rules never decide {k:?}"),
        };
        assert_eq!(booted, expected, "boot {}: from {before:?}", self.boots);
        self.pull();
        let after = self.env.load().unwrap();
        assert_eq!(after, d.state, "boot {}: state GRUB wrote", self.boots);
        self.checked += 1;
        booted
    }
}

const A: Booted = Booted::Slot(Slot::A);
const B: Booted = Booted::Slot(Slot::B);

#[test]
fn rauc_grub_conf_long_sequence() {
    let t = Instant::now();
    // first boot on a grubenv that GRUB fills itself: RAUC's defaults (x_OK=0) leave no
    // slot, so GRUB boots the rescue entry and saves the variables
    let Some(mut rig) = Rig::new("rauc_grub_conf_long_sequence", &[]) else {
        return;
    };
    assert_eq!(
        rig.env.load().unwrap_err().to_string(),
        format!(
            "{}: {}",
            rig.local.display(),
            SchemeError::NotThisScheme { scheme: "rauc" }
        ),
        "a blank env: the agent refuses to guess"
    );
    assert_eq!(rig.boot_raw(), Booted::Rescue);
    rig.pull();
    let listed = grub_list(&rig.local);
    for v in ["A_TRY=1", "A_OK=0", "B_TRY=1", "B_OK=0", "ORDER=A B"] {
        let (k, val) = v.split_once('=').unwrap();
        assert!(
            listed.contains(&(k.into(), val.into())),
            "{v} in {listed:?}"
        );
    }
    // that environment decodes; the next boot is predicted (rescue again, nothing changes)
    assert_eq!(rig.boot(), Booted::Rescue);
    // provisioning: slot A holds the system (the agent writes its state into GRUB's env)
    rig.pull();
    rig.env
        .store(&BootState::initial(Slot::A, name("base")))
        .unwrap();
    rig.push();
    assert_eq!(rig.boot(), A);
    let st = rig.env.load().unwrap();
    assert!(
        !st.slot(Slot::A).successful,
        "booted, A_TRY=1: not good yet"
    );
    rig.agent(Operation::MarkGood { slot: Slot::A });
    assert_eq!(grub_get(&rig.local, "A_TRY"), "0");
    assert!(rig.env.load().unwrap().slot(Slot::A).successful);
    // update: B staged (one try: RAUC's GRUB has no counter)
    rig.agent(Operation::Stage {
        slot: Slot::B,
        tries: 3,
        name: name("u1"),
    });
    assert_eq!(grub_get(&rig.local, "ORDER"), "B A");
    assert_eq!(rig.boot(), B);
    // never marked good: fallback to A, then nothing left: rescue clears both try flags
    assert_eq!(rig.boot(), A);
    assert_eq!(rig.boot(), Booted::Rescue);
    assert_eq!(grub_get(&rig.local, "A_TRY"), "0");
    assert_eq!(grub_get(&rig.local, "B_TRY"), "0");
    // after the rescue, RAUC tries B again; this time it is marked good
    assert_eq!(rig.boot(), B);
    rig.agent(Operation::MarkGood { slot: Slot::B });
    // case 3: the booted, marked slot is good, so the next update is accepted
    let st = rig.env.load().unwrap();
    assert!(st.slot(Slot::B).successful);
    rig.agent(Operation::Stage {
        slot: Slot::A,
        tries: 1,
        name: name("u2"),
    });
    assert_eq!(rig.boot(), A);
    rig.agent(Operation::MarkGood { slot: Slot::A });
    assert_eq!(rig.boot(), A);
    rig.agent(Operation::MarkGood { slot: Slot::A });
    // rollback to B (the agent gives up A): A leaves ORDER
    rig.agent(Operation::Rollback { abandon: Slot::A });
    assert_eq!(grub_get(&rig.local, "ORDER"), "B");
    assert_eq!(rig.boot(), B);
    rig.agent(Operation::MarkGood { slot: Slot::B });
    // a never-confirmed update: A tried once, B once more, then the rescue
    rig.agent(Operation::Stage {
        slot: Slot::A,
        tries: 1,
        name: name("u3"),
    });
    assert_eq!(rig.boot(), A);
    assert_eq!(rig.boot(), B);
    assert_eq!(rig.boot(), Booted::Rescue);
    assert_eq!(rig.boot(), A);
    // RAUC marks a slot bad (`rauc status mark-bad A`: A_OK=0 A_TRY=0) with grub-editenv;
    // then only B boots, and once B is used up the rescue no longer revives A
    rig.pull();
    run(Command::new("grub-editenv")
        .arg(&rig.local)
        .args(["set", "A_OK=0", "A_TRY=0"]));
    rig.push();
    assert_eq!(rig.boot(), B);
    assert_eq!(rig.boot(), Booted::Rescue);
    assert_eq!(rig.boot(), B);
    rig.agent(Operation::MarkGood { slot: Slot::B });
    assert_eq!(rig.boot(), B);
    eprintln!(
        "{} boots, {} compared with the prediction, 0 mismatches, {:.1} s",
        rig.boots,
        rig.checked,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(rig.checked + 1, rig.boots);
}

/// `grub-editenv FILE list`'s value of `k`.
fn grub_get(file: &std::path::Path, k: &str) -> String {
    grub_list(file)
        .into_iter()
        .find(|(kk, _)| kk == k)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{k} not in {}", file.display()))
}
