//! Never lose what runs (issue 9): the sysroot is trusted only as far as it is checked. A
//! symlink planted where a directory of the sysroot belongs (pointing at a directory outside
//! holding a canary file), or a file there, is refused by every command with an error naming
//! it, and nothing outside the sysroot is written or deleted.

mod deploy_common;

use deploy_common::*;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use bootloader_hooks::Slot;

const S: &str = "sysroot";

/// Every file and directory under `dir` with its contents (symlinks as their targets).
fn tree_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = tree_listing(dir, &|_, _| Listed::Yes);
    out.sort();
    out
}

/// A provisioned sysroot (v1 booted in slot A) with `place` replaced: its real directory is
/// moved outside (with a canary file added) and a symlink to it planted, or, with `file`, a
/// plain file is put there instead. Returns the lab and the outside directory.
fn planted(place: &str, file: bool) -> (Lab, std::path::PathBuf) {
    let lab = Lab::trusted_by(&["1", "2"], S);
    let d = lab.path();
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    let root = d.join(S);
    let place = if place == "repo/objects/xx" {
        let xx = fs::read_dir(root.join("repo/objects"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .min()
            .unwrap();
        format!("repo/objects/{xx}")
    } else {
        place.to_string()
    };
    let at = root.join(&place);
    let outside = d.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let real = outside.join("real");
    if at.exists() {
        fs::rename(&at, &real).unwrap();
    } else {
        fs::create_dir_all(&real).unwrap();
    }
    fs::write(real.join("canary"), b"outside the sysroot: keep me\n").unwrap();
    if file {
        fs::write(&at, b"not a directory").unwrap();
    } else {
        symlink(&real, &at).unwrap();
    }
    (lab, outside)
}

/// Every command, on the booted slot A: each refuses naming `place`, or succeeds, and the
/// outside directory is exactly as it was.
fn every_command_refuses_or_leaves_outside_alone(place: &str, file: bool) {
    let (lab, outside) = planted(place, file);
    let d = lab.path();
    let before = tree_of(&outside);
    let u2 = lab.update(None, "2");
    let c1 = lab.commit("1").to_string();
    let repo = d.join(S).join("repo");
    let env = [("ECU_AGENT_BOOTED_SLOT", Slot::A.as_str())];
    let commands: Vec<Vec<&str>> = vec![
        vec!["status", "--sysroot", S],
        vec!["install", "--sysroot", S, &u2],
        vec!["deploy", "--sysroot", S, &c1],
        vec!["cleanup", "--sysroot", S],
        vec!["mark-good", "--sysroot", S],
        vec!["rollback", "--sysroot", S],
        vec!["verify", "--sysroot", S],
        vec!["checkout", "--sysroot", S, &c1, "co"],
        vec!["fsck", "--repo", repo.to_str().unwrap()],
        vec!["apply-offline", "--sysroot", S, &u2],
    ];
    let last = Path::new(place)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let last = if last == "xx" {
        "objects/".to_string()
    } else {
        last
    };
    let mut refused = 0;
    for args in &commands {
        let r = agent_env(d, args, &env);
        assert!(!r.killed, "{place}: {args:?} crashed: {}", r.stderr);
        if !r.ok {
            refused += 1;
            assert!(
                r.stderr.contains(&last) && !r.stderr.contains("panicked"),
                "{place}: {args:?} refused without naming the planted {place}: {}",
                r.stderr
            );
        }
        assert_eq!(
            tree_of(&outside),
            before,
            "{place}: {args:?} changed what is outside the sysroot ({}{})",
            r.stdout,
            r.stderr
        );
    }
    assert!(refused > 0, "{place}: no command noticed the planted link");
}

#[test]
fn planted_links_are_refused_and_the_outside_is_untouched() {
    for place in [
        "deploy",
        "repo",
        "repo/tmp",
        "repo/objects/xx",
        "repo/refs/heads",
        "repo/state",
        "run",
        "boot",
    ] {
        every_command_refuses_or_leaves_outside_alone(place, false);
    }
}

#[test]
fn a_file_where_a_directory_belongs_is_refused() {
    for place in ["deploy", "repo/tmp", "run"] {
        every_command_refuses_or_leaves_outside_alone(place, true);
    }
}

#[test]
fn a_directory_owned_by_another_user_is_refused() {
    let lab = Lab::trusted_by(&["1"], S);
    let d = lab.path();
    ok(d, &["install", "--sysroot", S, &lab.update(None, "1")], &[]);
    let me = rustix::process::geteuid().as_raw();
    let other = if me == 0 { 1000 } else { 0 };
    let deploy = d.join(S).join("deploy");
    if rustix::fs::chown(&deploy, Some(rustix::fs::Uid::from_raw(other)), None).is_err() {
        test_support::tool::skip(
            "a_directory_owned_by_another_user_is_refused",
            &format!("cannot give {} to uid {other} (not root)", deploy.display()),
        );
        return;
    }
    let err = fails(
        d,
        &["cleanup", "--sysroot", S],
        &[("ECU_AGENT_BOOTED_SLOT", "A")],
    );
    assert!(
        err.contains("deploy") && err.contains(&format!("uid {other}")),
        "{err}"
    );
}
