//! "Never delete what runs": a lost, invalid or contradicted boot environment makes `install`
//! and `cleanup` refuse with a message that says what to do, and delete nothing.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::{Path, PathBuf};

use agent_linux::bootcfg::BootConfig;
use agent_linux::deploy::{self, EnvContent};
use bootloader_hooks::{BootState, Slot, SlotName};

const S: &str = "sysroot";

/// Names in `S/deploy`, sorted.
fn deploy_listing(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A lab with versions 9, 9.1 and 9.2 whose sysroot `S` holds 9 and 9.1, both good
/// ([`two_good`]); returns the lab, the sysroot and its deployments listed.
fn two_good_sysroot() -> (Lab, PathBuf, Vec<String>) {
    let lab = Lab::trusted_by(&["9", "9.1", "9.2"], S);
    let root = lab.path().join(S);
    two_good(&lab, lab.path());
    let before = deploy_listing(&root);
    (lab, root, before)
}

/// Case 2: both environment copies blank. `status` says the environment is lost; `install`
/// used to delete both deployments (the booted one included) and provision the new commit as
/// booted and good with no fallback.
#[test]
fn lost_environment_makes_install_and_cleanup_refuse() {
    let (lab, root, before) = two_good_sysroot();
    let d = lab.path();
    blank_env(&root);
    assert_eq!(before.len(), 4, "{before:?}");
    let st = status(d, S, Slot::B);
    assert_eq!(st["state"], "env-lost", "{st}");

    for upd in [lab.update(None, "9.2"), lab.update(Some("9.1"), "9.2")] {
        let e = fails(d, &["install", "--sysroot", S, &upd], &booted(Slot::B));
        assert!(e.contains("repair-env"), "{e}");
        assert!(e.contains("nothing was deleted"), "{e}");
        assert_eq!(deploy_listing(&root), before);
    }
    let e = fails(d, &["cleanup", "--sysroot", S], &booted(Slot::B));
    assert!(e.contains("repair-env"), "{e}");
    let e = fails(d, &["deploy", "--sysroot", S, "os/main"], &booted(Slot::B));
    assert!(e.contains("repair-env"), "{e}");
    assert_eq!(deploy_listing(&root), before);
    // Without a booted slot either.
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &[],
    );
    assert!(e.contains("repair-env"), "{e}");
    assert_eq!(deploy_listing(&root), before);
}

/// Case 2 with `env-size = 0` in agent.conf: refused as a configuration error, nothing deleted.
#[test]
fn env_size_zero_is_a_clear_error_and_deletes_nothing() {
    let (lab, root, before) = two_good_sysroot();
    let d = lab.path();
    let conf = fs::read_to_string(root.join("agent.conf")).unwrap();
    let conf: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("env-size") {
                "env-size = 0\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(root.join("agent.conf"), conf).unwrap();
    for args in [
        vec!["install", "--sysroot", S, &lab.update(None, "9.2")],
        vec!["cleanup", "--sysroot", S],
        vec!["status", "--sysroot", S],
    ] {
        let e = fails(d, &args, &booted(Slot::B));
        assert!(e.contains("env-size"), "{e}");
        assert!(e.contains("fix or delete the line"), "{e}");
    }
    assert_eq!(deploy_listing(&root), before);
}

/// Rewrites the boot state with slot `slot` naming `name` (CRC-valid: written by the agent's
/// own environment writer).
fn set_slot_name(root: &Path, slot: Slot, name: &str) {
    let cfg = BootConfig::load(root).unwrap();
    let EnvContent::Ready(img, st) = deploy::env::read(&cfg).unwrap() else {
        panic!("no boot state")
    };
    let mut st: BootState = *st;
    st.slot_mut(slot).name = SlotName::from_str(name).unwrap();
    deploy::env::write(&cfg, Some(&img), &st, &[]).unwrap();
}

/// Case 3: a CRC-valid environment whose booted slot names something that is not a
/// deployment made `cleanup` delete the booted deployment before it checked the name.
#[test]
fn invalid_slot_names_are_refused_before_anything_is_deleted() {
    let (lab, root, before) = two_good_sysroot();
    let d = lab.path();
    let real = format!("{}.0", lab.commit("9.1"));
    assert!(before.contains(&real), "{before:?}");
    fs::create_dir_all(d.join("x")).unwrap();
    fs::write(d.join("x/keep"), b"outside").unwrap();
    for bad in [
        "garbage".to_string(),
        "../../x".to_string(),
        "../x".to_string(),
        format!("{}.00", lab.commit("9.1")),
        format!("{}.0", lab.commit("9.1").to_uppercase()),
    ] {
        for slot in [Slot::B, Slot::A] {
            set_slot_name(&root, slot, &bad);
            let e = fails(d, &["cleanup", "--sysroot", S], &booted(Slot::B));
            assert!(e.contains("repair-env"), "{bad}: {e}");
            assert!(e.contains("not a deployment"), "{bad}: {e}");
            let e = fails(
                d,
                &["install", "--sysroot", S, &lab.update(None, "9.2")],
                &booted(Slot::B),
            );
            assert!(e.contains("repair-env"), "{bad}: {e}");
            assert_eq!(deploy_listing(&root), before, "{bad}");
            assert_eq!(fs::read(d.join("x/keep")).unwrap(), b"outside");
        }
        set_slot_name(&root, Slot::A, &format!("{}.0", lab.commit("9")));
        set_slot_name(&root, Slot::B, &real);
    }
    // Repaired by hand, everything works again.
    ok(d, &["cleanup", "--sysroot", S], &booted(Slot::B));
    assert_eq!(deploy_listing(&root), before);
}

/// The kernel command line says which deployment runs; an environment that disagrees (or a
/// booted slot whose deployment is not on disk) is refused before anything is deleted.
#[test]
fn kernel_command_line_and_disk_are_checked_against_the_environment() {
    let (lab, root, before) = two_good_sysroot();
    let d = lab.path();
    let a = format!("{}.0", lab.commit("9"));
    let b = format!("{}.0", lab.commit("9.1"));
    let cmdline = d.join("cmdline");
    let cl = cmdline.to_str().unwrap();

    // The kernel booted slot B's deployment but says slot A.
    fs::write(
        &cmdline,
        format!("root=/dev/x ecu.slot=A ecu.deployment={b}\n"),
    )
    .unwrap();
    let e = fails(
        d,
        &["cleanup", "--sysroot", S],
        &[("ECU_AGENT_CMDLINE", cl)],
    );
    assert!(e.contains("kernel command line"), "{e}");
    assert!(e.contains("repair-env"), "{e}");
    // A deployment the environment does not name at all.
    fs::write(
        &cmdline,
        format!("ecu.slot=B ecu.deployment={}.5\n", lab.commit("9.2")),
    )
    .unwrap();
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &[("ECU_AGENT_CMDLINE", cl)],
    );
    assert!(e.contains("names it in neither slot"), "{e}");
    assert_eq!(deploy_listing(&root), before);

    // What the kernel says agrees: fine.
    fs::write(&cmdline, format!("ecu.slot=B ecu.deployment={b}\n")).unwrap();
    ok(
        d,
        &["cleanup", "--sysroot", S],
        &[("ECU_AGENT_CMDLINE", cl)],
    );

    // The booted slot's deployment is gone from disk: install would delete the only one left.
    fs::rename(root.join("deploy").join(&b), d.join("moved")).unwrap();
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &booted(Slot::B),
    );
    assert!(e.contains("not on disk"), "{e}");
    assert!(root.join("deploy").join(&a).is_dir());
    fs::rename(d.join("moved"), root.join("deploy").join(&b)).unwrap();
    assert_eq!(deploy_listing(&root), before);
}

/// Case 4: a GRUB environment configured as a device that never ends is read up to its bound
/// (`env-size`, 16 KiB by default) and refused, instead of growing until the process dies.
#[test]
fn endless_grub_environment_is_refused_quickly() {
    let lab = Lab::new(&["9"]);
    let d = lab.path();
    fs::create_dir_all(d.join(S)).unwrap();
    fs::write(
        d.join(S).join("agent.conf"),
        format!(
            "backend = grub\nenv = /dev/zero\ntrusted-key = {}\n",
            lab.key_hex()
        ),
    )
    .unwrap();
    let t = std::time::Instant::now();
    for args in [
        vec!["install", "--sysroot", S, &lab.update(None, "9")],
        vec!["status", "--sysroot", S],
    ] {
        let e = fails(d, &args, &[]);
        assert!(e.contains("/dev/zero: longer than 16384 bytes"), "{e}");
    }
    assert!(t.elapsed().as_secs() < 30);
    assert!(!d
        .join(S)
        .join("deploy")
        .join(format!("{}.0", lab.commit("9")))
        .exists());
}
