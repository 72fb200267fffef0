//! `cleanup` keeps disk use bounded: after many update cycles only the two live deployments
//! and the ref heads' objects remain.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::path::Path;

use bootloader_hooks::{DecisionKind, Slot};
use serde_json::Value;

const S: &str = "sysroot";

fn count_objects(repo: &Path) -> (usize, usize) {
    let (mut commits, mut all) = (0, 0);
    for sub in fs::read_dir(repo.join("objects")).unwrap() {
        for e in fs::read_dir(sub.unwrap().path()).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            all += 1;
            if n.ends_with(".commit") {
                commits += 1;
            }
        }
    }
    (commits, all)
}

#[test]
fn cleanup_bounds_disk_use_over_update_cycles() {
    let versions = ["1", "2", "3", "4", "5"];
    let lab = Lab::trusted_by(&versions, S);
    let d = lab.path();
    let root = d.join(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    let mut booted = Slot::A;
    let mut sizes = Vec::new();
    for w in versions.windows(2) {
        let env = [("ECU_AGENT_BOOTED_SLOT", booted.as_str())];
        ok(
            d,
            &["install", "--sysroot", S, &lab.update(Some(w[0]), w[1])],
            &env,
        );
        let (slot, kind) = boot(&root);
        assert_eq!(kind, DecisionKind::Trial);
        booted = slot;
        let env = [("ECU_AGENT_BOOTED_SLOT", booted.as_str())];
        ok(d, &["mark-good", "--sysroot", S], &env);
        // Garbage an interrupted install could leave: a half checkout, an unnamed deployment,
        // a staging file.
        fs::create_dir_all(root.join("deploy/.tmp-junk/usr")).unwrap();
        fs::create_dir_all(root.join(format!("deploy/{}.7", lab.commit("1")))).unwrap();
        fs::write(root.join("repo/tmp/install-1-1"), b"partial").unwrap();
        let out = ok(d, &["cleanup", "--sysroot", S, "--json"], &env);
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["tmp_files"], 1, "{r}");
        assert_eq!(r["deployments"].as_array().unwrap().len(), 2, "{r}");
        if w[0] != "1" {
            // The deployment two versions back was replaced: its commit and unique files go.
            assert!(r["commits"].as_u64().unwrap() >= 1, "{r}");
            assert!(r["files"].as_u64().unwrap() >= 1, "{r}");
            assert!(r["bytes_freed"].as_u64().unwrap() > 0, "{r}");
        }
        let names: Vec<String> = fs::read_dir(root.join("deploy"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // Two deployments and their origin files.
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(names.iter().filter(|n| n.ends_with(".origin")).count(), 2);
        // Both live deployments still match their commits.
        for s in ["A", "B"] {
            ok(d, &["verify", "--sysroot", S, "--slot", s], &env);
        }
        sizes.push(count_objects(&root.join("repo")));
        // A second cleanup finds nothing.
        let r: Value =
            serde_json::from_str(&ok(d, &["cleanup", "--sysroot", S, "--json"], &env)).unwrap();
        assert_eq!(
            (
                r["commits"].as_u64(),
                r["files"].as_u64(),
                r["dirtrees"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{r}"
        );
    }
    // Two deployments (plus the ref head, which is one of them): two commits, always.
    for (commits, _) in &sizes {
        assert_eq!(*commits, 2, "{sizes:?}");
    }
    let st = status(d, S, booted);
    let mut v: Vec<String> = st["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["version"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    assert_eq!(v, vec!["4", "5"]);
    // The ref still resolves; the store can still take a delta from the booted commit.
    ok(d, &["refs", "--repo", &format!("{S}/repo")], &[]);
}

#[test]
fn cleanup_refuses_without_boot_state() {
    let lab = Lab::trusted_by(&["1"], S);
    let d = lab.path();
    ok(
        d,
        &["apply-offline", "--sysroot", S, &lab.update(None, "1")],
        &[],
    );
    let e = fails(d, &["cleanup", "--sysroot", S], &[]);
    assert!(e.contains("no deployment yet"), "{e}");
}
