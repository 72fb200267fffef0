//! Which slot runs, from the kernel command line's root device: Mender passes only
//! `root=/dev/mmcblk0pN`; `slot-a-root`/`slot-b-root` (or Mender's defaults) map it to a
//! slot, it outvotes a stale `S/run/booted`, and a root device that is neither slot's is
//! refused rather than guessed.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::Path;

use bootloader_hooks::Slot;
use serde_json::Value;

const S: &str = "sysroot";

/// Writes `text` as the kernel command line file and returns the variable pointing at it.
fn kernel(d: &Path, text: &str) -> [(&'static str, String); 1] {
    [("ECU_AGENT_CMDLINE", cmdline_file(d, text))]
}

fn with<'a>(k: &'a [(&'static str, String); 1]) -> [(&'static str, &'a str); 1] {
    [(k[0].0, k[0].1.as_str())]
}

#[test]
fn mender_root_device_outvotes_a_stale_run_file_at_mark_good() {
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    let root = d.join(S);
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("agent.conf"), "scheme = mender\n").unwrap();
    lab.trust(S);
    // Provisioned in A (S/run/booted says A), then 9.1 staged in B while A runs.
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let a = kernel(d, "console=ttyS0 root=/dev/mmcblk0p2 rootwait");
    let out = ok(
        d,
        &[
            "install",
            "--sysroot",
            S,
            &lab.update(Some("9"), "9.1"),
            "--json",
        ],
        &with(&a),
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["slot"], "B", "{r}");
    // The real bootloader boots B (nothing rewrites S/run/booted: it still says A).
    assert_eq!(boot(&root).0, Slot::B);
    assert_eq!(
        fs::read_to_string(root.join("run/booted")).unwrap().trim(),
        "A"
    );
    assert_eq!(env_var(&root, "mender_boot_part").as_deref(), Some("3"));

    // The booted slot is the one root= names, not the run file's.
    let b = kernel(d, "console=ttyS0 root=/dev/mmcblk0p3 rootwait");
    let st: Value =
        serde_json::from_str(&ok(d, &["status", "--sysroot", S, "--json"], &with(&b))).unwrap();
    assert_eq!(st["booted_slot"], "B", "{st}");
    assert_eq!(st["booted_source"], "root-device", "{st}");

    // A root device that is neither slot's: refused, nothing written, the run file unused.
    let before = uboot_env_files(&root);
    let x = kernel(d, "console=ttyS0 root=/dev/mmcblk0p7 rootwait");
    let e = fails(d, &["mark-good", "--sysroot", S], &with(&x));
    assert!(e.contains("root=/dev/mmcblk0p7, which is neither"), "{e}");
    assert!(e.contains("A = /dev/mmcblk0p2, B = /dev/mmcblk0p3"), "{e}");
    assert!(e.contains("slot-a-root and slot-b-root"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert_eq!(uboot_env_files(&root), before);
    // The same when the command line names the slot and root= disagrees with it.
    let e = fails(
        d,
        &["mark-good", "--sysroot", S],
        &with(&kernel(d, "root=/dev/mmcblk0p3 ecu.slot=A")),
    );
    assert!(e.contains("says slot A"), "{e}");
    assert!(e.contains("is slot B's root device"), "{e}");
    assert_eq!(uboot_env_files(&root), before);

    // mark-good marks B, the slot that runs: Mender's bootloader keeps booting it.
    let out = ok(d, &["mark-good", "--sysroot", S, "--json"], &with(&b));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["slot"], "B", "{r}");
    assert_eq!(env_var(&root, "mender_boot_part").as_deref(), Some("3"));
    assert_eq!(env_var(&root, "upgrade_available").as_deref(), Some("0"));
    assert_eq!(boot(&root).0, Slot::B);
    assert_eq!(boot(&root).0, Slot::B);
}

#[test]
fn configured_root_devices_partuuid_and_partlabel() {
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    let root = d.join(S);
    fs::create_dir_all(&root).unwrap();
    fs::write(
        root.join("agent.conf"),
        "slot-a-root = PARTUUID=5452574f-02\nslot-b-root = PARTLABEL=rootB\n",
    )
    .unwrap();
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    // PARTUUID compares without regard to case, as the kernel reads it.
    let a = kernel(d, "root=PARTUUID=5452574F-02 ro");
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &with(&a),
    );
    assert_eq!(boot(&root).0, Slot::B);
    // Stale run file (A), kernel on B: mark-good marks B.
    let b = kernel(d, "root=PARTLABEL=rootB ro");
    let r: Value =
        serde_json::from_str(&ok(d, &["mark-good", "--sysroot", S, "--json"], &with(&b))).unwrap();
    assert_eq!(r["slot"], "B", "{r}");
    assert_eq!(env_var(&root, "ECU_B_OK").as_deref(), Some("1"));
    // Configured devices are strict: another root= is a doubt even with ecu.slot=; status
    // says so, mark-good refuses.
    let k = kernel(d, "root=/dev/sda2 ecu.slot=B");
    let st: Value =
        serde_json::from_str(&ok(d, &["status", "--sysroot", S, "--json"], &with(&k))).unwrap();
    assert_eq!(st["booted_slot"], Value::Null, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("slot-a-root = PARTUUID=5452574f-02"),
        "{st}"
    );
    let e = fails(d, &["mark-good", "--sysroot", S], &with(&k));
    assert!(e.contains("root=/dev/sda2, which is neither"), "{e}");
}
