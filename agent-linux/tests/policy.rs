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
    ok(
        lab.path(),
        &[
            "delta",
            "generate",
            "--repo",
            "build",
            "--to",
            lab.commit(v),
            "--ref",
            "os/main",
            "--empty",
            "--out",
            &out,
        ],
        &[],
    );
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
    assert!(conf.starts_with("# keys for rotation\ntrusted-key = ../old.key.pub\n"), "{conf}");
    assert!(conf.contains("\nref = os/main\n"), "{conf}");
    // An unsigned file is refused although keys are configured, and changes nothing.
    let raw91 = unsigned(&lab, "9.1");
    let before = tree_of(&d.join(S));
    let e = fails(d, &["install", "--sysroot", S, &raw91], &booted(Slot::A));
    assert!(e.contains("not signed"), "{e}");
    assert_eq!(tree_of(&d.join(S)), before, "a refused install changed the sysroot");

    // A bad key line is an error naming the line, for every command that reads the file.
    let good_conf = conf.clone();
    for (bad, says) in [
        ("trusted-key = 1234\n", "key"),
        ("trusted-key = nosuch.pub\n", "nosuch.pub"),
        (&format!("revoked-key = {}zz\n", &lab.key_hex()[..62]), "key"),
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
        &["apply-offline", "--sysroot", plain, "--trusted-key", "lab.key.pub", &full9],
        &[],
    );
    // --allow-unsigned takes an unsigned file, loudly, and says so in the JSON.
    let r = agent_env(
        d,
        &["apply-offline", "--sysroot", "plain2", "--allow-unsigned", "--json", &raw9],
        &[],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("WARNING: --allow-unsigned"), "{}", r.stderr);
    assert!(r.stderr.contains("NOT SIGNED"), "{}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((&j["allow_unsigned"], &j["signed"]), (&true.into(), &false.into()));
}
