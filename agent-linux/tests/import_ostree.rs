//! `ecu-agent import-ostree` against the real `ostree` (Debian package `ostree`): trees with
//! the usual hard cases committed by `ostree commit` into archive, bare-user and bare
//! repositories with a history of three commits, imported, then checked out by both tools
//! and compared entry by entry (type, mode, owner, xattrs, content, symlink target); the
//! history (versions, subjects, bodies, timestamps, parents); re-import; a pruned history;
//! corrupted objects; and an `.update` generated from an imported commit, installed.
//!
//! Run as root (owners and `security.*` xattrs are then real); under `CI=true` a missing
//! `ostree` fails the tests instead of skipping them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_linux::fsmeta::{read_xattrs, XattrPolicy};
use test_support::rng::XorShift64;

mod build_common;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ecu-agent"))
}

/// Whether the real `ostree` is there; under `CI=true` its absence fails the test.
fn have_ostree(test: &str) -> bool {
    let ok = Command::new("ostree")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("ostree (Debian package ostree) is required under CI=true");
        }
        eprintln!("SKIP {test}: ostree is not installed (Debian package ostree)");
    }
    ok
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args))
}

fn agent(args: &[&str]) -> String {
    run(Command::new(bin()).args(args))
}

/// Runs ecu-agent and requires it to fail; returns stderr.
fn agent_fails(args: &[&str]) -> String {
    let o = Command::new(bin()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "ecu-agent {args:?} should fail:\n{}{err}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The arguments of `ecu-agent import-ostree` from the OSTree repository `ostree` into our
/// repository `ours`, then `extra`.
fn import_args<'a>(ostree: &'a Path, ours: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "import-ostree",
        "--ostree-repo",
        p(ostree),
        "--repo",
        p(ours),
    ];
    args.extend_from_slice(extra);
    args
}

/// `ecu-agent import-ostree` (see [`import_args`]): its stdout.
fn import_ostree(ostree: &Path, ours: &Path, extra: &[&str]) -> String {
    agent(&import_args(ostree, ours, extra))
}

/// `ecu-agent import-ostree` (see [`import_args`]), required to fail: its stderr.
fn import_ostree_fails(ostree: &Path, ours: &Path) -> String {
    agent_fails(&import_args(ostree, ours, &[]))
}

/// `ecu-agent log --json` of [`REF`] in the repository of `sysroot`.
fn log_json(sysroot: &Path) -> serde_json::Value {
    let repo = sysroot.join("repo");
    serde_json::from_str(&agent(&["log", "--repo", p(&repo), REF, "--json"])).unwrap()
}

/// One entry of a tree as both tools must materialize it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Content of a file, target of a symlink.
    data: Vec<u8>,
}

/// Every entry under `root` (the root itself as ""), with all its xattrs.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let (kind, data) = if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
            ('d', Vec::new())
        } else if ft.is_symlink() {
            use std::os::unix::ffi::OsStrExt;
            (
                'l',
                fs::read_link(&path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else {
            ('f', fs::read(&path).unwrap())
        };
        let entry = Entry {
            kind,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            xattrs: read_xattrs(&path, XattrPolicy::All).unwrap(),
            data,
        };
        out.insert(rel, entry);
    }
    out
}

fn diff(a: &BTreeMap<PathBuf, Entry>, b: &BTreeMap<PathBuf, Entry>) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => s.push_str(&format!("only in first: {k:?}\n")),
            Some(w) if w != v => s.push_str(&format!("{k:?}:\n  {v:?}\n  {w:?}\n")),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        s.push_str(&format!("only in second: {k:?}\n"));
    }
    s
}

/// Sets an xattr; false when the filesystem refuses it.
fn try_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).is_ok()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    assert!(
        try_xattr(path, name, value),
        "setting {name} on {}",
        path.display()
    );
}

fn write(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn big(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift64::from_state(seed | 1);
    (0..len)
        .map(|i| {
            let x = rng.next_u64();
            // Compressible but not trivially so: text-like runs.
            if i % 64 < 40 {
                b'a' + (x % 26) as u8
            } else {
                b' '
            }
        })
        .collect()
}

/// The first tree: symlinks (relative, absolute, dangling), xattrs (user.* and, where the
/// filesystem allows, security.* and trusted.*), empty directories, setuid/setgid/sticky
/// bits, hard links, zero-length files, odd names, owners other than root, a file of
/// several inflate chunks. Returns whether security.* xattrs are part of it.
fn tree_v1(t: &Path) -> bool {
    fs::create_dir_all(t).unwrap();
    write(t, "etc/os-release", b"NAME=exampleos\nVERSION=1\n", 0o644);
    write(t, "etc/shadow", b"root:*:1::::::\n", 0o600);
    write(t, "usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    write(t, "usr/bin/su", b"\x7fELF setuid\n", 0o4755);
    write(t, "usr/bin/wall", b"\x7fELF setgid\n", 0o2755);
    write(t, "usr/bin/sticky-file", b"sticky\n", 0o1644);
    write(t, "usr/share/big.txt", &big(7, 300_000), 0o644);
    write(t, "zero", b"", 0o644);
    write(t, "var/lib/zero-too", b"", 0o400);
    write(t, "odd/with space", b"space\n", 0o644);
    write(t, "odd/ünïcödé ☃", b"unicode\n", 0o644);
    write(t, "odd/-leading-dash", b"dash\n", 0o644);
    write(t, "odd/tab\tand\nnewline", b"control\n", 0o644);
    write(t, "odd/.hidden", b"hidden\n", 0o644);
    fs::create_dir_all(t.join("empty/nested-empty")).unwrap();
    fs::create_dir_all(t.join("tmp")).unwrap();
    fs::set_permissions(t.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(t.join("srv/shared")).unwrap();
    fs::set_permissions(t.join("srv/shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    symlink("tool", t.join("usr/bin/tool-link")).unwrap();
    symlink("/usr/bin/tool", t.join("usr/bin/abs-link")).unwrap();
    symlink("../nowhere/at/all", t.join("usr/bin/dangling")).unwrap();
    symlink("/etc", t.join("etc-link")).unwrap();
    fs::hard_link(t.join("usr/bin/tool"), t.join("usr/bin/tool-hardlink")).unwrap();
    fs::hard_link(t.join("zero"), t.join("zero-hardlink")).unwrap();
    set_xattr(&t.join("etc/os-release"), "user.checksum", b"abc");
    set_xattr(&t.join("etc/os-release"), "user.another", b"");
    set_xattr(&t.join("etc"), "user.dir-attr", b"on a directory");
    set_xattr(&t.join("zero"), "user.binary", &[0, 1, 2, 255]);
    // Several on one file, in names whose byte order is not the filesystem's listing order
    // (ext4 lists shorter names first): OSTree before 2023 hashes them in listing order,
    // later versions sorted.
    set_xattr(&t.join("usr/bin/su"), "user.zz", b"1");
    set_xattr(&t.join("usr/bin/su"), "user.aaa", b"2");
    set_xattr(&t.join("usr/bin/su"), "user.m", b"3");
    let mut security = false;
    if is_root() {
        chown(&t.join("srv"), 42, 43);
        chown(&t.join("srv/shared"), 1000, 1001);
        chown(&t.join("etc/shadow"), 0, 42);
        chown(&t.join("var/lib/zero-too"), 65534, 65534);
        chown(&t.join("usr/bin/abs-link"), 7, 8);
        security = try_xattr(&t.join("usr/bin/su"), "security.ecu-test", b"label\0");
        if security {
            set_xattr(
                &t.join("usr/bin/tool"),
                "security.capability-like",
                b"\x01\x02",
            );
            set_xattr(&t.join("srv"), "trusted.overlay.opaque", b"y");
        }
    }
    security
}

/// The second tree: a file added, one changed, one removed, a mode changed.
fn tree_v2(t: &Path) {
    write(t, "etc/os-release", b"NAME=exampleos\nVERSION=2\n", 0o644);
    set_xattr(&t.join("etc/os-release"), "user.checksum", b"def");
    write(t, "usr/bin/new-tool", b"#!/bin/sh\necho new\n", 0o750);
    fs::remove_file(t.join("odd/.hidden")).unwrap();
    fs::set_permissions(t.join("usr/bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
    let mut b = big(7, 300_000);
    b[150_000..150_010].copy_from_slice(b"CHANGED!!!");
    write(t, "usr/share/big.txt", &b, 0o644);
}

/// The third tree: a symlink retargeted, a directory removed, an empty one added.
fn tree_v3(t: &Path) {
    fs::remove_file(t.join("usr/bin/tool-link")).unwrap();
    symlink("new-tool", t.join("usr/bin/tool-link")).unwrap();
    fs::remove_dir_all(t.join("empty")).unwrap();
    fs::create_dir_all(t.join("var/cache/new-empty")).unwrap();
    write(t, "etc/motd", b"", 0o644);
}

const REF: &str = "exampleos/x86_64/main";

/// (version, subject, body, timestamp) of the three commits.
const COMMITS: [(&str, &str, &str, u64); 3] = [
    ("1.0", "First release", "", 1_700_000_000),
    (
        "1.1",
        "Second release",
        "Fixes the tool.\n\nAnd more.",
        1_700_086_400,
    ),
    ("2.0", "Third release", "Major.", 1_700_172_800),
];

/// A scratch directory with the source trees and an OSTree repository in `mode` holding
/// the three commits on [`REF`] (plus `other/ref` on the first tree).
struct Fixture {
    dir: tempfile::TempDir,
    /// The OSTree repository.
    repo: PathBuf,
    /// The OSTree commits, oldest first.
    ostree_commits: Vec<String>,
    /// The source trees' snapshots, oldest first.
    sources: Vec<BTreeMap<PathBuf, Entry>>,
}

impl Fixture {
    fn new(mode: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join(format!("ostree-{mode}"));
        ostree(&repo, &["init", &format!("--mode={mode}")]);
        let t = dir.path().join("tree");
        tree_v1(&t);
        let mut ostree_commits = Vec::new();
        let mut sources = Vec::new();
        for (i, (version, subject, body, ts)) in COMMITS.iter().enumerate() {
            match i {
                1 => tree_v2(&t),
                2 => tree_v3(&t),
                _ => {}
            }
            let mut args = vec![
                "commit".to_string(),
                format!("--branch={REF}"),
                format!("--subject={subject}"),
                format!("--add-metadata-string=version={version}"),
                format!("--timestamp=@{ts}"),
            ];
            if !body.is_empty() {
                args.push(format!("--body={body}"));
            }
            args.push(p(&t).to_string());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ostree_commits.push(ostree(&repo, &args).trim().to_string());
            sources.push(snapshot(&t));
            if i == 0 {
                ostree(
                    &repo,
                    &["commit", "--branch=other/ref", "-s", "other", p(&t)],
                );
            }
        }
        Fixture {
            dir,
            repo,
            ostree_commits,
            sources,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A sysroot `name` whose repository (`name/repo`) is fresh.
    fn sysroot(&self, name: &str) -> PathBuf {
        let s = self.path(name);
        fs::create_dir_all(&s).unwrap();
        agent(&["init", "--repo", p(&s.join("repo"))]);
        s
    }

    fn import(&self, sysroot: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&import_ostree(&self.repo, &sysroot.join("repo"), &args)).unwrap()
    }

    /// `ostree checkout` of `commit` into a new directory.
    fn ostree_checkout(&self, commit: &str, name: &str) -> PathBuf {
        let d = self.path(name);
        ostree(&self.repo, &["checkout", "--force-copy", commit, p(&d)]);
        d
    }
}

fn our_ref(sysroot: &Path, name: &str) -> Option<String> {
    fs::read_to_string(sysroot.join("repo/refs/heads").join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Both tools check out every imported commit identically, and as the source tree was.
fn checkouts_match(mode: &str) {
    let f = Fixture::new(mode);
    let s = f.sysroot("sysroot");
    let report = f.import(&s, &["--ref", REF]);
    assert_eq!(report["mode"], mode, "{report}");
    let r = &report["refs"][0];
    assert_eq!(r["ref"], REF);
    let commits = r["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 3, "{report}");
    for (i, c) in commits.iter().enumerate() {
        assert_eq!(c["ostree"], f.ostree_commits[i], "{report}");
        let ours = c["commit"].as_str().unwrap();
        let theirs = f.ostree_checkout(&f.ostree_commits[i], &format!("ostree-co-{i}"));
        let mine = f.path(&format!("our-co-{i}"));
        agent(&["checkout", "--sysroot", p(&s), ours, p(&mine)]);
        let (a, b) = (snapshot(&theirs), snapshot(&mine));
        assert!(
            a == b,
            "commit {i} ({mode}): ostree checkout vs ecu-agent checkout differ:\n{}",
            diff(&a, &b)
        );
        // And both are the tree that was committed (hard links are two equal files; an
        // xattr with an empty value is not recorded by `ostree commit`).
        let mut src = f.sources[i].clone();
        for e in src.values_mut() {
            e.xattrs.retain(|(_, v)| !v.is_empty());
        }
        let mut ours_root = b.clone();
        // The checkout directories' own times and names differ; their metadata must not.
        src.remove(Path::new(""));
        ours_root.remove(Path::new(""));
        assert!(
            src == ours_root,
            "commit {i} ({mode}): source tree vs checkout differ:\n{}",
            diff(&src, &ours_root)
        );
    }
    assert_eq!(our_ref(&s, REF).as_deref(), commits[2]["commit"].as_str());
    // Nothing but the asked-for ref.
    assert_eq!(our_ref(&s, "other/ref"), None);
}

/// Tests that run `$body` when the real `ostree` is there ([`have_ostree`]), one a line.
macro_rules! with_ostree {
    ($($name:ident => $body:expr;)*) => {$(
        #[test]
        fn $name() {
            if have_ostree(stringify!($name)) {
                $body;
            }
        }
    )*};
}

with_ostree! {
    archive_checkouts_match => checkouts_match("archive");
    bare_user_checkouts_match => checkouts_match("bare-user");
}

/// A bare repository holds real owners and xattrs: made and read as root only.
#[test]
fn bare_checkouts_match() {
    if !have_ostree("bare_checkouts_match") {
        return;
    }
    if !is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("bare_checkouts_match must run as root under CI=true");
        }
        eprintln!("SKIP bare_checkouts_match: needs root (a bare repository stores real owners)");
        return;
    }
    checkouts_match("bare");
}

/// The hard cases really are in the tree the comparisons run on.
#[test]
fn fixture_holds_the_hard_cases() {
    if !have_ostree("fixture_holds_the_hard_cases") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let security = tree_v1(&d.path().join("t"));
    let s = snapshot(&d.path().join("t"));
    let e = |r: &str| s.get(Path::new(r)).unwrap_or_else(|| panic!("{r}"));
    assert_eq!(e("usr/bin/su").mode & 0o7777, 0o4755);
    assert_eq!(e("usr/bin/wall").mode & 0o7777, 0o2755);
    assert_eq!(e("tmp").mode & 0o7777, 0o1777);
    assert_eq!(e("usr/bin/dangling").kind, 'l');
    assert_eq!(e("zero").xattrs.len(), 1);
    assert_eq!(e("empty/nested-empty").kind, 'd');
    if is_root() {
        assert_eq!((e("srv/shared").uid, e("srv/shared").gid), (1000, 1001));
        eprintln!("security.* xattrs on this filesystem: {security}");
    }
}

/// Versions, subjects, bodies, timestamps and parents are those of the OSTree history.
#[test]
fn history_is_kept() {
    if !have_ostree("history_is_kept") {
        return;
    }
    let f = Fixture::new("archive");
    let s = f.sysroot("sysroot");
    let report = f.import(&s, &[]);
    // Every ref when none is named, each as our branch of the same name.
    let names: Vec<&str> = report["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![REF, "other/ref"]);
    assert_eq!(report["refs"][0]["history"]["end"], "root");
    let log = log_json(&s);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    for (i, (version, subject, body, ts)) in COMMITS.iter().enumerate() {
        let e = &log[2 - i];
        assert_eq!(e["version"], *version);
        assert_eq!(e["subject"], *subject);
        assert_eq!(e["body"], *body);
        assert_eq!(e["timestamp"], *ts);
        let parent = if i == 0 {
            serde_json::Value::Null
        } else {
            log[3 - i]["commit"].clone()
        };
        assert_eq!(e["parent"], parent, "parent of commit {i}");
    }
    // What `ostree log` says agrees.
    let olog = ostree(&f.repo, &["log", REF]);
    for (version, subject, _, _) in COMMITS {
        assert!(olog.contains(&format!("Version: {version}")), "{olog}");
        assert!(olog.contains(subject), "{olog}");
    }
    assert_eq!(
        our_ref(&s, "other/ref").as_deref(),
        report["refs"][1]["head"].as_str()
    );
}

/// Importing again changes nothing; a new OSTree commit is added on top, nothing else.
#[test]
fn reimport_is_idempotent_and_incremental() {
    if !have_ostree("reimport_is_idempotent_and_incremental") {
        return;
    }
    let f = Fixture::new("bare-user");
    let s = f.sysroot("sysroot");
    let first = f.import(&s, &["--ref", REF]);
    let head = our_ref(&s, REF).unwrap();
    let objects = count_files(&s.join("repo/objects"));
    let again = f.import(&s, &["--ref", REF]);
    assert_eq!(our_ref(&s, REF).unwrap(), head);
    assert_eq!(count_files(&s.join("repo/objects")), objects);
    let commits = again["refs"][0]["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 3, "{again}");
    assert!(commits.iter().all(|c| c["new"] == false), "{again}");
    assert_eq!(
        again["refs"][0]["commits"],
        first["refs"][0]["commits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c["new"] = false.into();
                c
            })
            .collect::<serde_json::Value>()
    );
    assert_eq!(again["stats"]["new_objects"], 0, "{again}");
    // The pipeline commits again: only that commit is added, on top of our head.
    let t = f.path("tree");
    write(&t, "etc/fourth", b"4\n", 0o644);
    let fourth = ostree(
        &f.repo,
        &[
            "commit",
            &format!("--branch={REF}"),
            "-s",
            "Fourth",
            "--add-metadata-string=version=2.1",
            p(&t),
        ],
    );
    let third = f.import(&s, &["--ref", REF]);
    let commits = third["refs"][0]["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 4);
    assert_eq!(
        commits.iter().filter(|c| c["new"] == true).count(),
        1,
        "{third}"
    );
    assert_eq!(commits[3]["ostree"], fourth.trim());
    let info = log_json(&s);
    assert_eq!(info[0]["parent"], head.as_str());
    assert_eq!(info[0]["version"], "2.1");
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// A history whose oldest commits were pruned ends at the first missing parent, and says so.
#[test]
fn missing_parent_ends_history() {
    if !have_ostree("missing_parent_ends_history") {
        return;
    }
    let f = Fixture::new("archive");
    let first = &f.ostree_commits[0];
    // Imported whole before the pipeline pruned its oldest commit.
    let before = f.sysroot("before");
    f.import(&before, &["--ref", REF]);
    let head = our_ref(&before, REF).unwrap();
    fs::remove_file(
        f.repo
            .join("objects")
            .join(&first[..2])
            .join(format!("{}.commit", &first[2..])),
    )
    .unwrap();
    let s = f.sysroot("sysroot");
    let report = f.import(&s, &["--ref", REF]);
    let r = &report["refs"][0];
    assert_eq!(r["history"]["end"], "missing_parent", "{report}");
    assert_eq!(r["history"]["commit"], first.as_str());
    assert_eq!(r["commits"].as_array().unwrap().len(), 2);
    let log = log_json(&s);
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(log[1]["parent"], serde_json::Value::Null);
    assert_eq!(log[1]["version"], "1.1");
    // The text output names where the history stops.
    let s2 = f.sysroot("sysroot2");
    let text = import_ostree(&f.repo, &s2.join("repo"), &["--ref", REF]);
    assert!(
        text.contains(&format!("history ends: the parent {first}")),
        "{text}"
    );
    // The branch imported before keeps its whole history: the pruned OSTree history is
    // recognized as what it holds (by content: its commits there have parents), not
    // imported again as a new root.
    let again = f.import(&before, &["--ref", REF]);
    assert_eq!(our_ref(&before, REF).unwrap(), head);
    let commits = again["refs"][0]["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 2, "{again}");
    assert!(commits.iter().all(|c| c["new"] == false), "{again}");
    assert_eq!(commits[1]["commit"], head.as_str());
    let log = log_json(&before);
    assert_eq!(log.as_array().unwrap().len(), 3);
}

/// The path of an OSTree object.
fn object(repo: &Path, id: &str, suffix: &str) -> PathBuf {
    repo.join("objects")
        .join(&id[..2])
        .join(format!("{}.{suffix}", &id[2..]))
}

/// A file object of `mode`'s repository that only the newest commit has (`usr/bin/new-tool`
/// came in the second commit; `etc/motd`, empty, in the third).
fn file_object_of(f: &Fixture, commit: &str, path: &str) -> String {
    let out = ostree(&f.repo, &["ls", "-C", commit, path]);
    // `-rwxr-x--- 0 0 20 <checksum> /usr/bin/new-tool`
    out.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string()
}

fn flip_byte(path: &Path, from_end: usize) {
    let len = fs::metadata(path).unwrap().len() as usize;
    flip_byte_at(path, len - from_end);
}

fn flip_byte_at(path: &Path, at: usize) {
    let mut perm = fs::metadata(path).unwrap().permissions();
    perm.set_mode(0o644);
    fs::set_permissions(path, perm).unwrap();
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x20;
    fs::write(path, b).unwrap();
}

/// Where a file object is corrupted.
#[derive(Clone, Copy)]
enum Damage {
    /// A byte near the end of the content (inside the deflate stream of an archive object).
    Content,
    /// The high byte of the gid in an archive object's header: the object still parses and
    /// inflates; only its checksum tells.
    ArchiveHeaderGid,
}

/// A corrupted object is refused with its name, and nothing moves: a fresh branch is not
/// created, an imported one stays at its head.
fn corrupted(mode: &str, suffix: &str, damage: Damage) {
    let f = Fixture::new(mode);
    let s = f.sysroot("sysroot");
    // First import the first commit alone (a repository whose ref is at commit 1).
    let early = f.path("early");
    ostree(&early, &["init", &format!("--mode={mode}")]);
    ostree(&early, &["pull-local", p(&f.repo), &f.ostree_commits[0]]);
    ostree(&early, &["refs", "--create", REF, &f.ostree_commits[0]]);
    import_ostree(&early, &s.join("repo"), &[]);
    let head = our_ref(&s, REF).unwrap();

    let newest = &f.ostree_commits[2];
    let file = file_object_of(&f, newest, "/usr/bin/new-tool");
    let target = object(&f.repo, &file, suffix);
    match damage {
        Damage::Content => flip_byte(&target, 3),
        // u32 BE length, 4 zero bytes, then (t size, u uid, u gid, ...).
        Damage::ArchiveHeaderGid => flip_byte_at(&target, 8 + 8 + 4),
    }
    let fresh = f.sysroot("fresh");
    for (sys, before) in [(&s, Some(head.clone())), (&fresh, None)] {
        let err = import_ostree_fails(&f.repo, &sys.join("repo"));
        assert!(err.contains(&file), "the error names the object: {err}");
        assert!(err.contains("corrupted"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(our_ref(sys, REF), before, "{err}");
        assert_eq!(our_ref(sys, "other/ref"), None, "{err}");
    }
}

with_ostree! {
    corrupted_archive_file_is_refused => corrupted("archive", "filez", Damage::Content);
    corrupted_archive_header_is_refused => corrupted("archive", "filez", Damage::ArchiveHeaderGid);
    corrupted_bare_user_file_is_refused => corrupted("bare-user", "file", Damage::Content);
}

/// A dirtree and a commit whose bytes do not hash to their names are refused by name.
#[test]
fn corrupted_metadata_is_refused() {
    if !have_ostree("corrupted_metadata_is_refused") {
        return;
    }
    let f = Fixture::new("archive");
    let s = f.sysroot("sysroot");
    let newest = &f.ostree_commits[2];
    let show = ostree(&f.repo, &["ls", "-d", "-C", newest, "/usr/bin"]);
    let dirtree = show
        .split_whitespace()
        .find(|w| w.len() == 64)
        .unwrap()
        .to_string();
    let path = object(&f.repo, &dirtree, "dirtree");
    let good = fs::read(&path).unwrap();
    flip_byte(&path, 1);
    let err = import_ostree_fails(&f.repo, &s.join("repo"));
    assert!(
        err.contains(&format!("dirtree object {dirtree} is corrupted")),
        "{err}"
    );
    assert_eq!(our_ref(&s, REF), None);
    fs::write(&path, good).unwrap();
    let cpath = object(&f.repo, &f.ostree_commits[1], "commit");
    flip_byte(&cpath, 10);
    let err = import_ostree_fails(&f.repo, &s.join("repo"));
    assert!(
        err.contains(&format!(
            "commit object {} is corrupted",
            f.ostree_commits[1]
        )),
        "{err}"
    );
    assert_eq!(our_ref(&s, REF), None);
}

/// Modes this importer does not read are refused, saying which and what to do.
#[test]
fn unsupported_mode_is_refused() {
    if !have_ostree("unsupported_mode_is_refused") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("o");
    ostree(&repo, &["init", "--mode=bare-user-only"]);
    agent(&["init", "--repo", p(&d.path().join("ours"))]);
    let err = import_ostree_fails(&repo, &d.path().join("ours"));
    assert!(err.contains("\"bare-user-only\""), "{err}");
    assert!(err.contains("pull-local"), "{err}");
    let err = import_ostree_fails(d.path(), &d.path().join("ours"));
    assert!(err.contains("is not an OSTree repository"), "{err}");
}

/// A branch of ours that went its own way is not rewritten.
#[test]
fn diverged_branch_is_refused() {
    if !have_ostree("diverged_branch_is_refused") {
        return;
    }
    let f = Fixture::new("archive");
    let s = f.sysroot("sysroot");
    let repo = s.join("repo");
    let t = f.path("mine");
    write(&t, "a", b"mine\n", 0o644);
    let mine = agent(&build_common::commit(&repo, REF, &t, &[]));
    let err = import_ostree_fails(&f.repo, &repo);
    assert!(err.contains("none of the 3 commits"), "{err}");
    assert_eq!(our_ref(&s, REF).as_deref(), Some(mine.trim()));
    assert_eq!(our_ref(&s, "other/ref"), None);
}

/// End to end: `.update` files generated from imported commits (from scratch, then a delta)
/// install, and the device's checkout is what `ostree checkout` gives.
#[test]
fn update_from_imported_commit_installs() {
    if !have_ostree("update_from_imported_commit_installs") {
        return;
    }
    let f = Fixture::new("archive");
    let s = f.sysroot("build");
    let repo = s.join("repo");
    let report = f.import(&s, &["--ref", REF]);
    let commits = report["refs"][0]["commits"].as_array().unwrap();
    let c1 = commits[0]["commit"].as_str().unwrap();
    let c3 = commits[2]["commit"].as_str().unwrap();
    let key = f.path("k");
    agent(&["keygen", "--out", p(&key)]);
    let full = f.path("full.update");
    let delta = f.path("delta.update");
    for (from, to, out) in [(None, c1, &full), (Some(c1), c3, &delta)] {
        let extra = ["--ref", REF, "--sign-key", p(&key)];
        agent(&build_common::generate(&repo, from, to, out, &extra));
    }
    let device = f.path("device");
    let pubkey = format!("{}.pub", p(&key));
    for u in [&full, &delta] {
        agent(&build_common::trusted(
            "apply-offline",
            &device,
            &pubkey,
            &[p(u)],
        ));
    }
    let mine = f.path("device-co");
    agent(&["checkout", "--sysroot", p(&device), c3, p(&mine)]);
    let theirs = f.ostree_checkout(&f.ostree_commits[2], "ostree-co");
    let (a, b) = (snapshot(&theirs), snapshot(&mine));
    assert!(a == b, "{}", diff(&a, &b));
}
