//! Resumable installs on Linux (`docs/RESUME.md`), on real files and real processes: a transfer
//! cut at every part boundary and inside parts, then the same file again, resumes at the last
//! verified part and ends with exactly what an uninterrupted install leaves; a part tampered
//! with after the resume point is still refused; a checkpoint of another file, or whose objects
//! are gone, is discarded; a process killed mid-install resumes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use agent_core::object::ObjectId;
use agent_linux::apply::{apply, apply_from, Applied, ApplyError, Input, Trust};
use agent_linux::generate::{generate, GenerateOptions};
use agent_linux::repo::Repo;
use test_support::rng::{XorShift64, GOLDEN};

mod build_common;
mod deploy_common;
use build_common::commit_tree;

const EXE: &str = env!("CARGO_BIN_EXE_ecu-agent");
const REF: &str = "ecu/main";

fn noise(len: usize, seed: u32) -> Vec<u8> {
    // xorshift64: incompressible.
    let mut rng = XorShift64::from_state(GOLDEN ^ u64::from(seed).wrapping_mul(0x1000_0000_01B3));
    (0..len).map(|_| (rng.next_u64() >> 24) as u8).collect()
}

/// A tree of incompressible files (so parts are large) and small text files.
fn tree(root: &Path, version: u32) {
    for d in 0..4u32 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..6u32 {
            fs::write(dir.join(format!("t{f}")), format!("{d}/{f} v{version}\n")).unwrap();
        }
        fs::write(
            dir.join("blob"),
            noise(90_000 + d as usize * 7, d + version * 100),
        )
        .unwrap();
    }
    fs::write(root.join("big.bin"), noise(300_000, 77 + version)).unwrap();
}

/// The test files are unsigned: installed with `--allow-unsigned`.
fn unsigned() -> Trust {
    Trust {
        allow_unsigned: true,
        ..Trust::default()
    }
}

fn commit(repo: &Repo, src: &Path, v: u32) -> ObjectId {
    commit_tree(repo, REF, src, v, None)
}

fn update(repo: &Repo, from: Option<ObjectId>, to: &ObjectId, part_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = GenerateOptions {
        part_size: Some(part_size),
        ..GenerateOptions::default()
    };
    generate(repo, REF, from, to, &opts, &mut out, &mut |_, _| {}).unwrap();
    out
}

/// The file offsets where each part after the first starts (the possible resume points).
fn boundaries(file: &[u8]) -> (usize, Vec<usize>) {
    let (sb, end) = test_support::wire::superblock_at(file);
    let sig = if file[end] == 0 { 0 } else { 64 };
    let prefix = end + 1 + sig;
    let mut at = prefix;
    let mut b = Vec::new();
    for p in sb.parts.iter() {
        at += p.size as usize;
        b.push(at);
    }
    b.pop();
    (prefix, b)
}

/// Installs `data` on `dev` as a seekable unsigned file whose reads fail at byte `fail_at`
/// (a lost connection; `usize::MAX` for none).
fn apply_seekable(dev: &Repo, data: &[u8], fail_at: usize) -> Result<Applied, ApplyError> {
    let mut f = Flaky::new(data, fail_at);
    apply_from(dev, Input::Seekable(&mut f), &unsigned(), &mut |_| {})
}

/// A file reader that fails at byte `fail_at` (a lost connection) and records where each read
/// starts.
struct Flaky<'a> {
    data: &'a [u8],
    pos: usize,
    fail_at: usize,
    reads: Vec<usize>,
}

impl<'a> Flaky<'a> {
    fn new(data: &'a [u8], fail_at: usize) -> Self {
        Flaky {
            data,
            pos: 0,
            fail_at,
            reads: Vec::new(),
        }
    }
}

impl Read for Flaky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.fail_at && self.pos < self.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the connection was lost",
            ));
        }
        let end = self.data.len().min(self.fail_at).min(self.pos + buf.len());
        let n = end.saturating_sub(self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        if n > 0 {
            self.reads.push(self.pos);
        }
        self.pos = end;
        Ok(n)
    }
}

impl Seek for Flaky<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Start(p) = to else {
            unimplemented!()
        };
        self.pos = p as usize;
        Ok(p)
    }
}

/// Every file under `R/objects` with its bytes, and whether `R/state` and `R/tmp` are empty.
fn snapshot(repo: &Repo) -> (BTreeMap<String, Vec<u8>>, usize, usize) {
    let mut m = BTreeMap::new();
    let objects = repo.path().join("objects");
    for d in fs::read_dir(&objects).unwrap() {
        let d = d.unwrap().path();
        for f in fs::read_dir(&d).unwrap() {
            let f = f.unwrap().path();
            let rel = f.strip_prefix(&objects).unwrap().display().to_string();
            let bytes = if f.is_symlink() {
                fs::read_link(&f)
                    .unwrap()
                    .display()
                    .to_string()
                    .into_bytes()
            } else {
                fs::read(&f).unwrap()
            };
            m.insert(rel, bytes);
        }
    }
    let count = |sub: &str| fs::read_dir(repo.path().join(sub)).unwrap().count();
    (m, count("state"), count("tmp"))
}

struct Setup {
    _t: tempfile::TempDir,
    dir: std::path::PathBuf,
    c1: ObjectId,
    c2: ObjectId,
    full1: Vec<u8>,
    full2: Vec<u8>,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let build = Repo::init(&t.path().join("build")).unwrap();
    tree(&src, 1);
    let c1 = commit(&build, &src, 1);
    tree(&src, 2);
    let c2 = commit(&build, &src, 2);
    let full1 = update(&build, None, &c1, 100 * 1024);
    let full2 = update(&build, None, &c2, 100 * 1024);
    Setup {
        dir: t.path().to_path_buf(),
        _t: t,
        c1,
        c2,
        full1,
        full2,
    }
}

#[test]
fn a_transfer_cut_at_every_part_boundary_and_inside_parts_resumes_at_the_last_verified_part() {
    let s = setup();
    let (prefix, bs) = boundaries(&s.full1);
    assert!(bs.len() >= 4, "{} boundaries", bs.len());
    eprintln!("prefix {prefix}, boundaries {bs:?}, file {}", s.full1.len());
    assert!(bs[2] > prefix + agent_linux::apply::READ_CHUNK);
    // The uninterrupted install.
    let reference = Repo::init(&s.dir.join("ref")).unwrap();
    let mut f = Flaky::new(&s.full1, usize::MAX);
    let a = apply_from(
        &reference,
        Input::Seekable(&mut f),
        &unsigned(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(a.resumed_from, None);
    let want = snapshot(&reference);
    assert_eq!((want.1, want.2), (0, 0));

    let mut cuts = vec![1, 16, prefix - 1, prefix, prefix + 1000];
    let mut prev = prefix;
    for &b in &bs {
        cuts.extend([b - 1, b, b + 1, (prev + b) / 2]);
        prev = b;
    }
    cuts.extend([(prev + s.full1.len()) / 2, s.full1.len() - 1]);
    let mut resumed = 0;
    for (i, &cut) in cuts.iter().enumerate() {
        let dev = Repo::init(&s.dir.join(format!("dev{i}"))).unwrap();
        let err = apply_seekable(&dev, &s.full1, cut).unwrap_err();
        let expected = bs.iter().rev().copied().find(|&b| b <= cut);
        match (&err, expected) {
            (ApplyError::Interrupted { resume_at, .. }, Some(b)) => {
                assert_eq!(*resume_at, b as u64, "cut {cut}");
                assert!(err
                    .to_string()
                    .contains(&format!("--resume-from-offset {b}")));
            }
            (ApplyError::Read(_), None) => {}
            (e, _) => panic!("cut {cut}: {e}"),
        }
        assert!(!dev.has_commit(&s.c1).unwrap(), "cut {cut}");
        assert_eq!(dev.read_ref(REF).unwrap(), None);
        // Again, the whole file, seekable (the reads it makes checked below).
        let mut f = Flaky::new(&s.full1, usize::MAX);
        let a = apply_from(&dev, Input::Seekable(&mut f), &unsigned(), &mut |_| {}).unwrap();
        assert_eq!(a.resumed_from, expected.map(|b| b as u64), "cut {cut}");
        if let Some(b) = expected {
            resumed += 1;
            // The signed prefix is read to its end and no further; the next read is at the
            // resume point: nothing between is read.
            assert_eq!(f.reads[0], 0);
            let after = f.reads.iter().position(|&r| r >= prefix).unwrap();
            assert!(
                f.reads[..after].iter().all(|&r| r < prefix),
                "{:?}",
                f.reads
            );
            assert_eq!(f.reads[after], b, "cut {cut}: reads at {:?}", f.reads);
            assert!(f.reads[after..].iter().all(|&r| r >= b));
        } else {
            assert!(f.reads.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(dev.read_ref(REF).unwrap(), Some(s.c1));
        dev.fsck_commit(&s.c1).unwrap();
        assert_eq!(snapshot(&dev), want, "cut {cut}");
    }
    eprintln!("{} cuts, {resumed} resumed", cuts.len());
    assert!(resumed >= bs.len() * 3);
}

#[test]
fn a_stream_sent_again_from_byte_0_skips_the_verified_parts() {
    let s = setup();
    let (_, bs) = boundaries(&s.full1);
    let dev = Repo::init(&s.dir.join("dev")).unwrap();
    let cut = (bs[1] + bs[2]) / 2;
    let err = apply(&dev, &mut &s.full1[..cut], &unsigned(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, ApplyError::Install(_)), "{err}");
    let mut fed = Vec::new();
    let a = apply(&dev, &mut &s.full1[..], &unsigned(), &mut |p| {
        fed.push(p.bytes)
    })
    .unwrap();
    assert_eq!(a.resumed_from, Some(bs[1] as u64));
    assert_eq!(dev.read_ref(REF).unwrap(), Some(s.c1));
    dev.fsck_commit(&s.c1).unwrap();
}

#[test]
fn a_part_tampered_with_after_the_resume_point_is_refused_with_nothing_committed() {
    let s = setup();
    let (_, bs) = boundaries(&s.full1);
    let dev = Repo::init(&s.dir.join("dev")).unwrap();
    apply_seekable(&dev, &s.full1, bs[1] + 10).unwrap_err();
    for at in [bs[1], bs[1] + 1000, bs[2] + 5, s.full1.len() - 1] {
        let mut bad = s.full1.clone();
        bad[at] ^= 0x40;
        let err = apply_seekable(&dev, &bad, usize::MAX).unwrap_err();
        // Reported as what it is: the file is damaged (the part checked to its end).
        assert!(
            matches!(err, ApplyError::Damaged { .. }),
            "flip at {at}: {err}"
        );
        assert!(!dev.has_commit(&s.c1).unwrap(), "flip at {at}");
        assert_eq!(dev.read_ref(REF).unwrap(), None);
        assert_eq!(dev.list_commits().unwrap(), vec![]);
    }
    // The intact file still resumes (the checkpoint survived the refusals) and installs.
    let a = apply_seekable(&dev, &s.full1, usize::MAX).unwrap();
    assert!(a.resumed_from.is_some_and(|r| r >= bs[1] as u64));
    dev.fsck_commit(&s.c1).unwrap();
}

#[test]
fn a_checkpoint_of_another_file_or_with_lost_objects_is_discarded() {
    let s = setup();
    let (_, bs) = boundaries(&s.full1);
    let dev = Repo::init(&s.dir.join("dev")).unwrap();
    apply_seekable(&dev, &s.full1, bs[2] + 3).unwrap_err();
    assert!(dev.path().join("state/install.checkpoint").exists());
    // Another file (the next version): installed from byte 0, the stale checkpoint dropped.
    let a = apply_seekable(&dev, &s.full2, usize::MAX).unwrap();
    assert_eq!(a.resumed_from, None);
    assert_eq!(dev.read_ref(REF).unwrap(), Some(s.c2));
    dev.fsck_commit(&s.c2).unwrap();
    assert_eq!(fs::read_dir(dev.path().join("state")).unwrap().count(), 0);

    // Interrupted again, then an object of the verified parts disappears: from byte 0.
    let dev = Repo::init(&s.dir.join("dev2")).unwrap();
    apply_seekable(&dev, &s.full1, bs[2] + 3).unwrap_err();
    let saved = agent_linux::resume::load(&dev).unwrap().unwrap();
    let (kind, id) = saved.objects[0];
    fs::remove_file(dev.object_path(kind, &id)).unwrap();
    let a = apply_seekable(&dev, &s.full1, usize::MAX).unwrap();
    assert_eq!(a.resumed_from, None);
    dev.fsck_commit(&s.c1).unwrap();

    // A damaged checkpoint file: from byte 0.
    let dev = Repo::init(&s.dir.join("dev3")).unwrap();
    apply_seekable(&dev, &s.full1, bs[2] + 3).unwrap_err();
    let p = dev.path().join("state/install.checkpoint");
    let mut b = fs::read(&p).unwrap();
    b[50] ^= 1;
    fs::write(&p, b).unwrap();
    let a = apply_seekable(&dev, &s.full1, usize::MAX).unwrap();
    assert_eq!(a.resumed_from, None);
    dev.fsck_commit(&s.c1).unwrap();
}

/// `apply-offline --allow-unsigned --sysroot <sys>`, then `extra` (the file last).
fn unsigned_apply<'a>(sys: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["apply-offline", "--allow-unsigned", "--sysroot", sys];
    args.extend_from_slice(extra);
    args
}

fn run(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(EXE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut i = child.stdin.take().unwrap();
    let _ = i.write_all(stdin);
    drop(i);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_resumes_a_file_and_the_rest_of_a_stream_and_reports_where_in_json() {
    let s = setup();
    let (_, bs) = boundaries(&s.full1);
    let sysroot = s.dir.join("sys");
    let sys = sysroot.to_str().unwrap();
    // The transfer breaks off inside part 3.
    let (ok, _, err) = run(&unsigned_apply(sys, &["-"]), &s.full1[..bs[2] + 77]);
    assert!(!ok);
    assert!(err.contains("truncated"), "{err}");
    // The rest of the stream from a point after the checkpoint: refused, says where.
    let later = (bs[2] + 10).to_string();
    let (ok, _, err) = run(
        &unsigned_apply(sys, &["--resume-from-offset", &later, "-"]),
        &s.full1[bs[2] + 10..],
    );
    assert!(!ok);
    assert!(
        err.contains(&format!("can only resume at byte {}", bs[2])),
        "{err}"
    );
    // The rest from the checkpoint (a little before it: the overlap is skipped).
    let from = (bs[2] - 5).to_string();
    let (ok, out, err) = run(
        &unsigned_apply(sys, &["--json", "--resume-from-offset", &from, "-"]),
        &s.full1[bs[2] - 5..],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["resumed_from"], bs[2] as u64);
    assert_eq!(v["commit"], s.c1.to_string());
    let repo = Repo::open(&sysroot.join("repo")).unwrap();
    repo.fsck_commit(&s.c1).unwrap();

    // A stream starting inside a file with no checkpoint: refused, says to send it whole.
    let (ok, _, err) = run(
        &unsigned_apply(sys, &["--resume-from-offset", "500", "-"]),
        &s.full2[500..],
    );
    assert!(!ok);
    assert!(err.contains("send the whole file from byte 0"), "{err}");

    // A file: interrupted (cut short on disk), then the whole file resumes by seeking.
    let (_, bs) = boundaries(&s.full2);
    let part = s.dir.join("part.update");
    fs::write(&part, &s.full2[..bs[1] + 1]).unwrap();
    let (ok, _, _) = run(&unsigned_apply(sys, &[part.to_str().unwrap()]), &[]);
    assert!(!ok);
    let whole = s.dir.join("whole.update");
    fs::write(&whole, &s.full2).unwrap();
    let (ok, out, err) = run(
        &unsigned_apply(sys, &["--json", whole.to_str().unwrap()]),
        &[],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["resumed_from"], bs[1] as u64, "{out}");
    repo.fsck_commit(&s.c2).unwrap();
    // --resume-from-offset is for standard input only.
    let (ok, _, err) = run(
        &unsigned_apply(sys, &["--resume-from-offset", "5", whole.to_str().unwrap()]),
        &[],
    );
    assert!(!ok && err.contains("standard input"), "{err}");
}

#[test]
fn a_killed_install_resumes_at_a_part_boundary() {
    let s = setup();
    let (_, bs) = boundaries(&s.full1);
    let file = s.dir.join("u.update");
    fs::write(&file, &s.full1).unwrap();
    let sysroot = s.dir.join("sys");
    let sys = sysroot.to_str().unwrap();
    // How many interruption points a whole install passes.
    let (ok, _, trace) = {
        let out = Command::new(EXE)
            .args(unsigned_apply(sys, &[file.to_str().unwrap()]))
            .env(agent_linux::fsops::FAULT_TRACE_VAR, "1")
            .output()
            .unwrap();
        (
            out.status.success(),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(ok);
    let points = trace.lines().filter(|l| l.contains("point")).count().max(1);
    let mut resumed = Vec::new();
    for k in 1..=12 {
        let at = points * k / 13;
        let _ = fs::remove_dir_all(&sysroot);
        let out = Command::new(EXE)
            .args(unsigned_apply(sys, &[file.to_str().unwrap()]))
            .env(agent_linux::fsops::FAULT_AT_VAR, at.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!out.success(), "not killed at point {at} of {points}");
        let (ok, out, err) = run(
            &unsigned_apply(sys, &["--json", file.to_str().unwrap()]),
            &[],
        );
        assert!(ok, "after a kill at point {at}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(r) = v["resumed_from"].as_u64() {
            assert!(
                bs.contains(&(r as usize)),
                "resumed at {r}, not a part boundary"
            );
            resumed.push(r);
        }
        let repo = Repo::open(&sysroot.join("repo")).unwrap();
        assert_eq!(repo.read_ref(REF).unwrap(), Some(s.c1));
        repo.fsck_commit(&s.c1).unwrap();
        assert_eq!(fs::read_dir(sysroot.join("repo/state")).unwrap().count(), 0);
    }
    eprintln!("{points} points; resumed at {resumed:?}");
    assert!(resumed.len() >= 6, "resumed only {resumed:?}");
}

#[test]
fn install_resumes_and_cleanup_removes_an_abandoned_checkpoint() {
    use deploy_common::{fails, ok, Lab};
    let lab = Lab::new(&["1", "2"]);
    lab.trust("sys");
    let d = lab.path();
    ok(
        d,
        &["install", "--sysroot", "sys", &lab.update(None, "1")],
        &[],
    );
    let env = [("ECU_AGENT_BOOTED_SLOT", "A")];
    ok(d, &["mark-good", "--sysroot", "sys"], &env);
    // A delta of several parts.
    let to = lab.commit("2").to_string();
    let from = lab.commit("1").to_string();
    ok(
        d,
        &[
            "delta",
            "generate",
            "--repo",
            "build",
            "--from",
            &from,
            "--to",
            &to,
            "--ref",
            "os/main",
            "--out",
            "2.update",
            "--part-size",
            "300",
            "--sign-key",
            deploy_common::LAB_KEY,
        ],
        &[],
    );
    let file = fs::read(d.join("2.update")).unwrap();
    let (_, bs) = boundaries(&file);
    assert!(bs.len() >= 2, "{bs:?}");
    fs::write(d.join("cut.update"), &file[..bs[1] + 3]).unwrap();
    let err = fails(d, &["install", "--sysroot", "sys", "cut.update"], &env);
    assert!(err.contains("truncated"), "{err}");
    let out = ok(
        d,
        &["install", "--sysroot", "sys", "--json", "2.update"],
        &env,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["applied"]["resumed_from"], bs[1] as u64, "{out}");
    assert_eq!(v["action"], "staged", "{out}");

    // Interrupted again (a new delta would do; the same file after a rollback is simplest:
    // a fresh sysroot), then abandoned: cleanup removes the checkpoint and its objects.
    let _ = fs::remove_dir_all(d.join("sys"));
    lab.trust("sys");
    ok(
        d,
        &["install", "--sysroot", "sys", &lab.update(None, "1")],
        &[],
    );
    ok(d, &["mark-good", "--sysroot", "sys"], &env);
    let _ = fails(d, &["install", "--sysroot", "sys", "cut.update"], &env);
    let state = d.join("sys/repo/state/install.checkpoint");
    assert!(state.exists());
    let out = ok(d, &["cleanup", "--sysroot", "sys", "--json"], &env);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["install_checkpoint"], true, "{r}");
    assert!(r["files"].as_u64().unwrap() >= 1, "{r}");
    assert!(!state.exists());
    let out = ok(
        d,
        &["install", "--sysroot", "sys", "--json", "2.update"],
        &env,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["applied"]["resumed_from"],
        serde_json::Value::Null,
        "{out}"
    );
}
