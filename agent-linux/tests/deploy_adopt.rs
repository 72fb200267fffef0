//! Adopting an environment that a RAUC or Mender bootloader already owns: on its very first
//! boot the bootloader writes its own variables, so the agent's first `install` finds a boot
//! state that names no deployment. It learns the booted slot from the running system (kernel
//! command line, `--booted-slot`; never `S/run/booted`), checks it against the bootloader's
//! variables, records the running system in that slot as `adopted-system` and stages the
//! update in the other slot. When the evidence disagrees, it refuses and writes nothing.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::{Path, PathBuf};

use agent_linux::deploy::ADOPTED_NAME;
use bootloader_hooks::Slot;
use serde_json::Value;

const S: &str = "sysroot";

/// Board variables the bootloader's default environment holds (kept by every write).
const BOARD: &[(&str, &str)] = BOARD_VARS;

/// A lab with `versions` whose sysroot has `conf` as agent.conf and the environment the
/// bootloader wrote at its first boot ([`BOARD`] and `vars`, [`bootloader_wrote_env`]).
fn first_boot(versions: &[&str], conf: &str, vars: &[(&str, &str)]) -> (Lab, PathBuf) {
    let lab = Lab::new(versions);
    let root = sysroot(&lab, conf);
    bootloader_wrote_env(&root, vars);
    (lab, root)
}

fn deploy_entries(root: &Path) -> Vec<String> {
    match fs::read_dir(root.join("deploy")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn sysroot(lab: &Lab, conf: &str) -> PathBuf {
    configured_sysroot(lab, S, conf)
}

#[test]
fn rauc_first_install_adopts_the_booted_slot() {
    // RAUC's boot script on its first boot: BOOT_ORDER "A B", A counted down from 3.
    let (lab, root) = first_boot(
        &["9"],
        "scheme = rauc\n",
        &[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "2"),
            ("BOOT_B_LEFT", "3"),
        ],
    );
    let d = lab.path();
    let blank = uboot_env_files(&root);
    let update = lab.update(None, "9");

    // Nothing says which slot runs: refused, nothing written; a run file is not believed.
    let e = fails(d, &["install", "--sysroot", S, &update], &[]);
    assert!(e.contains("holds rauc boot state but no deployment"), "{e}");
    assert!(e.contains("slot-a-root and slot-b-root"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    fs::create_dir_all(root.join("run")).unwrap();
    fs::write(root.join("run/booted"), "B\n").unwrap();
    let e = fails(d, &["install", "--sysroot", S, &update], &[]);
    assert!(e.contains("S/run/booted says B but may be left"), "{e}");
    // The kernel says B, RAUC's variables say its script booted A: refused.
    let b = cmdline_file(d, "root=/dev/mmcblk0p3 rauc.slot=B");
    let e = fails(
        d,
        &["install", "--sysroot", S, &update],
        &[("ECU_AGENT_CMDLINE", &b)],
    );
    assert!(
        e.contains("kernel command line says slot B is booted"),
        "{e}"
    );
    assert!(
        e.contains("BOOT_ORDER=\"A B\" puts slot A before slot B and BOOT_A_LEFT=2"),
        "{e}"
    );
    assert_eq!(uboot_env_files(&root), blank);
    assert!(
        deploy_entries(&root).is_empty(),
        "{:?}",
        deploy_entries(&root)
    );

    // rauc.slot=A agrees, but A is on trial (its counter not refilled by a mark-good) and B
    // is RAUC's good fallback: installing would replace it, refused.
    let a = cmdline_file(d, "console=ttyS0 rauc.slot=A");
    let ka = [("ECU_AGENT_CMDLINE", a.as_str())];
    let e = fails(d, &["install", "--sysroot", S, &update], &ka);
    assert!(e.contains("has slot A on trial"), "{e}");
    assert_eq!(uboot_env_files(&root), blank);
    // After RAUC's mark-good (BOOT_A_LEFT refilled): adopted, staged in B, one environment
    // update keeping RAUC's and the board's variables.
    bootloader_wrote_env(
        &root,
        &[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ],
    );
    let out = ok(d, &["install", "--sysroot", S, &update, "--json"], &ka);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["action"], "staged", "{r}");
    assert_eq!(r["adopted"], "A", "{r}");
    assert_eq!(r["slot"], "B", "{r}");
    let name = format!("{}.0", lab.commit("9"));
    assert_eq!(env_var(&root, "ECU_A_NAME").as_deref(), Some(ADOPTED_NAME));
    assert_eq!(env_var(&root, "ECU_B_NAME").as_deref(), Some(name.as_str()));
    assert_eq!(env_var(&root, "BOOT_ORDER").as_deref(), Some("B A"));
    assert_eq!(env_var(&root, "BOOT_B_LEFT").as_deref(), Some("3"));
    assert_eq!(env_var(&root, "ECU_A_ARGS"), None);
    for (k, v) in BOARD {
        assert_eq!(env_var(&root, k).as_deref(), Some(*v), "{k}");
    }
    // Status shows the adopted system as the booted one, the update staged.
    let st: Value =
        serde_json::from_str(&ok(d, &["status", "--sysroot", S, "--json"], &ka)).unwrap();
    assert_eq!(st["state"], "staged", "{st}");
    assert_eq!(st["refs_followed"][0], "os/main", "{st}");
    assert_eq!(deployment_of(&st, "A")["name"], ADOPTED_NAME, "{st}");
    assert_eq!(deployment_of(&st, "A")["booted"], true, "{st}");
    // (RAUC reads a full counter as good, so B's role is scheme-dependent; what counts is
    // that the next boot takes it.)
    assert_eq!(deployment_of(&st, "B")["next_boot"], true, "{st}");
    assert_eq!(deployment_of(&st, "B")["name"], name.as_str(), "{st}");
    let text = ok(d, &["status", "--sysroot", S], &ka);
    assert!(text.contains("● A: adopted-system"), "{text}");
    // Nothing to verify the adopted system against.
    let e = fails(d, &["verify", "--sysroot", S], &ka);
    assert!(e.contains("not a deployment of the agent"), "{e}");
    // The bootloader boots the update; it is marked good there.
    assert_eq!(boot(&root).0, Slot::B);
    let kb = [("ECU_AGENT_CMDLINE", b.as_str())];
    let r: Value =
        serde_json::from_str(&ok(d, &["mark-good", "--sysroot", S, "--json"], &kb)).unwrap();
    assert_eq!(r["slot"], "B", "{r}");
    assert_eq!(r["deployment"], name.as_str(), "{r}");
    // And the adopted system can still be rolled back to.
    let r: Value =
        serde_json::from_str(&ok(d, &["rollback", "--sysroot", S, "--json"], &kb)).unwrap();
    assert_eq!(r["slot"], "A", "{r}");
    assert_eq!(r["deployment"], ADOPTED_NAME, "{r}");
}

#[test]
fn mender_adoption_story_and_refusals() {
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    let root = sysroot(&lab, "scheme = mender\n");
    let mender = |part: &'static str, upgrade: &'static str| {
        vec![
            ("mender_boot_part", part),
            ("mender_boot_part_hex", part),
            ("upgrade_available", upgrade),
            ("bootcount", "0"),
            ("bootlimit", "1"),
        ]
    };
    let p2 = cmdline_file(d, "console=ttyS0 root=/dev/mmcblk0p2 rootwait");
    let p3 = cmdline_file(d, "console=ttyS0 root=/dev/mmcblk0p3 rootwait");
    let k2 = [("ECU_AGENT_CMDLINE", p2.as_str())];
    let k3 = [("ECU_AGENT_CMDLINE", p3.as_str())];
    let full = lab.update(None, "9");

    // The kernel booted partition 3, Mender's variables say partition 2: refused.
    bootloader_wrote_env(&root, &mender("2", "0"));
    let blank = uboot_env_files(&root);
    let e = fails(d, &["install", "--sysroot", S, &full], &k3);
    assert!(
        e.contains("root device on the kernel command line says slot B is booted"),
        "{e}"
    );
    assert!(
        e.contains("mender_boot_part=2 says it booted slot A"),
        "{e}"
    );
    // --booted-slot is checked the same way.
    let e = fails(
        d,
        &["install", "--sysroot", S, &full, "--booted-slot", "B"],
        &[],
    );
    assert!(e.contains("--booted-slot says slot B"), "{e}");
    assert_eq!(uboot_env_files(&root), blank);

    // Mender's own update on trial in A (B its good fallback): installing would replace the
    // fallback; refused until A is confirmed. mark-good adopts and confirms.
    bootloader_wrote_env(&root, &mender("2", "1"));
    let e = fails(d, &["install", "--sysroot", S, &full], &k2);
    assert!(e.contains("has slot A on trial"), "{e}");
    assert!(e.contains("ecu-agent mark-good"), "{e}");
    let r: Value =
        serde_json::from_str(&ok(d, &["mark-good", "--sysroot", S, "--json"], &k2)).unwrap();
    assert_eq!(r["slot"], "A", "{r}");
    assert_eq!(r["deployment"], ADOPTED_NAME, "{r}");
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(env_var(&root, "upgrade_available").as_deref(), Some("0"));
    assert_eq!(env_var(&root, "mender_boot_part").as_deref(), Some("2"));

    // The story: install (staged in B), boot B, mark-good, next update into A (replacing the
    // adopted system), boot A, mark-good.
    let r: Value =
        serde_json::from_str(&ok(d, &["install", "--sysroot", S, &full, "--json"], &k2)).unwrap();
    assert_eq!(r["slot"], "B", "{r}");
    assert_eq!(r["adopted"], Value::Null, "{r}");
    assert_eq!(env_var(&root, "mender_boot_part").as_deref(), Some("3"));
    assert_eq!(env_var(&root, "upgrade_available").as_deref(), Some("1"));
    assert_eq!(boot(&root).0, Slot::B);
    ok(d, &["mark-good", "--sysroot", S], &k3);
    assert_eq!(env_var(&root, "upgrade_available").as_deref(), Some("0"));
    let r: Value = serde_json::from_str(&ok(
        d,
        &[
            "install",
            "--sysroot",
            S,
            &lab.update(Some("9"), "9.1"),
            "--json",
        ],
        &k3,
    ))
    .unwrap();
    assert_eq!(r["slot"], "A", "{r}");
    assert_eq!(r["replaced"], ADOPTED_NAME, "{r}");
    assert_eq!(boot(&root).0, Slot::A);
    ok(d, &["mark-good", "--sysroot", S], &k2);
    let st: Value =
        serde_json::from_str(&ok(d, &["status", "--sysroot", S, "--json"], &k2)).unwrap();
    assert_eq!(st["booted_good"], true, "{st}");
    assert_eq!(st["next_boot"], "A", "{st}");
    assert_eq!(st["refs_followed"][0], "os/main", "{st}");
    assert_eq!(deployment_of(&st, "A")["commit"], lab.commit("9.1"), "{st}");
    assert_eq!(deployment_of(&st, "B")["commit"], lab.commit("9"), "{st}");
    for (k, v) in BOARD {
        assert_eq!(env_var(&root, k).as_deref(), Some(*v), "{k}");
    }
}

#[test]
fn first_install_on_an_unowned_env_adopts_in_one_go() {
    // The install in one go from the bootloader's first boot: adopted A, staged B.
    let (lab, root) = first_boot(
        &["9"],
        "scheme = mender\n",
        &[
            ("mender_boot_part", "2"),
            ("upgrade_available", "0"),
            ("bootcount", "0"),
            ("bootlimit", "1"),
        ],
    );
    let d = lab.path();
    ok(d, &["init", "--repo", &format!("{S}/repo")], &[]);
    let st: Value = serde_json::from_str(&ok(
        d,
        &["status", "--sysroot", S, "--json"],
        &[("ECU_AGENT_CMDLINE", &cmdline_file(d, "root=/dev/mmcblk0p2"))],
    ))
    .unwrap();
    assert_eq!(st["state"], "empty", "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("adopts the running system"),
        "{st}"
    );
    let out = ok(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9")],
        &[("ECU_AGENT_CMDLINE", &cmdline_file(d, "root=/dev/mmcblk0p2"))],
    );
    assert!(
        out.contains("adopted the bootloader's environment"),
        "{out}"
    );
    assert!(
        out.contains("slot A is recorded as adopted-system"),
        "{out}"
    );
    assert_eq!(env_var(&root, "ECU_A_NAME").as_deref(), Some(ADOPTED_NAME));
    assert!(!root.join("deploy/.provisioning").exists());
}

#[test]
fn rauc_grub_environment_is_adopted_and_checked() {
    let lab = Lab::new(&["9"]);
    let d = lab.path();
    // As RAUC's grub.conf and `rauc status mark-good` leave it: A booted and confirmed.
    let (root, block) = rauc_grub_sysroot(&lab, S, &[(b"timeout", b"3")]);
    let update = lab.update(None, "9");

    // B cannot be what grub.conf booted: A comes first and is bootable.
    let b = cmdline_file(d, "rauc.slot=B");
    let e = fails(
        d,
        &["install", "--sysroot", S, &update],
        &[("ECU_AGENT_CMDLINE", &b)],
    );
    assert!(
        e.contains("ORDER=\"A B\" puts slot A before slot B and A_OK=1, A_TRY=0"),
        "{e}"
    );
    assert_eq!(fs::read(root.join("boot/grubenv")).unwrap(), block);

    let a = cmdline_file(d, "rauc.slot=A");
    let out = ok(
        d,
        &["install", "--sysroot", S, &update, "--json"],
        &[("ECU_AGENT_CMDLINE", &a)],
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["adopted"], "A", "{r}");
    assert_eq!(r["slot"], "B", "{r}");
    assert_eq!(env_var(&root, "ECU_A_NAME").as_deref(), Some(ADOPTED_NAME));
    assert_eq!(env_var(&root, "ORDER").as_deref(), Some("B A"));
    assert_eq!(env_var(&root, "B_OK").as_deref(), Some("1"));
    assert_eq!(env_var(&root, "B_TRY").as_deref(), Some("0"));
    assert_eq!(env_var(&root, "timeout").as_deref(), Some("3"));
    assert_eq!(fs::metadata(root.join("boot/grubenv")).unwrap().len(), 1024);
}

#[test]
fn an_unowned_environment_beside_deployments_is_not_adopted() {
    // The sysroot was provisioned, then the bootloader reset its environment to its own
    // variables: nothing says which deployment runs; refused, pointing at repair-env.
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    let root = sysroot(&lab, "scheme = mender\n");
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    bootloader_wrote_env(
        &root,
        &[("mender_boot_part", "2"), ("upgrade_available", "0")],
    );
    let before = uboot_env_files(&root);
    let k = cmdline_file(d, "root=/dev/mmcblk0p2");
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &[("ECU_AGENT_CMDLINE", &k)],
    );
    assert!(e.contains("names no deployment in either slot"), "{e}");
    assert!(e.contains(&format!("{}.0", lab.commit("9"))), "{e}");
    assert!(e.contains("repair-env"), "{e}");
    assert_eq!(uboot_env_files(&root), before);
    // mark-good does not adopt it either.
    let e = fails(
        d,
        &["mark-good", "--sysroot", S],
        &[("ECU_AGENT_CMDLINE", &k)],
    );
    assert!(e.contains("names no deployment in either slot"), "{e}");
    assert!(e.contains("repair-env"), "{e}");
    assert_eq!(uboot_env_files(&root), before);
    // repair-env rebuilds it from what is on disk and what the kernel booted (the kargs of
    // the provisioning name the deployment), keeping Mender's and the board's variables.
    let booted9 = cmdline_file(
        d,
        &format!(
            "root=/dev/mmcblk0p2 ecu.slot=A ecu.deployment={}.0",
            lab.commit("9")
        ),
    );
    ok(
        d,
        &["repair-env", "--sysroot", S],
        &[("ECU_AGENT_CMDLINE", &booted9)],
    );
    assert_eq!(
        env_var(&root, "ECU_A_NAME"),
        Some(format!("{}.0", lab.commit("9")))
    );
    assert_eq!(
        env_var(&root, "bootcmd").as_deref(),
        Some("run distro_bootcmd")
    );
}

#[test]
fn a_lost_environment_after_adoption_is_not_rebuilt_on_a_guess() {
    // Adopted A, the update staged in B; then the environment is lost. The kernel (root= of
    // A, no ecu.deployment=) runs the adopted system, not the one deployment on disk: the
    // rebuild must not record that deployment as what runs.
    let (lab, root) = first_boot(
        &["9"],
        "scheme = mender\n",
        &[
            ("mender_boot_part", "2"),
            ("upgrade_available", "0"),
            ("bootlimit", "1"),
        ],
    );
    let d = lab.path();
    let k = cmdline_file(d, "root=/dev/mmcblk0p2");
    let ka = [("ECU_AGENT_CMDLINE", k.as_str())];
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &ka);
    blank_env(&root);
    let e = fails(d, &["repair-env", "--sysroot", S], &ka);
    assert!(e.contains("names no deployment (no ecu.deployment="), "{e}");
    assert!(e.contains(&format!("{}.0", lab.commit("9"))), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert!(uboot_env_files(&root)
        .iter()
        .all(|c| c.iter().all(|&b| b == 0)));
}
