//! Verify before privilege (issue 8, case 3): while a part is still arriving, nothing it
//! carried has a setuid/setgid or executable bit, a capability, another owner, or is
//! reachable by other users; once the whole (signed) file is verified the modes, owner and
//! capability are exactly those of the commit.
//!
//! The real `ecu-agent install` reads the update from a pipe that the test stops feeding
//! before the end of the (single) part, so the install waits there with the setuid object's
//! own hash already matched but its part not.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_linux::generate::{generate, GenerateOptions};
use agent_linux::repo::{CommitMeta, Repo};
use agent_linux::tree::{build_mem, MemDir, MemNode};
use test_support::rng::{XorShift64, GOLDEN};

const EXE: &str = env!("CARGO_BIN_EXE_ecu-agent");
const REF: &str = "ecu/main";
const CAP: &[u8] = b"security.capability";

/// `security.capability` v2, effective, permitting CAP_NET_BIND_SERVICE (bit 10).
fn cap_value() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&(1u32 << 10).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

fn has_xattr(p: &Path, name: &[u8]) -> bool {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(p, name, &mut buf[..]).is_ok()
}

fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, out);
        }
    }
}

/// Whether another user could reach `p`: every directory from `root` down to it searchable by
/// others.
fn reachable_by_others(root: &Path, p: &Path) -> bool {
    let mut dir = p.parent();
    while let Some(d) = dir {
        let mode = fs::metadata(d).unwrap().mode();
        if mode & 0o001 == 0 {
            return false;
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    true
}

#[test]
fn nothing_staged_is_privileged_before_its_part_is_verified() {
    if !rustix::process::geteuid().is_root() {
        // Owners and security.capability need root; the suite (cargo xtask test) runs as root.
        test_support::tool::skip(
            "nothing_staged_is_privileged_before_its_part_is_verified",
            "needs root",
        );
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let build = Repo::init(&t.path().join("build")).unwrap();
    let suid = b"#!/bin/sh\necho privileged\n".repeat(40);
    // Incompressible bytes after the setuid file, so that its bytes are decoded and its object
    // finished long before the part's end.
    let big = XorShift64::from_state(GOLDEN).bytes(2 << 20);
    let tree = MemDir::new().with(
        b"usr",
        MemNode::Dir(
            MemDir::new().with(
                b"bin",
                MemNode::Dir(
                    MemDir::new()
                        .with(
                            b"a-suid",
                            MemNode::File {
                                mode: 0o4755,
                                content: suid.clone(),
                                xattrs: vec![(CAP.to_vec(), cap_value())],
                            },
                        )
                        .with(
                            b"z-big",
                            MemNode::File {
                                mode: 0o644,
                                content: big,
                                xattrs: Vec::new(),
                            },
                        ),
                ),
            ),
        ),
    );
    let (root, _) = build_mem(&build, &tree).unwrap();
    let meta = CommitMeta {
        version: "1".into(),
        subject: "setuid".into(),
        body: String::new(),
        timestamp: 1,
    };
    let c = build.commit(REF, root, &meta).unwrap();
    let key = t.path().join("k");
    agent_linux::keys::keygen(&key).unwrap();
    let opts = GenerateOptions {
        sign_key: Some(agent_linux::keys::read_key(&key).unwrap()),
        part_size: Some(64 << 20),
        ..GenerateOptions::default()
    };
    let mut file = Vec::new();
    let s = generate(&build, REF, None, &c, &opts, &mut file, &mut |_, _| {}).unwrap();
    assert_eq!(s.parts, 1, "the test needs one part");

    let sysroot = t.path().join("s");
    let mut child = Command::new(EXE)
        .args(["install", "--sysroot", sysroot.to_str().unwrap()])
        .arg("--trusted-key")
        .arg(agent_linux::keys::pub_path(&key))
        .arg("-")
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env_remove("ECU_AGENT_BOOTED_SLOT")
        .env_remove("ECU_AGENT_FAULT_AT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Everything but the part's last bytes: the part cannot be verified yet.
    let cut = file.len() - 16;
    stdin.write_all(&file[..cut]).unwrap();
    stdin.flush().unwrap();

    // Wait until the setuid object is staged (its own hash has matched).
    let repo_dir = sysroot.join("repo");
    let deadline = Instant::now() + Duration::from_secs(60);
    let staged = loop {
        let mut all = Vec::new();
        walk(&repo_dir.join("tmp"), &mut all);
        if let Some(p) = all
            .iter()
            .find(|p| fs::read(p).is_ok_and(|b| b == suid))
            .cloned()
        {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the install ended before the test inspected it"
        );
        assert!(
            Instant::now() < deadline,
            "the setuid object never appeared in repo/tmp"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    // Paused mid-part: inspect everything the install has written.
    assert_eq!(
        fs::metadata(repo_dir.join("tmp")).unwrap().mode() & 0o7777,
        0o700,
        "repo/tmp must be private"
    );
    let mut all = Vec::new();
    walk(&sysroot, &mut all);
    let mut files = 0;
    for p in &all {
        let md = fs::symlink_metadata(p).unwrap();
        if md.is_dir() || md.file_type().is_symlink() {
            continue;
        }
        files += 1;
        let mode = md.mode() & 0o7777;
        assert_eq!(
            mode & 0o7111,
            0,
            "{} has mode {mode:o} before its part is verified",
            p.display()
        );
        assert!(
            !has_xattr(p, CAP),
            "{} has a capability before its part is verified",
            p.display()
        );
        assert_eq!(md.uid(), 0, "{} changed owner", p.display());
        if p.starts_with(repo_dir.join("tmp")) {
            assert!(
                !reachable_by_others(&sysroot, p),
                "{} is reachable by other users",
                p.display()
            );
        }
    }
    assert!(files > 0 && all.contains(&staged));

    // The rest: the part and the signature verify, the modes are applied.
    stdin.write_all(&file[cut..]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = Repo::open(&repo_dir).unwrap();
    let mut found = 0;
    let mut objects = Vec::new();
    walk(&repo_dir.join("objects"), &mut objects);
    for p in objects
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "file"))
    {
        if fs::read(p).unwrap() == suid {
            let md = fs::metadata(p).unwrap();
            assert_eq!(md.mode() & 0o7777, 0o4755, "{}", p.display());
            assert_eq!((md.uid(), md.gid()), (0, 0));
            let mut buf = [0u8; 64];
            let n = rustix::fs::lgetxattr(p, CAP, &mut buf[..]).unwrap();
            assert_eq!(&buf[..n], &cap_value()[..]);
            found += 1;
        }
    }
    assert_eq!(found, 1, "the setuid object is in the repository once");
    assert_eq!(fs::read_dir(repo_dir.join("tmp")).unwrap().count(), 0);
    repo.fsck_commit(&c).unwrap();
    // And the deployment has them too (hard-linked).
    let dep = fs::read_dir(sysroot.join("deploy"))
        .unwrap()
        .flatten()
        .find(|e| e.file_type().unwrap().is_dir())
        .unwrap()
        .path();
    let md = fs::metadata(dep.join("usr/bin/a-suid")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(dep.join("usr/bin/z-big")).unwrap().mode() & 0o7777,
        0o644
    );
}
