//! `simulate-boot` under RAUC's GRUB scheme when no slot is bootable: RAUC's `contrib/grub.conf`
//! boots its rescue entry (neither slot) and clears the try flags (tests/rauc_grub.rs in
//! bootloader-hooks runs the real file in grub-emu). The agent writes the same, reports
//! `rescue`, and records no slot as booted.

mod deploy_common;

use deploy_common::*;

use std::fs;

use agent_linux::bootcfg::BootConfig;
use agent_linux::deploy::{env, EnvContent};
use serde_json::Value;

const S: &str = "sysroot";

#[test]
fn simulate_boot_follows_raucs_grub_rescue() {
    let lab = Lab::new(&["9"]);
    let d = lab.path();
    // As grub.conf and `rauc status mark-good` leave it: A booted and confirmed.
    let (root, _) = rauc_grub_sysroot(&lab, S, &[]);
    let cmdline = d.join("cmdline");
    fs::write(&cmdline, "rauc.slot=A\n").unwrap();
    let cmdline = cmdline.to_string_lossy().into_owned();
    let update = lab.update(None, "9");
    ok(
        d,
        &["install", "--sysroot", S, &update],
        &[("ECU_AGENT_CMDLINE", &cmdline)],
    );
    let var = |k: &str| {
        let cfg = BootConfig::load(&root).unwrap();
        match env::read(&cfg).unwrap() {
            EnvContent::Ready(img, _) => img.get(k).map(String::from),
            _ => None,
        }
    };
    let boot = || -> Value {
        serde_json::from_str(&ok(d, &["simulate-boot", "--sysroot", S, "--json"], &[])).unwrap()
    };
    // B tried once, never marked good; then A once (its A_TRY=1 too); then nothing is left
    let r = boot();
    assert_eq!(
        (r["slot"].as_str(), r["kind"].as_str()),
        (Some("B"), Some("trial")),
        "{r}"
    );
    let r = boot();
    assert_eq!(
        (r["slot"].as_str(), r["kind"].as_str()),
        (Some("A"), Some("trial")),
        "{r}"
    );
    assert!(root.join("run/booted").is_file());
    let r = boot();
    assert_eq!(r["slot"], "rescue", "{r}");
    assert_eq!(r["kind"], "rescue", "{r}");
    assert_eq!(r["changed"], true, "{r}");
    assert!(
        !root.join("run/booted").exists(),
        "the rescue system is neither slot"
    );
    assert_eq!(var("A_TRY").as_deref(), Some("0"));
    assert_eq!(var("B_TRY").as_deref(), Some("0"));
    // after the rescue, grub.conf takes ORDER's first slot again
    let r = boot();
    assert_eq!(
        (r["slot"].as_str(), r["kind"].as_str()),
        (Some("B"), Some("trial")),
        "{r}"
    );
}
