//! `ecu-agent upgrade --from DIR`: the signed index `generate-deltas` writes, the choice of
//! the delta from the booted commit or the from-scratch file, and every refusal (a tampered
//! or unsigned index, a stale one, a file whose size or SHA-256 is not the index's) with
//! nothing committed and the booted system untouched. The same over HTTP against a real
//! nginx: `upgrade_http.rs`.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::Path;
use std::process::Command;

use agent_core::object::ObjectId;
use agent_linux::index::{self, KeyPolicy};
use bootloader_hooks::Slot;

const S: &str = "sysroot";

/// A lab with 1 and 2 on os/main; the sysroot runs 1 (slot A, provisioned); the folder
/// `pub` holds what `generate-deltas` writes for 2 (from scratch, and the delta from 1).
fn published() -> Lab {
    let lab = Lab::new(&["1", "2"]);
    let d = lab.path();
    lab.trust(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    publish(&lab, "pub", &["--sign-key", LAB_KEY]);
    lab
}

fn publish(lab: &Lab, dir: &str, extra: &[&str]) {
    let mut args = vec!["generate-deltas", "--repo", "build", "--out", dir];
    args.extend_from_slice(extra);
    ok(lab.path(), &args, &[]);
}

/// Runs `ecu-agent upgrade --sysroot S` with `args`, booted in slot A; (exit code, stdout,
/// stderr).
fn upgrade(d: &Path, args: &[&str], slot: Slot) -> (i32, String, String) {
    upgrade_in(d, S, args, slot)
}

fn has_commit(d: &Path, id: &str) -> bool {
    sysroot_has_commit(&d.join(S), id)
}

/// The index `bytes` as the lab key (in `d`) verifies it, and that key's secret seed, to sign
/// an edited index with.
fn lab_index(d: &Path, bytes: &[u8]) -> (index::Index, [u8; 32]) {
    let seed = agent_linux::keys::read_key(&d.join(LAB_KEY)).unwrap();
    let key = [agent_linux::keys::public_key(&seed)];
    let policy = KeyPolicy {
        trusted: &key,
        revoked: &[],
        allow_unsigned: false,
    };
    (index::verify(bytes, &policy).unwrap().0, seed)
}

/// The delta's file name in `pub`.
fn delta_file(lab: &Lab) -> String {
    format!("os-main-{}-{}.update", lab.commit("1"), lab.commit("2"))
}

/// What must hold after a refused upgrade: nothing of 2 committed, the deployments and the
/// boot environment exactly as before.
fn untouched(lab: &Lab, before: &serde_json::Value) {
    let d = lab.path();
    assert!(!has_commit(d, lab.commit("2")), "commit 2 was committed");
    assert_eq!(&status(d, S, Slot::A), before);
    assert_eq!(boot(&d.join(S)).0, Slot::A);
}

#[test]
fn upgrade_from_a_folder_takes_the_delta_from_the_booted_commit() {
    let lab = published();
    let d = lab.path();
    let (c1, c2) = (lab.commit("1").to_string(), lab.commit("2").to_string());
    // The index lists both files with their sizes and hashes, signed by the lab key.
    let bytes = fs::read(d.join("pub").join(index::INDEX_FILE)).unwrap();
    let key = [agent_linux::keys::read_key(&d.join(format!("{LAB_KEY}.pub"))).unwrap()];
    let (idx, sig) = index::verify(
        &bytes,
        &KeyPolicy {
            trusted: &key,
            revoked: &[],
            allow_unsigned: false,
        },
    )
    .unwrap();
    assert_eq!(sig.algorithm, "ed25519");
    assert_eq!(idx.entries.len(), 2);
    for e in &idx.entries {
        let f = fs::read(d.join("pub").join(&e.file)).unwrap();
        assert_eq!(e.size, f.len() as u64);
        assert_eq!(e.to.to_string(), c2);
        assert_eq!(e.version, "2");
        use sha2::Digest;
        assert_eq!(e.sha256, <[u8; 32]>::from(sha2::Sha256::digest(&f)));
    }

    // --check says what it would take and changes nothing.
    let (code, out, err) = upgrade(d, &["--from", "pub", "--check", "--json"], Slot::A);
    assert_eq!(code, 0, "{err}");
    let plan = json(&out);
    assert_eq!(plan["action"], "install");
    assert_eq!(plan["kind"], "delta");
    assert_eq!(plan["booted"], c1.as_str());
    assert_eq!(plan["to"], c2.as_str());
    assert_eq!(plan["file"]["file"], delta_file(&lab).as_str());
    assert!(!has_commit(d, &c2));
    assert!(!d.join(S).join(agent_linux::upgrade::SERIAL_FILE).exists());
    let (code, text, _) = upgrade(d, &["--from", "pub", "--check"], Slot::A);
    assert_eq!(code, 0);
    assert!(text.contains("take:     delta"), "{text}");

    // The upgrade installs the delta and stages 2 in slot B.
    let (code, out, err) = upgrade(d, &["--from", "pub", "--json"], Slot::A);
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["staged"]["action"], "staged", "{r}");
    assert_eq!(r["staged"]["slot"], "B");
    assert_eq!(r["staged"]["applied"]["from"], c1.as_str());
    assert_eq!(r["transfer"]["attempts"], 1);
    assert_eq!(
        r["transfer"]["received"],
        fs::metadata(d.join("pub").join(delta_file(&lab)))
            .unwrap()
            .len()
    );
    assert!(has_commit(d, &c2));
    assert_eq!(
        fs::read_to_string(d.join(S).join(agent_linux::upgrade::SERIAL_FILE)).unwrap(),
        format!("{}\n", idx.serial)
    );

    // Staged already: nothing to take (77 with --check, 0 without).
    let (code, out, _) = upgrade(d, &["--from", "pub", "--check", "--json"], Slot::A);
    assert_eq!((code, json(&out)["action"].clone()), (77, "staged".into()));
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 0, "{err}");

    // Booted and good: up to date.
    assert_eq!(boot(&d.join(S)).0, Slot::B);
    ok(d, &["mark-good", "--sysroot", S], &booted(Slot::B));
    let (code, out, _) = upgrade(d, &["--from", "pub", "--check"], Slot::B);
    assert_eq!(code, 77);
    assert!(out.contains("already up to date"), "{out}");
    let (code, out, err) = upgrade(d, &["--from", "pub", "--json"], Slot::B);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["plan"]["action"], "up-to-date");
    ok(d, &["verify", "--sysroot", S], &booted(Slot::B));
}

#[test]
fn an_empty_sysroot_takes_the_from_scratch_file() {
    let lab = published();
    let d = lab.path();
    lab.trust("fresh");
    let o = Command::new(bin())
        .args(["upgrade", "--sysroot", "fresh", "--from", "pub", "--json"])
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env_remove("ECU_AGENT_BOOTED_SLOT")
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    let r = json(&out);
    assert_eq!(r["plan"]["kind"], "from-scratch");
    assert_eq!(r["plan"]["booted"], serde_json::Value::Null);
    assert_eq!(r["staged"]["action"], "provisioned");
    assert_eq!(r["staged"]["commit"], lab.commit("2"));
}

#[test]
fn without_the_booted_source_nor_a_from_scratch_file_nothing_is_applicable() {
    let lab = published();
    let d = lab.path();
    let before = status(d, S, Slot::A);
    // Only the from-scratch file missing: the delta is still taken. Only the delta missing:
    // the from-scratch file. Neither (the index names a delta from another commit only):
    // refused, naming the commits.
    let idx_path = d.join("pub").join(index::INDEX_FILE);
    let (mut idx, seed) = lab_index(d, &fs::read(&idx_path).unwrap());
    idx.entries.retain(|e| e.from.is_some());
    idx.entries[0].from = Some(ObjectId([0x42; 32]));
    fs::write(&idx_path, index::emit(&idx, Some(&seed))).unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 1);
    assert!(
        err.contains("nothing applicable")
            && err.contains(lab.commit("1"))
            && err.contains(&"42".repeat(32)),
        "{err}"
    );
    untouched(&lab, &before);
    // Another ref only.
    let (code, _, err) = upgrade(d, &["--from", "pub", "--ref", "os/other"], Slot::A);
    assert_eq!(code, 1);
    assert!(
        err.contains("no update for ref os/other") && err.contains("os/main"),
        "{err}"
    );
}

#[test]
fn a_tampered_file_is_refused_and_nothing_is_committed() {
    let lab = published();
    let d = lab.path();
    let before = status(d, S, Slot::A);
    let delta = d.join("pub").join(delta_file(&lab));
    let good = fs::read(&delta).unwrap();

    // A byte changed in a part.
    let mut bad = good.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0x40;
    fs::write(&delta, &bad).unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("part 0"), "{err}");
    untouched(&lab, &before);

    // A byte appended: the size is not the index's, refused before anything is read.
    let mut long = good.clone();
    long.push(0);
    fs::write(&delta, &long).unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "the file is {} bytes, the index says {}",
            good.len() + 1,
            good.len()
        )),
        "{err}"
    );
    untouched(&lab, &before);

    // The file intact, but the index (signed) names another SHA-256: refused at the end of
    // the transfer, before the installer commits.
    fs::write(&delta, &good).unwrap();
    let idx_path = d.join("pub").join(index::INDEX_FILE);
    let original = fs::read(&idx_path).unwrap();
    let (mut idx, seed) = lab_index(d, &original);
    for e in &mut idx.entries {
        e.sha256[0] ^= 1;
    }
    fs::write(&idx_path, index::emit(&idx, Some(&seed))).unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 1);
    assert!(
        err.contains("the file's SHA-256 is") && err.contains("nothing was installed"),
        "{err}"
    );
    untouched(&lab, &before);

    // Everything as published: the upgrade goes through.
    fs::write(&idx_path, &original).unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 0, "{err}");
    assert!(has_commit(d, lab.commit("2")));
}

#[test]
fn a_tampered_unsigned_or_foreign_index_is_refused() {
    let lab = published();
    let d = lab.path();
    let before = status(d, S, Slot::A);
    let idx_path = d.join("pub").join(index::INDEX_FILE);
    let original = fs::read(&idx_path).unwrap();

    // One byte of an entry changed (its size).
    let mut bad = original.clone();
    let at = bad.len() - 65 - 40;
    bad[at] ^= 1;
    fs::write(&idx_path, &bad).unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub", "--check"], Slot::A);
    assert_eq!(code, 1);
    assert!(
        err.contains("verifies under none of the 1 trusted keys"),
        "{err}"
    );

    // Unsigned.
    publish(&lab, "unsigned", &[]);
    let (code, _, err) = upgrade(d, &["--from", "unsigned"], Slot::A);
    assert_eq!(code, 1);
    assert!(err.contains("the index is not signed"), "{err}");
    untouched(&lab, &before);

    // Signed by a key the device does not trust.
    ok(d, &["keygen", "--out", "other.key"], &[]);
    publish(&lab, "foreign", &["--sign-key", "other.key"]);
    let (code, _, err) = upgrade(d, &["--from", "foreign"], Slot::A);
    assert_eq!(code, 1);
    assert!(err.contains("verifies under none"), "{err}");

    // Signed by a trusted key that is revoked too.
    let conf = d.join(S).join("agent.conf");
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, format!("{text}revoked-key = {}\n", lab.key_hex())).unwrap();
    fs::write(&idx_path, &original).unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 1);
    assert!(
        err.contains("signed by the revoked key") && err.contains(&lab.key_hex()),
        "{err}"
    );
    fs::write(&conf, text).unwrap();
    untouched(&lab, &before);

    // Not an index at all.
    fs::write(&idx_path, b"<html>not found</html>").unwrap();
    let (code, _, err) = upgrade(d, &["--from", "pub"], Slot::A);
    assert_eq!(code, 1);
    assert!(err.contains("not an update index"), "{err}");
    untouched(&lab, &before);
}

#[test]
fn an_older_or_expired_index_is_refused() {
    let lab = published();
    let d = lab.path();
    let before = status(d, S, Slot::A);
    // Serial 100 accepted (and remembered, although nothing is installed from it: --check
    // remembers nothing, the upgrade does).
    publish(
        &lab,
        "p100",
        &["--sign-key", LAB_KEY, "--index-serial", "100"],
    );
    let (code, _, err) = upgrade(d, &["--from", "p100", "--check"], Slot::A);
    assert_eq!(code, 0, "{err}");
    publish(&lab, "p7", &["--sign-key", LAB_KEY, "--index-serial", "7"]);
    let (code, _, err) = upgrade(d, &["--from", "p7", "--check"], Slot::A);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = upgrade(d, &["--from", "p100"], Slot::A);
    assert_eq!(code, 0, "{err}");
    // An older index (a stale mirror, or one replayed to hold the device back) is refused.
    let (code, _, err) = upgrade(d, &["--from", "p7", "--check"], Slot::A);
    assert_eq!(code, 1);
    assert!(
        err.contains("serial 7, older than serial 100 this device already accepted"),
        "{err}"
    );
    // The same serial again is fine.
    let (code, _, err) = upgrade(d, &["--from", "p100", "--check"], Slot::A);
    assert_eq!(code, 77, "{err}");

    // An index that expired (valid for 1 s, read 2 s later).
    let lab = published();
    let d = lab.path();
    publish(
        &lab,
        "short",
        &["--sign-key", LAB_KEY, "--index-valid-for", "1"],
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (code, _, err) = upgrade(d, &["--from", "short"], Slot::A);
    assert_eq!(code, 1);
    assert!(err.contains("the index expired at"), "{err}");
    untouched(&lab, &status(d, S, Slot::A));
    let _ = before;
}
