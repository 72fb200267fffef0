//! `ecu-agent apply-offline` killed (SIGKILL) at many points: the sysroot always comes back
//! with a complete commit on the ref, the new commit never appears half-installed, and the next
//! install succeeds. Those are process deaths, which keep the page cache; the same install is
//! also cut by power loss under the model of docs/POWERLOSS.md (what was not made durable is
//! lost) at points spread over it.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_core::object::ObjectId;
use agent_linux::generate::{generate, GenerateOptions};
use agent_linux::repo::Repo;

mod build_common;
use build_common::commit_tree;

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
    // Manuals as a package build gzips them (`gzip -9n`), half of them changing: the updates
    // carry them in redeflate records (format version 4), which these tests then cut too.
    let man = root.join("man");
    fs::create_dir_all(&man).unwrap();
    for m in 0..10 {
        let v = if m % 2 == 0 { version } else { 0 };
        let page =
            format!(".TH PAGE{m} 1 v{v}\n.SH NAME\npage{m} \\- does thing {m}\n").repeat(60 + m);
        fs::write(
            man.join(format!("page{m}.1.gz")),
            test_support::gzip::gzip_n(page.as_bytes()),
        )
        .unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(version) >> 13) as u8)
        .collect();
    fs::write(root.join("big.bin"), big).unwrap();
}

/// Version v at security version v.
fn commit(repo: &Repo, src: &Path, v: u32) -> ObjectId {
    commit_tree(repo, REF, src, v, Some(u64::from(v)))
}

/// The anti-rollback floor every device of these tests has: non-zero, and `apply-offline`
/// never changes it (only `mark-good` raises it).
const FLOOR: u64 = 1;

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

/// Versions 1 and 2 of the test tree committed in a build repository in `dir`, signed by
/// `dir/key` (its public half `dir/key.pub`, which the devices beside it trust): the commits,
/// the from-scratch file of 1 and the delta from 1 to 2.
struct Built {
    c1: ObjectId,
    c2: ObjectId,
    full1: Vec<u8>,
    delta: Vec<u8>,
}

fn build(dir: &Path) -> Built {
    let (src, build) = (dir.join("src"), Repo::init(&dir.join("build")).unwrap());
    tree(&src, 1);
    let c1 = commit(&build, &src, 1);
    tree(&src, 2);
    let c2 = commit(&build, &src, 2);
    let key = dir.join("key");
    agent_linux::keys::keygen(&key).unwrap();
    let seed = agent_linux::keys::read_key(&key).unwrap();
    let (full1, delta) = (
        update(&build, None, &c1, &seed),
        update(&build, Some(c1), &c2, &seed),
    );
    // Both carry the manuals in redeflate records (format version 4), and the delta reuses
    // the unchanged entries of its changed directories by reuse-entries records (version 5).
    assert_eq!(
        (&full1[8..10], &delta[8..10]),
        (&[4u8, 0][..], &[5u8, 0][..])
    );
    Built {
        full1,
        delta,
        c1,
        c2,
    }
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
    agent_linux::floor::raise(dir, FLOOR).unwrap();
}

/// The device is consistent: the ref names a complete commit, c1 or c2; c2 is either
/// complete or absent.
fn check(dir: &Path, c1: &ObjectId, c2: &ObjectId, what: &str) -> bool {
    let floor = agent_linux::floor::read(dir)
        .unwrap_or_else(|e| panic!("{what}: the floor cannot be read: {e}"));
    assert_eq!(floor, FLOOR, "{what}: the floor changed");
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
    // Signed files, checked against `key.pub` beside the device.
    let Built {
        c1,
        c2,
        full1,
        delta,
    } = build(t.path());
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

/// Runs `apply-offline <file>` on `sysroot` with `envs`; returns (exited successfully, was
/// killed by a signal, stderr).
fn apply_file(sysroot: &Path, file: &Path, envs: &[(&str, &str)]) -> (bool, bool, String) {
    use std::os::unix::process::ExitStatusExt;
    let key = sysroot.with_file_name("key.pub");
    let out = Command::new(EXE)
        .args(["apply-offline", "--sysroot", sysroot.to_str().unwrap()])
        .arg(file)
        .arg("--trusted-key")
        .arg(&key)
        .env_remove("ECU_AGENT_FAULT_AT")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        out.status.signal().is_some(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The same install cut by power loss instead of a kill: `ECU_AGENT_FAULT_AT=N` at 16 points
/// spread over the whole install and at each of its last 8 (where the commit and the ref are
/// published), under the power-loss model (docs/POWERLOSS.md: unsynced contents and names
/// whose directory was not fsynced are lost). The ref names a complete commit, c2 is whole
/// or absent, and the install run again succeeds and leaves nothing staged.
#[test]
fn power_cuts_during_an_install_lose_nothing_under_the_model() {
    let shm = Path::new("/dev/shm");
    let t = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap())
    } else {
        tempfile::tempdir().unwrap()
    };
    let built = build(t.path());
    let (c1, c2) = (built.c1, built.c2);
    let full1 = t.path().join("full1.update");
    fs::write(&full1, &built.full1).unwrap();
    let delta = t.path().join("delta.update");
    fs::write(&delta, &built.delta).unwrap();
    let (tpl, dev) = (t.path().join("tpl"), t.path().join("dev"));
    assert!(
        apply_file(&tpl, &full1, &[]).0,
        "installing the base failed"
    );
    agent_linux::floor::raise(&tpl, FLOOR).unwrap();
    let copy = |from: &Path, to: &Path| {
        let _ = fs::remove_dir_all(to);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success());
    };
    // How many points the install has (the model on, no cut).
    copy(&tpl, &dev);
    let (ok, _, trace) = apply_file(
        &dev,
        &delta,
        &[
            ("ECU_AGENT_FAULT_AT", "18446744073709551615"),
            ("ECU_AGENT_FAULT_TRACE", "1"),
        ],
    );
    assert!(ok, "{trace}");
    let total = trace
        .lines()
        .filter(|l| l.starts_with("fault point"))
        .count() as u64;
    assert!(total > 100, "{total} points");
    eprintln!("the install passes {total} points");
    let mut points: Vec<u64> = (1..=16).map(|i| i * total / 17).collect();
    points.extend(total.saturating_sub(7)..=total);
    let mut outcomes = (0, 0);
    for &n in &points {
        copy(&tpl, &dev);
        let (_, killed, err) = apply_file(&dev, &delta, &[("ECU_AGENT_FAULT_AT", &n.to_string())]);
        assert!(
            killed && err.contains("killed at point"),
            "point {n}: {err}"
        );
        if check(
            &dev,
            &c1,
            &c2,
            &format!("power cut at point {n} of {total}"),
        ) {
            outcomes.1 += 1;
        } else {
            outcomes.0 += 1;
        }
        let (ok, _, err) = apply_file(&dev, &delta, &[]);
        assert!(ok, "recovery after point {n}: {err}");
        assert!(check(&dev, &c1, &c2, "after recovery"));
        assert_eq!(fs::read_dir(dev.join("repo/tmp")).unwrap().count(), 0);
    }
    eprintln!(
        "install has {total} points; power cut at {} of them: {} left c1, {} had c2",
        points.len(),
        outcomes.0,
        outcomes.1
    );
}
