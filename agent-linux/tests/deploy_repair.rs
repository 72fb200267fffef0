//! `ecu-agent repair-env`: a lost or invalid boot environment is rebuilt from the deployments
//! on disk and what the running system says, never from a default; when it cannot tell, it
//! refuses and writes nothing.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::Path;

use agent_linux::bootcfg::BootConfig;
use agent_linux::deploy::{self, EnvContent};
use bootloader_hooks::{BootState, DecisionKind, Slot, SlotName};
use serde_json::Value;

const S: &str = "sysroot";

fn env_bytes(root: &Path) -> Vec<Vec<u8>> {
    ["boot/uboot.env", "boot/uboot-redund.env"]
        .iter()
        .map(|f| fs::read(root.join(f)).unwrap())
        .collect()
}

#[test]
fn blank_env_install_refuses_repair_env_rebuilds_install_works() {
    let lab = Lab::new(&["9", "9.1", "9.2"]);
    let d = lab.path();
    let root = d.join(S);
    lab.trust(S);
    two_good(&lab, d);
    let a = format!("{}.0", lab.commit("9"));
    let b = format!("{}.0", lab.commit("9.1"));
    blank_env(&root);
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &booted(Slot::B),
    );
    assert!(e.contains("repair-env"), "{e}");

    // Two deployments on disk and nothing says which runs: refused, nothing written.
    let blank = env_bytes(&root);
    let e = fails(d, &["repair-env", "--sysroot", S], &booted(Slot::B));
    assert!(e.contains("cannot tell which of the 2 deployments"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    // No booted slot at all.
    fs::remove_file(root.join("run/booted")).unwrap();
    let e = fails(d, &["repair-env", "--sysroot", S], &[]);
    assert!(e.contains("nothing says which slot is booted"), "{e}");
    // The kernel names a deployment that is not on disk.
    let cmdline = d.join("cmdline");
    let cl = cmdline.to_str().unwrap();
    fs::write(
        &cmdline,
        format!("ecu.slot=B ecu.deployment={}.3\n", lab.commit("9.2")),
    )
    .unwrap();
    let e = fails(
        d,
        &["repair-env", "--sysroot", S],
        &[("ECU_AGENT_CMDLINE", cl)],
    );
    assert!(e.contains("holds no such deployment"), "{e}");
    assert_eq!(env_bytes(&root), blank);

    // The kernel command line the default kargs wrote says what runs.
    fs::write(
        &cmdline,
        format!("console=ttyS0 ecu.slot=B ecu.deployment={b}\n"),
    )
    .unwrap();
    let kernel = [("ECU_AGENT_CMDLINE", cl)];
    let out = ok(
        d,
        &["repair-env", "--sysroot", S, "--dry-run", "--json"],
        &kernel,
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["action"], "would-repair", "{r}");
    assert_eq!(r["found"], "lost", "{r}");
    assert_eq!(r["booted"], b.as_str(), "{r}");
    assert_eq!(r["booted_from"], "kernel command line", "{r}");
    assert_eq!(r["fallback"], a.as_str(), "{r}");
    assert_eq!(r["state"]["slots"]["B"]["successful"], true, "{r}");
    assert_eq!(env_bytes(&root), blank, "--dry-run wrote");

    let out = ok(d, &["repair-env", "--sysroot", S], &kernel);
    assert!(out.contains("rebuilt the boot environment (lost)"), "{out}");
    assert!(out.contains(&format!("slot B boots {b}")), "{out}");

    // Status is right: B booted and good, A present but given up (not marked good, priority
    // 0: nothing says it ever booted well); the next boot is B.
    let out = ok(d, &["status", "--sysroot", S, "--json"], &kernel);
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["state"], "rolled-back", "{st}");
    assert_eq!(deployment_of(&st, "A")["role"], "rolled-back", "{st}");
    assert_eq!(deployment_of(&st, "A")["priority"], 0, "{st}");
    assert_eq!(deployment_of(&st, "B")["role"], "booted", "{st}");
    assert_eq!(st["booted_slot"], "B", "{st}");
    assert_eq!(st["booted_good"], true, "{st}");
    assert_eq!(st["next_boot"], "B", "{st}");
    assert_eq!(deployment_of(&st, "B")["name"], b.as_str(), "{st}");
    assert_eq!(deployment_of(&st, "A")["name"], a.as_str(), "{st}");
    assert_eq!(deployment_of(&st, "A")["good"], false, "{st}");
    assert_eq!(deployment_of(&st, "A")["present"], true, "{st}");
    assert!(deployment_of(&st, "B")["kargs"]
        .as_str()
        .unwrap()
        .contains(&format!("ecu.deployment={b}")));
    // The bootloader agrees.
    assert_eq!(boot(&root), (Slot::B, DecisionKind::Confirmed));
    // Again: nothing to repair.
    let out = ok(d, &["repair-env", "--sysroot", S, "--json"], &kernel);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["action"], "unchanged", "{r}");

    // Install works again: 9.2 replaces the fallback in A.
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &kernel,
    );
    let out = ok(d, &["status", "--sysroot", S, "--json"], &kernel);
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deployment_of(&st, "A")["version"], "9.2", "{st}");
    assert_eq!(deployment_of(&st, "B")["version"], "9.1", "{st}");
    assert_eq!(boot(&root), (Slot::A, DecisionKind::Trial));
}

#[test]
fn repair_env_fixes_an_invalid_slot_name_and_a_single_deployment() {
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    let root = d.join(S);
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let a = format!("{}.0", lab.commit("9"));
    // A CRC-valid environment naming `../../x` in the booted slot.
    let cfg = BootConfig::load(&root).unwrap();
    let EnvContent::Ready(img, st) = deploy::env::read(&cfg).unwrap() else {
        panic!("no boot state")
    };
    let mut st: BootState = *st;
    st.slot_mut(Slot::A).name = SlotName::from_str("../../x").unwrap();
    deploy::env::write(&cfg, Some(&img), &st, &[]).unwrap();
    let e = fails(d, &["cleanup", "--sysroot", S], &booted(Slot::A));
    assert!(e.contains("repair-env"), "{e}");

    // One deployment on disk and the booted slot from S/run/booted (written at provisioning).
    let out = ok(d, &["repair-env", "--sysroot", S, "--json"], &[]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["action"], "repaired", "{r}");
    assert_eq!(r["found"], "invalid", "{r}");
    assert_eq!(r["booted_source"], "run-file", "{r}");
    assert_eq!(r["booted_from"], "only deployment on disk", "{r}");
    assert_eq!(r["booted"], a.as_str(), "{r}");
    assert_eq!(r["fallback"], Value::Null, "{r}");
    ok(d, &["cleanup", "--sysroot", S], &booted(Slot::A));
    assert!(root.join("deploy").join(&a).is_dir());
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &booted(Slot::A),
    );
    assert_eq!(boot(&root), (Slot::B, DecisionKind::Trial));
}
