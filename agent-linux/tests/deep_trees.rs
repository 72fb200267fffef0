//! Never lose what runs (issue 9), the traversal part: one depth limit enforced where input
//! enters, and every tree the installer accepts can be deployed, verified, checked and
//! removed (paths over `PATH_MAX`, a limit of 1,024 open files); cleanup is linear.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use agent_core::object::{self, Commit, DirEntry, ObjectId, ObjectKind, MAX_TREE_DEPTH};
use agent_core::write::UpdateWriter;
use agent_linux::fsops::walk::{open_dir, open_dir_at};
use bootloader_hooks::{DecisionKind, Slot};
use rustix::fs::Mode;

const S: &str = "sysroot";

fn dirmeta() -> Vec<u8> {
    test_support::tree::dirmeta_object()
}

/// The objects of a chain `root/name/name/.../name/leaf`: `levels` directories below the
/// root (so the root is `levels` deep), bottom-up. Returns them and the root dirtree and
/// dirmeta.
fn chain_objects(levels: u16, name: &str) -> (Vec<(ObjectKind, Vec<u8>)>, ObjectId, ObjectId) {
    let mut objs = Vec::new();
    let file = object::file_object(0o644, 0, 0, b"at the bottom\n");
    let file_id = ObjectId::of(&file);
    let meta = dirmeta();
    let meta_id = ObjectId::of(&meta);
    objs.push((ObjectKind::File, file));
    objs.push((ObjectKind::DirMeta, meta));
    let leaf = object::dirtree_object(&[DirEntry::File {
        name: b"leaf",
        id: file_id,
    }])
    .unwrap();
    let mut below = ObjectId::of(&leaf);
    objs.push((ObjectKind::DirTree, leaf));
    for _ in 0..levels {
        let t = object::dirtree_object(&[DirEntry::Dir {
            name: name.as_bytes(),
            tree: below,
            meta: meta_id,
        }])
        .unwrap();
        below = ObjectId::of(&t);
        objs.push((ObjectKind::DirTree, t));
    }
    (objs, below, meta_id)
}

/// Writes a from-scratch update of a chain `levels` deep on `os/main`, signed with the lab's
/// key, into the lab as `out`. Returns its path and the commit id.
fn chain_update(lab: &Lab, out: &str, levels: u16, name: &str) -> (String, ObjectId) {
    let (objs, tree, meta) = chain_objects(levels, name);
    let ts = 1_900_000_000;
    let c = Commit {
        parent: None,
        timestamp: ts,
        root_tree: tree,
        root_meta: meta,
        version: "deep",
        subject: "a deep tree",
        body: "",
        security_version: 0,
    }
    .to_vec()
    .unwrap();
    let commit = ObjectId::of(&c);
    let mut w = UpdateWriter::new("os/main", None, commit, ts, "deep", "a deep tree");
    for (k, b) in &objs {
        w.write_object(*k, ObjectId::of(b), b).unwrap();
    }
    w.write_object(ObjectKind::Commit, commit, &c).unwrap();
    let seed = agent_linux::keys::read_key(&lab.path().join(LAB_KEY)).unwrap();
    let path = lab.path().join(out);
    let mut f = fs::File::create(&path).unwrap();
    w.finish(Some(&seed), &mut f).unwrap();
    (path.to_string_lossy().into_owned(), commit)
}

fn booted(s: Slot) -> [(&'static str, &'static str); 1] {
    [("ECU_AGENT_BOOTED_SLOT", s.as_str())]
}

fn has_object(root: &Path, kind: &str, id: &ObjectId) -> bool {
    let h = id.to_string();
    root.join("repo/objects")
        .join(&h[..2])
        .join(format!("{}.{kind}", &h[2..]))
        .exists()
}

/// Creates `levels` nested directories `name` under `dir` (through descriptors: the path
/// may be longer than `PATH_MAX`), with a file at the bottom.
fn plant_chain(dir: &Path, levels: usize, name: &str) {
    let mut fd = open_dir(dir).unwrap();
    for _ in 0..levels {
        rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)).unwrap();
        fd = open_dir_at(&fd, name).unwrap();
    }
    let f = rustix::fs::openat(
        fd.as_fd(),
        "file",
        rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&f, b"x").unwrap();
}

#[test]
fn a_tree_at_the_depth_limit_installs_deploys_verifies_fscks_and_is_removed() {
    let lab = Lab::trusted_by(&["1", "2", "3"], S);
    let d = lab.path();
    let root = d.join(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    // 2048 directories named `d`: the deepest file's path is over 4,096 bytes.
    let (deep, commit) = chain_update(&lab, "deep.update", MAX_TREE_DEPTH, "d");
    ok(d, &["install", "--sysroot", S, &deep], &booted(Slot::A));
    let (slot, kind) = boot(&root);
    assert_eq!((slot, kind), (Slot::B, DecisionKind::Trial));
    ok(d, &["verify", "--sysroot", S], &booted(Slot::B));
    ok(d, &["mark-good", "--sysroot", S], &booted(Slot::B));
    let repo = root.join("repo");
    ok(
        d,
        &[
            "fsck",
            "--repo",
            repo.to_str().unwrap(),
            &commit.to_string(),
        ],
        &[],
    );
    // Replace the deep deployment: it is removed, then cleanup removes its 2049 dirtrees.
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(None, "2")],
        &booted(Slot::B),
    );
    assert_eq!(boot(&root).0, Slot::A);
    ok(d, &["mark-good", "--sysroot", S], &booted(Slot::A));
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(None, "3")],
        &booted(Slot::A),
    );
    let names: Vec<String> = fs::read_dir(root.join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(&commit.to_string())),
        "the deep deployment was not removed: {names:?}"
    );
    ok(d, &["cleanup", "--sysroot", S], &booted(Slot::A));
    let (_, tree, _) = chain_objects(MAX_TREE_DEPTH, "d");
    assert!(!has_object(&root, "commit", &commit));
    assert!(!has_object(&root, "dirtree", &tree));
    ok(d, &["verify", "--sysroot", S], &booted(Slot::A));
}

#[test]
fn one_level_over_the_limit_is_refused_with_nothing_committed() {
    let lab = Lab::trusted_by(&["1"], S);
    let d = lab.path();
    let root = d.join(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    let before = snapshot(&root.join("deploy"));
    let (over, commit) = chain_update(&lab, "over.update", MAX_TREE_DEPTH + 1, "d");
    let err = fails(d, &["install", "--sysroot", S, &over], &booted(Slot::A));
    assert!(
        err.contains("2049") && err.contains("2048"),
        "the refusal names the depth and the limit: {err}"
    );
    assert!(!has_object(&root, "commit", &commit));
    let (_, tree, _) = chain_objects(MAX_TREE_DEPTH + 1, "d");
    assert!(!has_object(&root, "dirtree", &tree));
    assert_eq!(
        fs::read_dir(root.join("repo/tmp")).unwrap().count(),
        0,
        "nothing staged is left"
    );
    assert_eq!(snapshot(&root.join("deploy")), before);
    ok(d, &["verify", "--sysroot", S], &booted(Slot::A));
}

#[test]
fn the_deepest_tree_deploys_with_1024_open_files() {
    let lab = Lab::trusted_by(&["1"], S);
    let d = lab.path();
    let (deep, _) = chain_update(&lab, "deep.update", MAX_TREE_DEPTH, "d");
    // The limit is set in the child before it runs the agent (a shell's `ulimit`).
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(bin())
        .args(["install", "--sysroot", S, &deep])
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env_remove("ECU_AGENT_BOOTED_SLOT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(bin())
        .args(["verify", "--sysroot", S])
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env("ECU_AGENT_BOOTED_SLOT", "A")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn deployments_with_paths_over_4096_bytes_and_half_checkouts_are_removed() {
    let lab = Lab::trusted_by(&["1", "2"], S);
    let d = lab.path();
    let root = d.join(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    let deploy = root.join("deploy");
    // What an interrupted checkout of a deep tree leaves, under the name the next install
    // uses, and an unnamed deployment whose paths are about 25,000 bytes long.
    let next = format!(".tmp-{}.0", lab.commit("2"));
    fs::create_dir(deploy.join(&next)).unwrap();
    plant_chain(&deploy.join(&next), 2100, "d");
    let stale = format!("{}.5", lab.commit("1"));
    fs::create_dir(deploy.join(&stale)).unwrap();
    plant_chain(&deploy.join(&stale), 100, &"n".repeat(250));
    // A read-only directory in it, as a checkout leaves them.
    fs::set_permissions(
        deploy.join(&stale),
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    ok(
        d,
        &["install", "--sysroot", S, &lab.update(None, "2")],
        &booted(Slot::A),
    );
    assert!(!deploy.join(&next).exists());
    ok(d, &["cleanup", "--sysroot", S], &booted(Slot::A));
    assert!(!deploy.join(&stale).exists());
    assert_eq!(boot(&root).0, Slot::B);
    ok(d, &["verify", "--sysroot", S], &booted(Slot::B));
}

#[test]
fn cleanup_of_a_10000_deep_garbage_chain_is_linear() {
    let lab = Lab::trusted_by(&["1"], S);
    let d = lab.path();
    let root = d.join(S);
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    // Garbage a crashed install could leave: 10,000 dirtrees, each naming the next (written
    // as the repository lays them out, without fsyncs, to keep the setup fast).
    let (objs, top, _) = chain_objects(10_000, "g");
    for (k, b) in &objs {
        if *k != ObjectKind::DirTree {
            continue;
        }
        let h = ObjectId::of(b).to_string();
        let dir = root.join("repo/objects").join(&h[..2]);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{}.dirtree", &h[2..])), b).unwrap();
    }
    assert!(has_object(&root, "dirtree", &top));
    let t = Instant::now();
    let out = ok(d, &["cleanup", "--sysroot", S, "--json"], &booted(Slot::A));
    let took = t.elapsed();
    eprintln!("cleanup of a 10,000-deep garbage chain: {took:?}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(r["dirtrees"].as_u64().unwrap() >= 10_001, "{r}");
    assert!(!has_object(&root, "dirtree", &top));
    assert!(
        took.as_secs() < 30,
        "cleanup took {took:?}: quadratic in the chain?"
    );
}
