//! `ecu-agent apply-offline` killed (SIGKILL) at many points: the sysroot always comes back
//! with a complete commit on the ref, the new commit never appears half-installed, and the next
//! install succeeds. (Process death, not power loss: page-cache loss is covered by the fsync
//! and syncfs ordering documented in docs/REPO.md.)

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_core::object::ObjectId;
use agent_linux::generate::{generate, GenerateOptions};
use agent_linux::repo::{CommitMeta, Repo};
use agent_linux::tree::{build_dir, BuildOptions};

const EXE: &str = env!("CARGO_BIN_EXE_ecu-agent");
const REF: &str = "ecu/main";

fn tree(root: &Path, version: u32) {
    for d in 0..20 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            // Half the files change between versions.
            let v = if f % 2 == 0 { version } else { 0 };
            fs::write(
                dir.join(format!("f{f}")),
                format!("{d}/{f} v{v}\n").repeat(100 + f),
            )
            .unwrap();
        }
    }
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(version) >> 13) as u8)
        .collect();
    fs::write(root.join("big.bin"), big).unwrap();
}

fn commit(repo: &Repo, src: &Path, v: u32) -> ObjectId {
    let (root, _) = build_dir(repo, src, &BuildOptions::default(), &mut |_| {}).unwrap();
    let meta = CommitMeta {
        version: v.to_string(),
        subject: String::new(),
        body: String::new(),
        timestamp: u64::from(v),
    };
    repo.commit(REF, root, &meta).unwrap()
}

/// A signed update (by `key`, a secret seed).
fn update(repo: &Repo, from: Option<ObjectId>, to: &ObjectId, key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = GenerateOptions {
        sign_key: Some(*key),
        ..GenerateOptions::default()
    };
    generate(repo, REF, from, to, &opts, &mut out, &mut |_, _| {}).unwrap();
    out
}

/// Starts `apply-offline -` on `sysroot`, feeds it `input`, then kills it after `delay`
/// (or lets it finish if it is faster). Returns whether it exited on its own successfully.
fn apply_and_kill(sysroot: &Path, input: &[u8], close_stdin: bool, delay: Duration) -> bool {
    let key = sysroot.with_file_name("key.pub");
    let mut child = Command::new(EXE)
        .args(["apply-offline", "--sysroot", sysroot.to_str().unwrap(), "-"])
        .arg("--trusted-key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    let _stdin_kept = if close_stdin {
        drop(stdin);
        None
    } else {
        Some(stdin)
    };
    let until = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    false
}

fn fresh_device(dir: &Path, full1: &[u8]) {
    let _ = fs::remove_dir_all(dir);
    assert!(
        apply_and_kill(dir, full1, true, Duration::from_secs(30)),
        "installing the base failed"
    );
}

/// The device is consistent: the ref names a complete commit, c1 or c2; c2 is either
/// complete or absent.
fn check(dir: &Path, c1: &ObjectId, c2: &ObjectId, what: &str) -> bool {
    let repo = Repo::open(&dir.join("repo")).unwrap();
    let head = repo
        .read_ref(REF)
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: ref lost"));
    assert!(head == *c1 || head == *c2, "{what}: ref points to {head}");
    repo.fsck_commit(&head)
        .unwrap_or_else(|e| panic!("{what}: head {head} damaged: {e}"));
    if repo.has_commit(c2).unwrap() {
        repo.fsck_commit(c2)
            .unwrap_or_else(|e| panic!("{what}: {c2} present but damaged: {e}"));
    }
    head == *c2
}

#[test]
fn killed_installs_leave_a_complete_commit_and_recover() {
    let t = tempfile::tempdir().unwrap();
    let (src, build) = (
        t.path().join("src"),
        Repo::init(&t.path().join("build")).unwrap(),
    );
    tree(&src, 1);
    let c1 = commit(&build, &src, 1);
    tree(&src, 2);
    let c2 = commit(&build, &src, 2);
    // Signed files, checked against `key.pub` beside the device.
    let key = t.path().join("key");
    agent_linux::keys::keygen(&key).unwrap();
    let seed = agent_linux::keys::read_key(&key).unwrap();
    let full1 = update(&build, None, &c1, &seed);
    let delta = update(&build, Some(c1), &c2, &seed);
    let dev = t.path().join("dev");

    // Input cut short, then killed: never installed.
    for frac in [0.0, 0.2, 0.5, 0.99] {
        fresh_device(&dev, &full1);
        let n = (delta.len() as f64 * frac) as usize;
        assert!(!apply_and_kill(
            &dev,
            &delta[..n],
            false,
            Duration::from_millis(30)
        ));
        assert!(
            !check(&dev, &c1, &c2, &format!("cut at {n}")),
            "cut at {n}: installed from a partial file"
        );
        assert!(!Repo::open(&dev.join("repo"))
            .unwrap()
            .has_commit(&c2)
            .unwrap());
        // Recovery: the whole file installs, and the dead writer's staging is cleared.
        assert!(apply_and_kill(&dev, &delta, true, Duration::from_secs(30)));
        assert!(check(&dev, &c1, &c2, "after recovery"));
        assert_eq!(fs::read_dir(dev.join("repo/tmp")).unwrap().count(), 0);
    }

    // Whole input, killed after a delay spread over the install's duration.
    fresh_device(&dev, &full1);
    let start = Instant::now();
    assert!(apply_and_kill(&dev, &delta, true, Duration::from_secs(30)));
    let took = start.elapsed();
    let mut outcomes = (0, 0);
    for i in 0..12u32 {
        fresh_device(&dev, &full1);
        let delay = took * i / 10;
        apply_and_kill(&dev, &delta, true, delay);
        if check(&dev, &c1, &c2, &format!("killed after {delay:?}")) {
            outcomes.1 += 1;
        } else {
            outcomes.0 += 1;
            assert!(
                apply_and_kill(&dev, &delta, true, Duration::from_secs(30)),
                "recovery after {delay:?}"
            );
            assert!(check(&dev, &c1, &c2, "after recovery"));
        }
    }
    eprintln!(
        "install takes {took:?}; killed runs: {} left c1, {} had installed c2",
        outcomes.0, outcomes.1
    );
}
