//! Shared helpers for the end-to-end tests: sample trees on the real filesystem, snapshots of a
//! tree to compare a checkout with its source, and a chunked install loop over the Linux
//! store.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use agent_core::install::{InstallError, Installed, Installer, Policy};
use agent_core::object::{ObjectId, ObjectKind};
use agent_linux::fsmeta::{read_xattrs, XattrPolicy};
use agent_linux::repo::{Repo, RepoError};
use agent_linux::store::RepoStore;

/// Text that compresses like real text but is not trivially repetitive: words from a small
/// vocabulary picked by a seeded xorshift generator.
pub fn semi_random_text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "update", "ecu", "slot", "commit", "boot", "delta", "object", "flash", "tree", "kernel",
        "init", "config", "signal", "can", "bus", "frame", "sensor", "brake", "torque", "gear",
        "voltage", "0x1f", "42", "timeout",
    ];
    let mut rng = test_support::rng::XorShift64::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let x = rng.next_u64();
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
        if x.is_multiple_of(7) {
            out.extend_from_slice(format!("{}", x % 100_000).as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// Sets a `user.*` xattr (panics on failure: the tests run on a filesystem that supports them,
/// which [`require_user_xattrs`] checks first).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting {name} on {}: {e}", path.display()));
}

/// Fails the test with a clear message when `dir`'s filesystem does not hold `user.*` xattrs.
pub fn require_user_xattrs(dir: &Path) {
    let p = dir.join(".xattr-probe");
    fs::write(&p, b"").unwrap();
    let r = rustix::fs::lsetxattr(&p, "user.probe", b"1", rustix::fs::XattrFlags::empty());
    fs::remove_file(&p).unwrap();
    assert!(
        r.is_ok(),
        "{} does not support user.* xattrs ({r:?}); run the tests on ext4/xfs/btrfs/tmpfs",
        dir.display()
    );
}

/// Writes the sample tree the round-trip tests use into `root` (created): regular files, an
/// executable, a setgid file, symlinks (relative, absolute, dangling), empty files, empty
/// directories, a deep path, xattrs on a file and a directory, names that are not UTF-8, and a
/// 200 KiB text file.
pub fn write_sample_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    require_user_xattrs(root);
    let w = |rel: &str, content: &[u8], mode: u32| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    w("etc/os-release", b"NAME=ecu\nVERSION=1\n", 0o644);
    w("etc/secret", b"key material\n", 0o600);
    w("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    w("usr/bin/sgid", b"\x7fELF not really\n", 0o2755);
    w("empty-file", b"", 0o644);
    w("var/lib/empty-too", b"", 0o640);
    w(
        "usr/share/doc/big.txt",
        &semi_random_text(1, 200 * 1024),
        0o644,
    );
    for d in ["var/empty", "srv/nested/empty/dir"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::set_permissions(root.join("var/empty"), fs::Permissions::from_mode(0o700)).unwrap();
    let deep: PathBuf = (0..40).map(|i| format!("d{i}")).collect();
    w(deep.join("leaf").to_str().unwrap(), b"deep down\n", 0o644);
    std::os::unix::fs::symlink("../usr/bin/tool", root.join("etc/tool-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    // Names are bytes: not UTF-8, with spaces and a newline.
    use std::os::unix::ffi::OsStrExt;
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"etc/caf\xe9 latin1")),
        b"bytes\n",
    )
    .unwrap();
    fs::write(root.join("etc/two\nlines"), b"").unwrap();
    set_xattr(&root.join("usr/bin/tool"), "user.checksum", b"abc123");
    set_xattr(&root.join("usr/bin/tool"), "user.empty", b"");
    set_xattr(&root.join("etc"), "user.dir-label", b"config");
}

/// One entry of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snap {
    /// A regular file: permission bits, content, user xattrs.
    File {
        /// Permission and set-id bits.
        mode: u32,
        /// Content.
        content: Vec<u8>,
        /// `user.*` xattrs.
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// A directory: permission bits and user xattrs.
    Dir {
        /// Permission bits.
        mode: u32,
        /// `user.*` xattrs.
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// A symlink and its target.
    Symlink(PathBuf),
}

/// Everything a checkout must reproduce, keyed by relative path ("" is the root).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let snap = if ft.is_symlink() {
            Snap::Symlink(fs::read_link(&p).unwrap())
        } else if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
            Snap::Dir {
                mode: md.mode() & 0o7777,
                xattrs: read_xattrs(&p, XattrPolicy::User).unwrap(),
            }
        } else {
            Snap::File {
                mode: md.mode() & 0o7777,
                content: fs::read(&p).unwrap(),
                xattrs: read_xattrs(&p, XattrPolicy::User).unwrap(),
            }
        };
        out.insert(rel, snap);
    }
    out
}

/// Asserts two snapshots are equal, naming the first difference.
pub fn assert_same_tree(expected: &Path, found: &Path) {
    let a = snapshot(expected);
    let b = snapshot(found);
    for (k, v) in &a {
        match b.get(k) {
            None => panic!("{} is missing from {}", k.display(), found.display()),
            Some(w) => assert_eq!(v, w, "{} differs", k.display()),
        }
    }
    for k in b.keys() {
        assert!(
            a.contains_key(k),
            "{} is extra in {}",
            k.display(),
            found.display()
        );
    }
}

/// A window to lend the installer, as `ecu-agent apply` lends it: 32 KiB.
pub fn window() -> Vec<u8> {
    vec![0u8; agent_core::install::INFLATE_WINDOW]
}

/// An LZMA2 dictionary to lend with the xz decoder, as `ecu-agent apply` lends it: 8 MiB.
pub fn dictionary() -> Vec<u8> {
    vec![0u8; agent_linux::apply::MAX_DICTIONARY as usize]
}

/// Installs `update` into `repo` through [`agent_core::install::Installer`] and the Linux
/// store, feeding `chunk` bytes at a time, with zlib for redeflate records as `ecu-agent
/// apply` lends it.
pub fn install_chunked(
    repo: &Repo,
    update: &[u8],
    chunk: usize,
    policy: Policy<'_>,
) -> Result<Installed, InstallError<RepoError>> {
    let mut win = window();
    let mut dict = dictionary();
    let mut xz = Box::new(agent_core::install::XzDecoder::new(&mut dict));
    let mut zlib = agent_core::install::Deflaters::new();
    let mut inst = Box::new(
        Installer::new(policy, &mut win)
            .with_xz(&mut xz)
            .with_redeflate(&mut zlib),
    );
    let mut store = RepoStore::new(repo);
    agent_core::io::install_chunks(&mut inst, &mut store, update, &[chunk])
}

/// The commit objects in a repository (to check that a failed install added none).
pub fn commit_objects(repo: &Repo) -> Vec<ObjectId> {
    repo.list_commits().unwrap()
}

/// Files left in the repository's staging directory (a finished or failed install leaves
/// none).
pub fn staged_files(repo: &Repo) -> Vec<PathBuf> {
    fs::read_dir(repo.tmp_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Whether `repo` holds object `id` of `kind`.
pub fn has(repo: &Repo, kind: ObjectKind, id: &ObjectId) -> bool {
    repo.has_object(kind, id).unwrap()
}

/// Commits the tree at `dir` on `ref_name` of `repo`: version `version` (subject "version
/// `version`"), timestamp `ts`.
pub fn commit_dir(repo: &Repo, ref_name: &str, dir: &Path, version: &str, ts: u64) -> ObjectId {
    use agent_linux::repo::CommitMeta;
    use agent_linux::tree::{build_dir, BuildOptions};
    let (root, _) = build_dir(repo, dir, &BuildOptions::default(), &mut |_| {}).unwrap();
    let meta = CommitMeta {
        version: version.into(),
        subject: format!("version {version}"),
        body: String::new(),
        timestamp: ts,
    };
    repo.commit(ref_name, root, &meta).unwrap()
}

/// Two versions of a source tree, committed into a new build repository.
pub struct TwoVersions {
    /// The tree of version 1.
    pub src1: PathBuf,
    /// The tree of version 2.
    pub src2: PathBuf,
    /// The build repository (in `tmp/build`).
    pub build: Repo,
    /// The commit of version 1 (timestamp 1,700,000,000).
    pub c1: ObjectId,
    /// The commit of version 2 (100 s later).
    pub c2: ObjectId,
}

/// Commits `src1` (version "1") and `src2` (version "2") on `ref_name` into a new build
/// repository `tmp/build`.
pub fn commit_two(tmp: &Path, ref_name: &str, src1: PathBuf, src2: PathBuf) -> TwoVersions {
    let build = Repo::init(&tmp.join("build")).unwrap();
    let c1 = commit_dir(&build, ref_name, &src1, "1", 1_700_000_000);
    let c2 = commit_dir(&build, ref_name, &src2, "2", 1_700_000_100);
    TwoVersions {
        src1,
        src2,
        build,
        c1,
        c2,
    }
}
