//! The OSTree/rpm-ostree primer as tests: install next to the booted system, status, reboot,
//! mark-good; and the failure story: never marked good, tries used up, rolled back. The
//! bootloader is the boot decision of `bootloader-hooks` on the real environment files.

mod deploy_common;

use deploy_common::*;

use bootloader_hooks::{DecisionKind, Slot};
use serde_json::Value;

const S: &str = "sysroot";

fn booted_env(s: Slot) -> [(&'static str, &'static str); 1] {
    [("ECU_AGENT_BOOTED_SLOT", s.as_str())]
}

/// Provisions 9 (booted in A) and installs the 9 -> 9.1 delta, checking status on the way.
fn install_9_then_91(lab: &Lab) {
    let d = lab.path();
    let out = ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    assert!(out.contains("provisioned"), "{out}");
    let st = status(d, S, Slot::A);
    assert_eq!(st["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(st["state"], "idle");
    let a = deployment_of(&st, "A");
    assert_eq!(a["version"], "9");
    assert_eq!(a["booted"], true);
    assert_eq!(a["good"], true);
    assert_eq!(a["next_boot"], true);
    assert_eq!(a["commit"], lab.commit("9"));
    assert_eq!(a["ref"], "os/main");

    let delta = lab.update(Some("9"), "9.1");
    let out = ok(
        d,
        &["install", "--sysroot", S, &delta],
        &booted_env(Slot::A),
    );
    assert!(out.contains("staged") && out.contains("slot B"), "{out}");
    let st = status(d, S, Slot::A);
    let list = st["deployments"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{st}");
    let (a, b) = (deployment_of(&st, "A"), deployment_of(&st, "B"));
    assert_eq!(
        (&a["version"], &b["version"]),
        (&Value::from("9"), &Value::from("9.1"))
    );
    assert_eq!(
        (&a["booted"], &b["booted"]),
        (&Value::from(true), &Value::from(false))
    );
    assert_eq!(
        (&a["next_boot"], &b["next_boot"]),
        (&Value::from(false), &Value::from(true))
    );
    assert_eq!(
        (&a["good"], &b["good"]),
        (&Value::from(true), &Value::from(false))
    );
    assert_eq!(b["tries_left"], 3);
    assert_eq!(b["commit"], lab.commit("9.1"));
    assert_eq!(st["state"], "staged");
    let text = ok(d, &["status", "--sysroot", S], &booted_env(Slot::A));
    assert!(text.contains("● A: os/main"), "{text}");
    assert!(text.contains("  B: os/main"), "{text}");
    assert!(text.contains("Version: 9.1"), "{text}");
    assert!(text.contains("3 tries left"), "{text}");
}

#[test]
fn primer_story_install_reboot_mark_good() {
    let lab = Lab::trusted_by(&["9", "9.1"], S);
    let d = lab.path();
    install_9_then_91(&lab);

    // Reboot: the bootloader tries B.
    let (slot, kind) = boot(&d.join(S));
    assert_eq!((slot, kind), (Slot::B, DecisionKind::Trial));
    let st = status(d, S, slot);
    let b = deployment_of(&st, "B");
    assert_eq!(b["booted"], true);
    assert_eq!(b["good"], false);
    assert_eq!(b["tries_left"], 2);
    assert_eq!(st["booted_good"], false);
    assert_eq!(st["state"], "trial");
    let text = ok(d, &["status", "--sysroot", S], &booted_env(slot));
    assert!(text.contains("● B: os/main"), "{text}");
    assert!(text.contains("  A: os/main"), "{text}");

    // The new system works: mark it good.
    let out = ok(d, &["mark-good", "--sysroot", S], &booted_env(slot));
    assert!(out.contains("marked good"), "{out}");
    let st = status(d, S, slot);
    assert_eq!(st["booted_good"], true);
    assert_eq!(st["state"], "idle");
    assert_eq!(deployment_of(&st, "B")["tries_left"], 0);
    assert_eq!(
        deployment_of(&st, "A")["good"],
        true,
        "the old one stays as rollback"
    );
    let rev = st["env"]["revision"].clone();
    // A second mark-good writes nothing.
    let out = ok(d, &["mark-good", "--sysroot", S], &booted_env(slot));
    assert!(out.contains("already good"), "{out}");

    // Reboots now take B without counting.
    for _ in 0..3 {
        assert_eq!(boot(&d.join(S)), (Slot::B, DecisionKind::Confirmed));
    }
    assert_eq!(status(d, S, Slot::B)["env"]["revision"], rev);

    // The booted deployment is the 9.1 tree, file for file.
    let name = deployment_of(&st, "B")["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        snapshot(&d.join(S).join("deploy").join(&name)),
        snapshot(&lab.tree("9.1"))
    );
    let out = ok(d, &["verify", "--sysroot", S], &booted_env(Slot::B));
    assert!(out.contains("checked"), "{out}");
    // The kernel arguments for each slot are in the environment.
    assert_eq!(
        deployment_of(&st, "B")["kargs"],
        format!("ecu.slot=B ecu.deployment={name}")
    );
}

#[test]
fn failure_story_tries_used_up_rolls_back() {
    let lab = Lab::trusted_by(&["9", "9.1"], S);
    let d = lab.path();
    install_9_then_91(&lab);
    // 9.1 never reports success: three trial boots, then the bootloader falls back.
    for left in [2, 1, 0] {
        let (slot, kind) = boot(&d.join(S));
        assert_eq!((slot, kind), (Slot::B, DecisionKind::Trial));
        let st = status(d, S, slot);
        assert_eq!(deployment_of(&st, "B")["tries_left"], left);
        assert_eq!(st["booted_good"], false);
    }
    let (slot, kind) = boot(&d.join(S));
    assert_eq!((slot, kind), (Slot::A, DecisionKind::Confirmed));
    let st = status(d, S, slot);
    assert_eq!(st["state"], "rolled-back");
    assert_eq!(st["rolled_back"], true);
    assert_eq!(st["booted_good"], true);
    let (a, b) = (deployment_of(&st, "A"), deployment_of(&st, "B"));
    assert_eq!(a["booted"], true);
    assert_eq!(a["version"], "9");
    assert_eq!(b["good"], false);
    assert_eq!(b["tries_left"], 0);
    let text = ok(d, &["status", "--sysroot", S], &booted_env(slot));
    assert!(text.contains("rolled back"), "{text}");
    assert!(text.contains("● A: os/main"), "{text}");
    // It stays there.
    assert_eq!(boot(&d.join(S)), (Slot::A, DecisionKind::Confirmed));
    // A rollback now has nowhere to go.
    let err = fails(d, &["rollback", "--sysroot", S], &booted_env(Slot::A));
    assert!(err.contains("would leave nothing bootable"), "{err}");
    // mark-good on A settles the state; installing again replaces the failed B.
    ok(d, &["mark-good", "--sysroot", S], &booted_env(Slot::A));
    let out = ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &booted_env(Slot::A),
    );
    assert!(out.contains("staged") && out.contains("slot B"), "{out}");
    assert_eq!(boot(&d.join(S)), (Slot::B, DecisionKind::Trial));
}

#[test]
fn refusals_leave_a_bootable_device() {
    let lab = Lab::trusted_by(&["9", "9.1", "9.2"], S);
    let d = lab.path();
    let e = fails(d, &["mark-good", "--sysroot", S], &booted_env(Slot::A));
    assert!(
        e.contains("no deployment yet") || e.contains("not an ecu-agent"),
        "{e}"
    );
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let e = fails(d, &["rollback", "--sysroot", S], &booted_env(Slot::A));
    assert!(e.contains("no deployment to roll back to"), "{e}");
    // Without S/run/booted (written at provisioning) nothing says which slot is booted.
    let _ = std::fs::remove_file(d.join(S).join("run/booted"));
    let e = fails(d, &["mark-good", "--sysroot", S], &[]);
    assert!(e.contains("cannot tell which slot is booted"), "{e}");
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &[],
    );
    assert!(e.contains("cannot tell which slot is booted"), "{e}");

    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &booted_env(Slot::A),
    );
    assert_eq!(boot(&d.join(S)).0, Slot::B);
    // On trial in B, A the only good fallback: installing 9.2 would replace A.
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &booted_env(Slot::B),
    );
    assert!(e.contains("mark the booted deployment good"), "{e}");
    let st = status(d, S, Slot::B);
    assert_eq!(deployment_of(&st, "A")["version"], "9");
    // Roll back from the trial: the next boot returns to A.
    let out = ok(d, &["rollback", "--sysroot", S], &booted_env(Slot::B));
    assert!(out.contains("slot A"), "{out}");
    let st = status(d, S, Slot::B);
    assert_eq!(st["next_boot"], "A");
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &booted_env(Slot::B),
    );
    assert!(e.contains("reboot into slot A"), "{e}");
    assert_eq!(boot(&d.join(S)), (Slot::A, DecisionKind::Confirmed));
    let st = status(d, S, Slot::A);
    assert_eq!(st["state"], "rolled-back");
    // Now 9.2 may replace the abandoned 9.1.
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &booted_env(Slot::A),
    );
    let st = status(d, S, Slot::A);
    assert_eq!(deployment_of(&st, "B")["version"], "9.2");
    assert_eq!(
        std::fs::read_dir(d.join(S).join("deploy")).unwrap().count(),
        4,
        "two deployments and their origin files"
    );
    // The ref comes from the origin file even when the store holds no history linking them.
    assert_eq!(deployment_of(&st, "A")["ref"], "os/main");
}

#[test]
fn deploy_stages_a_commit_from_the_store_and_rollback_switches_back() {
    let lab = Lab::trusted_by(&["9", "9.1"], S);
    let d = lab.path();
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    // apply-offline only fills the store (the `rpm-ostree rebase` primer step comes next).
    ok(
        d,
        &[
            "apply-offline",
            "--sysroot",
            S,
            &lab.update(Some("9"), "9.1"),
        ],
        &[],
    );
    assert_eq!(
        status(d, S, Slot::A)["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let e = fails(
        d,
        &["deploy", "--sysroot", S, "nosuchref"],
        &booted_env(Slot::A),
    );
    assert!(e.contains("neither a ref nor a commit"), "{e}");
    let out = ok(
        d,
        &["deploy", "--sysroot", S, "os/main"],
        &booted_env(Slot::A),
    );
    assert!(out.contains("staged"), "{out}");
    // Deploying it again changes nothing.
    let out = ok(
        d,
        &["deploy", "--sysroot", S, &lab.commit("9.1")[..10]],
        &booted_env(Slot::A),
    );
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(boot(&d.join(S)), (Slot::B, DecisionKind::Trial));
    ok(d, &["mark-good", "--sysroot", S], &booted_env(Slot::B));
    // rpm-ostree rollback: the previous deployment becomes the default.
    let out = ok(
        d,
        &["rollback", "--sysroot", S, "--json"],
        &booted_env(Slot::B),
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["slot"], "A");
    assert_eq!(status(d, S, Slot::B)["state"], "rollback-pending");
    assert_eq!(boot(&d.join(S)), (Slot::A, DecisionKind::Confirmed));
    // Deploying the booted commit while it is the next boot is a no-op.
    let out = ok(
        d,
        &["deploy", "--sysroot", S, lab.commit("9")],
        &booted_env(Slot::A),
    );
    assert!(out.contains("nothing changed"), "{out}");
}

#[test]
fn simulate_boot_rehearses_the_cycle() {
    let lab = Lab::trusted_by(&["9", "9.1"], S);
    let d = lab.path();
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    // No override: provisioning recorded A in S/run/booted.
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &[],
    );
    let out = ok(d, &["simulate-boot", "--sysroot", S], &[]);
    assert!(
        out.contains("booted slot B") && out.contains("trial"),
        "{out}"
    );
    assert!(out.contains("match its commit"), "{out}");
    let st: Value =
        serde_json::from_str(&ok(d, &["status", "--sysroot", S, "--json"], &[])).unwrap();
    assert_eq!(st["booted_slot"], "B");
    assert_eq!(st["booted_source"], "run-file");
    ok(d, &["mark-good", "--sysroot", S], &[]);
    let out = ok(d, &["simulate-boot", "--sysroot", S, "--json"], &[]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["kind"], "confirmed");
    assert_eq!(r["changed"], false);
    assert_eq!(r["verified"], true);
}

#[test]
fn every_backend_runs_the_story() {
    for conf in [
        "backend = uboot\n",
        "backend = grub\n",
        "backend = uboot-redundant\nenv = envs/one.img\nenv-redundant = envs/one.img\nenv-redundant-offset = 0x2000\nenv-size = 0x2000\ntries = 2\n",
    ] {
        let lab = Lab::new(&["9", "9.1"]);
        let d = lab.path();
        std::fs::create_dir_all(d.join(S)).unwrap();
        std::fs::write(d.join(S).join("agent.conf"), conf).unwrap();
        lab.trust(S);
        if conf.contains("one.img") {
            std::fs::create_dir_all(d.join(S).join("envs")).unwrap();
            std::fs::write(d.join(S).join("envs/one.img"), vec![0xffu8; 0x4000]).unwrap();
        }
        ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
        ok(d, &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")], &booted_env(Slot::A));
        let tries = if conf.contains("tries = 2") { 2 } else { 3 };
        for _ in 0..tries {
            assert_eq!(boot(&d.join(S)), (Slot::B, DecisionKind::Trial), "{conf}");
        }
        assert_eq!(boot(&d.join(S)), (Slot::A, DecisionKind::Confirmed), "{conf}");
        assert_eq!(status(d, S, Slot::A)["state"], "rolled-back", "{conf}");
    }
}

#[test]
fn fw_printenv_reads_the_environment() {
    let have = std::process::Command::new("fw_printenv")
        .arg("-V")
        .output()
        .is_ok();
    if !have {
        test_support::tool::skip(
            "fw_printenv_reads_the_environment",
            "fw_printenv is not installed (Debian package libubootenv-tool)",
        );
        return;
    }
    let lab = Lab::trusted_by(&["9", "9.1"], S);
    let d = lab.path();
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &booted_env(Slot::A),
    );
    let cfg = ok(d, &["status", "--sysroot", S, "--show-env-config"], &[]);
    std::fs::write(d.join("fw_env.config"), &cfg).unwrap();
    let print = || {
        let o = std::process::Command::new("fw_printenv")
            .arg("-c")
            .arg(d.join("fw_env.config"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let env = print();
    let name = format!("{}.0", lab.commit("9.1"));
    assert!(env.contains(&format!("ECU_B_NAME={name}")), "{env}");
    assert!(env.contains("ECU_B_TRIES=3"), "{env}");
    assert!(env.contains("ECU_B_PRIO=2"), "{env}");
    assert!(
        env.contains(&format!("ECU_B_ARGS=ecu.slot=B ecu.deployment={name}")),
        "{env}"
    );
    // A value set by fw_setenv (as an integrator would) survives the agent's next write.
    let o = std::process::Command::new("fw_setenv")
        .arg("-c")
        .arg(d.join("fw_env.config"))
        .args(["bootdelay", "0"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(boot(&d.join(S)).0, Slot::B);
    ok(d, &["mark-good", "--sysroot", S], &booted_env(Slot::B));
    let env = print();
    assert!(
        env.contains("ECU_B_OK=1") && env.contains("bootdelay=0"),
        "{env}"
    );
}

/// A tmpfs mounted on a directory for the life of the value (unmounted on drop, also when the
/// test fails).
struct TmpfsMount(std::path::PathBuf);

impl TmpfsMount {
    fn new(at: &std::path::Path) -> Option<TmpfsMount> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| TmpfsMount(at.to_path_buf()))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn install_from_stdin_and_copy_across_filesystems() {
    let lab = Lab::trusted_by(&["9", "9.1"], S);
    let d = lab.path();
    // S/deploy on another filesystem than S/repo: hard links fail, the checkout copies. The
    // other filesystem is a tmpfs mounted on S/deploy (a symlink there would be refused as a
    // planted link: the sysroot's directories are opened without following links).
    std::fs::create_dir_all(d.join(S).join("deploy")).unwrap();
    let other = TmpfsMount::new(&d.join(S).join("deploy"));
    if other.is_none() {
        eprintln!("SKIP the cross-filesystem part: cannot mount a tmpfs (not root?)");
    }
    let file = std::fs::File::open(lab.update(None, "9")).unwrap();
    let o = std::process::Command::new(bin())
        .args(["install", "--sysroot", S, "-", "--json"])
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .stdin(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["action"], "provisioned");
    assert_eq!(r["applied"]["version"], "9");
    assert_eq!(r["hardlinked"], other.is_none());
    let name = r["deployment"].as_str().unwrap();
    assert_eq!(
        snapshot(&d.join(S).join("deploy").join(name)),
        snapshot(&lab.tree("9"))
    );
    ok(d, &["verify", "--sysroot", S], &booted_env(Slot::A));
}
