//! tests/c/ab_story.c: an OTA daemon in C drives the whole A/B story through `ecu_agent.h`
//! (provision from a file descriptor, a delta pushed in 4093-byte blocks staged in slot B,
//! reboot, mark good raising the floor, a damaged file and a replay below the floor refused,
//! cancellation by callback and by `ecu_agent_cancel`, rollback), compiled with
//! `-Wall -Wextra -Werror` under AddressSanitizer and UndefinedBehaviorSanitizer against
//! `libecu_agent.a`, and again against `libecu_agent.so`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_linux::generate::{generate_file, GenerateOptions};
use agent_linux::repo::{CommitMeta, Repo};
use agent_linux::tree::{build_dir, BuildOptions};
use test_support::c_program::{
    built_beside_test, c_bytes, compile_sanitized, doc_example as doc_block, output_text,
};

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// Whether `tool` is on PATH; missing: a failure under CI, else a skip
/// ([`test_support::tool::have`]).
fn have(tool: &str) -> bool {
    test_support::tool::have(tool, "the C scenarios")
}

/// The library cargo built for this test run (beside the test binary), newest first.
fn built(prefix: &str, suffix: &str) -> PathBuf {
    built_beside_test(prefix, suffix)
}

/// A small image tree for version `n`.
fn image(root: &Path, n: usize) {
    let w = |p: &str, c: Vec<u8>| {
        let p = root.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    };
    w(
        "usr/bin/ecu-main",
        format!("#!/bin/sh\necho {n}\n").repeat(40).into_bytes(),
    );
    w("etc/ecu.conf", b"bitrate=500000\n".to_vec());
    for i in 0..n * 3 {
        w(
            &format!("usr/lib/plugin{i}.so"),
            format!("plugin {i} of {n}\n").repeat(200).into_bytes(),
        );
    }
}

/// v1.update, v1-v2.update and v2-bad.update in `dir`, signed with `seed`.
fn updates(dir: &Path, seed: [u8; 32]) {
    let repo = Repo::init(&dir.join("build")).unwrap();
    let mut ids = Vec::new();
    for (n, sv) in [(1usize, 1u64), (2, 2)] {
        let tree = dir.join(format!("tree-{n}"));
        image(&tree, n);
        let (root, _) = build_dir(&repo, &tree, &BuildOptions::default(), &mut |_| {}).unwrap();
        let meta = CommitMeta {
            version: n.to_string(),
            subject: format!("image {n}"),
            body: String::new(),
            timestamp: 1_760_000_000 + n as u64,
        };
        ids.push(
            repo.commit_with_security_version("os/main", root, &meta, Some(sv))
                .unwrap(),
        );
    }
    let opts = GenerateOptions {
        sign_key: Some(seed),
        part_size: Some(16 * 1024),
        ..GenerateOptions::default()
    };
    let gen = |from: Option<usize>, to: usize, name: &str| {
        generate_file(
            &repo,
            "os/main",
            from.map(|f| ids[f]),
            &ids[to],
            &opts,
            &dir.join(name),
            &mut |_, _| {},
        )
        .unwrap();
    };
    gen(None, 0, "v1.update");
    gen(Some(0), 1, "v1-v2.update");
    gen(None, 1, "v2-bad.update");
    let bad = dir.join("v2-bad.update");
    let mut b = fs::read(&bad).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    fs::write(bad, b).unwrap();
}

fn compile(out: &Path, key: &[u8; 32], lib: &[&str]) {
    compile_sanitized("gcc", "-std=c11", out, |c| {
        c.arg(format!("-DECU_TEST_KEY={}", c_bytes(key)))
            .arg("-I")
            .arg(Path::new(CRATE).join("include"))
            .arg(Path::new(CRATE).join("tests/c/ab_story.c"))
            .args(lib);
    });
}

fn story(exe: &Path, dir: &Path, sysroot: &str, lib_dir: Option<&Path>) {
    let mut cmd = Command::new(exe);
    cmd.arg(dir.join(sysroot))
        .current_dir(dir)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env_remove("ECU_AGENT_BOOTED_SLOT")
        .env("ASAN_OPTIONS", "detect_leaks=1");
    if let Some(l) = lib_dir {
        cmd.env("LD_LIBRARY_PATH", l);
    }
    let run = cmd.output().unwrap();
    let text = output_text(&run);
    eprintln!("{text}");
    assert!(run.status.success(), "{text}");
    assert!(
        text.contains("ALL PASS") && !text.contains("FAIL "),
        "{text}"
    );
}

#[test]
fn c_daemon_drives_the_ab_story() {
    if !have("gcc") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let seed = [0x42u8; 32];
    let key = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    updates(tmp.path(), seed);

    let exe = tmp.path().join("ab-story-static");
    let a = built("libecu_agent", ".a");
    compile(&exe, &key, &[a.to_str().unwrap()]);
    story(&exe, tmp.path(), "sysroot-static", None);

    let so = built("libecu_agent", ".so");
    let lib_dir = so.parent().unwrap();
    let exe = tmp.path().join("ab-story-shared");
    let link_dir = format!("-L{}", lib_dir.display());
    compile(&exe, &key, &[&link_dir, "-lecu_agent"]);
    story(&exe, tmp.path(), "sysroot-shared", Some(lib_dir));
}

/// The fenced code block after `<!-- example: NAME -->` in docs/C-API.md.
fn doc_example(name: &str) -> String {
    doc_block(&Path::new(CRATE).join("../../docs/C-API.md"), name)
}

/// docs/C-API.md's C++ daemon compiles with `g++ -std=c++17 -Wall -Wextra -Werror`, links
/// with `libecu_agent.a`, and provisions a fresh sysroot (whose agent.conf trusts the signing
/// key) by pushing the update as it reads it; a damaged update makes it fail with the reason.
#[test]
fn doc_daemon_example_pushes_an_update() {
    if !have("g++") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let seed = [0x17u8; 32];
    let key = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    updates(tmp.path(), seed);
    let src = tmp.path().join("daemon.cpp");
    fs::write(&src, doc_example("daemon")).unwrap();
    let exe = tmp.path().join("daemon");
    compile_sanitized("g++", "-std=c++17", &exe, |c| {
        c.arg("-I")
            .arg(Path::new(CRATE).join("include"))
            .arg(&src)
            .arg(built("libecu_agent", ".a"));
    });
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    for (sysroot, file, good) in [("bad", "v2-bad.update", false), ("good", "v1.update", true)] {
        let root = tmp.path().join(sysroot);
        fs::create_dir_all(&root).unwrap();
        let conf = agent_linux::bootcfg::BootConfig::defaults(&root).to_text(&root)
            + &format!("trusted-key = {hex}\n");
        fs::write(root.join("agent.conf"), conf).unwrap();
        let run = Command::new(&exe)
            .arg(&root)
            .arg(tmp.path().join(file))
            .env("ECU_AGENT_CMDLINE", "/dev/null")
            .env_remove("ECU_AGENT_BOOTED_SLOT")
            .output()
            .unwrap();
        let text = output_text(&run);
        eprintln!("{text}");
        if good {
            assert!(run.status.success(), "{text}");
            assert!(text.contains("progress: "), "{text}");
            assert!(text.contains("provisioned version 1 in slot A"), "{text}");
            assert!(text.contains("slot A: 1 booted (good)"), "{text}");
        } else {
            assert_eq!(run.status.code(), Some(1), "{text}");
            assert!(
                text.contains("update failed: the update was refused: "),
                "{text}"
            );
        }
    }
}
