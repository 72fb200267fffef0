//! What the device accepts (issue 8): keys in `S/agent.conf`, signatures required by default
//! by every command that installs, `--allow-unsigned` explicit and loud.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::Path;

use bootloader_hooks::Slot;

const S: &str = "sysroot";

fn booted(s: Slot) -> [(&'static str, &'static str); 1] {
    [("ECU_AGENT_BOOTED_SLOT", s.as_str())]
}

/// An unsigned from-scratch file of version `v` (the lab signs its own).
fn unsigned(lab: &Lab, v: &str) -> String {
    let out = format!("{v}-unsigned.update");
    lab.generate(None, v, "os/main", &out, false);
    out
}

/// Everything under `root` (paths and contents), to show that a refusal changed nothing.
fn tree_of(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if !root.exists() {
        return out;
    }
    for (p, (_, _, c)) in snapshot(root) {
        // Lock files are created by whoever takes the lock.
        if p.file_name().is_some_and(|n| n != "lock") {
            out.push((p.to_string_lossy().into_owned(), c));
        }
    }
    out
}

#[test]
fn signatures_are_required_by_default_and_keys_live_in_agent_conf() {
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    let full9 = lab.update(None, "9");
    let raw9 = unsigned(&lab, "9");

    // No key anywhere: every command that installs refuses before touching anything, and says
    // how to configure keys.
    for cmd in ["install", "apply-offline"] {
        for file in [&full9, &raw9] {
            let e = fails(d, &[cmd, "--sysroot", S, file], &[]);
            assert!(
                e.contains("no trusted key")
                    && e.contains("trusted-key =")
                    && e.contains("agent.conf")
                    && e.contains("--allow-unsigned"),
                "{cmd} {file}: {e}"
            );
            assert!(!d.join(S).exists(), "{cmd} {file}: the sysroot was created");
        }
    }

    // Keys from agent.conf: one in hex, one as a key file; no --trusted-key needed.
    ok(d, &["keygen", "--out", "old.key"], &[]);
    fs::create_dir_all(d.join(S)).unwrap();
    fs::write(
        d.join(S).join("agent.conf"),
        format!(
            "# keys for rotation\ntrusted-key = ../old.key.pub\ntrusted-key = {}\n",
            lab.key_hex()
        ),
    )
    .unwrap();
    let out = ok(d, &["install", "--sysroot", S, &full9, "--json"], &[]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["action"], "provisioned");
    assert_eq!(r["applied"]["verified"], true);
    assert_eq!(r["applied"]["allow_unsigned"], false);
    // The configuration is kept (comments and keys) and records the ref followed.
    let conf = fs::read_to_string(d.join(S).join("agent.conf")).unwrap();
    assert!(
        conf.starts_with("# keys for rotation\ntrusted-key = ../old.key.pub\n"),
        "{conf}"
    );
    assert!(conf.contains("\nref = os/main\n"), "{conf}");
    // An unsigned file is refused although keys are configured, and changes nothing.
    let raw91 = unsigned(&lab, "9.1");
    let before = tree_of(&d.join(S));
    let e = fails(d, &["install", "--sysroot", S, &raw91], &booted(Slot::A));
    assert!(e.contains("not signed"), "{e}");
    assert_eq!(
        tree_of(&d.join(S)),
        before,
        "a refused install changed the sysroot"
    );

    // A bad key line is an error naming the line, for every command that reads the file.
    let good_conf = conf.clone();
    for (bad, says) in [
        ("trusted-key = 1234\n", "key"),
        ("trusted-key = nosuch.pub\n", "nosuch.pub"),
        (
            &format!("revoked-key = {}zz\n", &lab.key_hex()[..62]),
            "key",
        ),
        ("ref = ../evil\n", "ref name"),
    ] {
        fs::write(d.join(S).join("agent.conf"), format!("{good_conf}{bad}")).unwrap();
        let e = fails(d, &["status", "--sysroot", S], &booted(Slot::A));
        let line = good_conf.lines().count() + 1;
        assert!(
            e.contains(&format!("agent.conf:{line}:")) && e.contains(says),
            "{bad}: {e}"
        );
    }
    fs::write(d.join(S).join("agent.conf"), &good_conf).unwrap();

    // --trusted-key adds a key for one command.
    let plain = "plain";
    ok(
        d,
        &[
            "apply-offline",
            "--sysroot",
            plain,
            "--trusted-key",
            "lab.key.pub",
            &full9,
        ],
        &[],
    );
    // --allow-unsigned takes an unsigned file, loudly, and says so in the JSON.
    let r = agent_env(
        d,
        &[
            "apply-offline",
            "--sysroot",
            "plain2",
            "--allow-unsigned",
            "--json",
            &raw9,
        ],
        &[],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("WARNING: --allow-unsigned"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("NOT SIGNED"), "{}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (&j["allow_unsigned"], &j["signed"]),
        (&true.into(), &false.into())
    );
}

/// A from-scratch file of version `v` for ref `r`, signed by the lab key.
fn for_ref(lab: &Lab, v: &str, r: &str) -> String {
    let out = format!("{v}-{}.update", r.replace('/', "-"));
    lab.generate(None, v, r, &out, true);
    out
}

/// What a refused install must not change: refs, deployments, boot environment, floor,
/// configuration.
fn device_state(root: &Path) -> Vec<(String, Vec<u8>)> {
    tree_of(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("repo/tmp/"))
        .collect()
}

#[test]
fn a_revoked_key_is_refused_by_name() {
    let lab = Lab::new(&["9", "9.1"]);
    let d = lab.path();
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let before = device_state(&d.join(S));
    let conf = fs::read_to_string(d.join(S).join("agent.conf")).unwrap();
    // Revoked while still trusted: revocation wins.
    fs::write(
        d.join(S).join("agent.conf"),
        format!("{conf}revoked-key = {}\n", lab.key_hex()),
    )
    .unwrap();
    let before_conf = device_state(&d.join(S));
    for cmd in ["install", "apply-offline"] {
        let e = fails(
            d,
            &[cmd, "--sysroot", S, &lab.update(Some("9"), "9.1")],
            &booted(Slot::A),
        );
        assert!(
            e.contains("revoked") && e.contains(&lab.key_hex()[..16]),
            "{cmd}: {e}"
        );
        assert_eq!(
            device_state(&d.join(S)),
            before_conf,
            "{cmd} changed the device"
        );
    }
    assert_ne!(before, before_conf);
}

#[test]
fn an_update_for_another_ref_needs_rebase() {
    let lab = Lab::new(&["9", "9.1", "9.2"]);
    let d = lab.path();
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let st = status(d, S, Slot::A);
    assert_eq!(st["refs_followed"], serde_json::json!(["os/main"]), "{st}");
    let text = ok(d, &["status", "--sysroot", S], &booted(Slot::A));
    assert!(text.contains("Follows: os/main;"), "{text}");

    // Another ECU type's update: refused, naming the ref and --rebase; nothing changes.
    let other = for_ref(&lab, "9.1", "os/other");
    let before = device_state(&d.join(S));
    for cmd in ["install", "apply-offline"] {
        let e = fails(d, &[cmd, "--sysroot", S, &other], &booted(Slot::A));
        assert!(
            e.contains("\"os/other\"")
                && e.contains("does not follow")
                && e.contains("--rebase os/other"),
            "{cmd}: {e}"
        );
        assert_eq!(device_state(&d.join(S)), before, "{cmd} changed the device");
    }

    // --rebase names it: staged, and followed from now on.
    let out = agent_env(
        d,
        &["install", "--sysroot", S, "--rebase", "os/other", &other],
        &booted(Slot::A),
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("staged"), "{}", out.stdout);
    assert!(
        out.stderr.contains("now follows os/other"),
        "{}",
        out.stderr
    );
    let st = status(d, S, Slot::A);
    assert_eq!(st["refs_followed"], serde_json::json!(["os/other"]), "{st}");
    assert_eq!(deployment_of(&st, "B")["ref"], "os/other");
    // The old ref is now the foreign one.
    boot(&d.join(S));
    ok(d, &["mark-good", "--sysroot", S], &booted(Slot::B));
    let e = fails(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &booted(Slot::B),
    );
    assert!(
        e.contains("\"os/main\"") && e.contains("does not follow"),
        "{e}"
    );
    // A bad --rebase is refused before anything is read.
    let e = fails(
        d,
        &["install", "--sysroot", S, "--rebase", "../x", &other],
        &booted(Slot::B),
    );
    assert!(e.contains("ref name"), "{e}");
    // agent.conf pins refs: several may be followed at once.
    let conf = fs::read_to_string(d.join(S).join("agent.conf")).unwrap();
    fs::write(
        d.join(S).join("agent.conf"),
        format!("{conf}ref = os/main\n"),
    )
    .unwrap();
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(None, "9.2")],
        &booted(Slot::B),
    );
}

#[test]
fn the_floor_rises_only_at_mark_good_and_refuses_older_updates() {
    let lab = Lab::with_security_versions(&[("8", 1), ("9", 2), ("9.1", 3)], None);
    let d = lab.path();
    lab.trust(S);
    let floor = || agent_linux::floor::read(&d.join(S)).unwrap();
    ok(d, &["install", "--sysroot", S, &lab.update(None, "9")], &[]);
    let st = status(d, S, Slot::A);
    assert_eq!(st["security_floor"], 0, "{st}");
    assert_eq!(deployment_of(&st, "A")["security_version"], 2, "{st}");
    // mark-good raises the floor to the confirmed deployment's security version.
    let out = ok(d, &["mark-good", "--sysroot", S], &booted(Slot::A));
    assert!(out.contains("floor raised from 0 to 2"), "{out}");
    assert_eq!(floor(), 2);
    let text = ok(d, &["status", "--sysroot", S], &booted(Slot::A));
    assert!(text.contains("security floor 2"), "{text}");
    assert!(text.contains("Security: version 2"), "{text}");

    // An older signed update (a replay of 8) is refused by every command that installs,
    // naming both numbers, and changes nothing.
    let old = lab.update(None, "8");
    let before = device_state(&d.join(S));
    for cmd in ["install", "apply-offline"] {
        let e = fails(d, &[cmd, "--sysroot", S, &old], &booted(Slot::A));
        assert!(
            e.contains("security version 1 is below this device's floor 2"),
            "{cmd}: {e}"
        );
        assert_eq!(device_state(&d.join(S)), before, "{cmd} changed the device");
    }

    // Installing a newer one does not raise the floor: the old deployment stays a fallback.
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(Some("9"), "9.1")],
        &booted(Slot::A),
    );
    assert_eq!(floor(), 2);
    assert_eq!(boot(&d.join(S)).0, Slot::B);
    // The trial is rolled back: the floor does not stop the fallback to 9.
    ok(d, &["rollback", "--sysroot", S], &booted(Slot::B));
    assert_eq!(boot(&d.join(S)).0, Slot::A);
    assert_eq!(floor(), 2);
    // Staged again and confirmed this time: the floor follows.
    ok(
        d,
        &["deploy", "--sysroot", S, lab.commit("9.1")],
        &booted(Slot::A),
    );
    assert_eq!(boot(&d.join(S)).0, Slot::B);
    let out = ok(d, &["mark-good", "--sysroot", S], &booted(Slot::B));
    assert!(out.contains("floor raised from 2 to 3"), "{out}");
    // `deploy` of a commit in the store below the floor is refused too.
    let e = fails(
        d,
        &["deploy", "--sysroot", S, lab.commit("9")],
        &booted(Slot::B),
    );
    assert!(
        e.contains("security version 2, below this device's anti-rollback floor 3"),
        "{e}"
    );
    // Nothing lowers it: marking the older deployment good after a rollback keeps 3.
    ok(d, &["rollback", "--sysroot", S], &booted(Slot::B));
    assert_eq!(boot(&d.join(S)).0, Slot::A);
    let out = ok(d, &["mark-good", "--sysroot", S], &booted(Slot::A));
    assert!(!out.contains("floor raised"), "{out}");
    assert_eq!(floor(), 3);
    // A floor file that is not a number is an error, never a floor of 0.
    fs::write(d.join(S).join("security-floor"), "x\n").unwrap();
    let e = fails(d, &["install", "--sysroot", S, &old], &booted(Slot::A));
    assert!(
        e.contains("security-floor") && e.contains("not a security version"),
        "{e}"
    );
}
