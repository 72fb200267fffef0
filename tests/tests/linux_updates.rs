//! End-to-end updates on Linux: a directory tree committed into a build repository, turned
//! into `.update` files by the generator, installed through agent-core's `Installer` into the
//! Linux store of a device repository, and checked out again — on the real filesystem.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agent_core::install::{InstallError, Policy};
use agent_core::object::{self, DirEntry, DirMeta, ObjectId, ObjectKind, Xattrs, S_IFDIR};
use agent_core::write::UpdateWriter;
use agent_linux::checkout::{checkout, CheckoutMode};
use agent_linux::generate::{generate, GenerateError, GenerateOptions};
use agent_linux::repo::{CommitMeta, Repo, RepoError, TreeRoot};
use agent_linux::tree::{build_dir, build_mem, BuildError, BuildOptions, MemDir, MemNode};
use agent_linux::{apply, keys};
use tests::{
    assert_same_tree, commit_objects, install_chunked, semi_random_text, set_xattr, staged_files,
    write_sample_tree,
};

const REF: &str = "ecu/armv7/main";

fn commit_dir(repo: &Repo, dir: &Path, version: &str, ts: u64) -> ObjectId {
    tests::commit_dir(repo, REF, dir, version, ts)
}

fn update_bytes(
    repo: &Repo,
    from: Option<ObjectId>,
    to: &ObjectId,
    key: Option<[u8; 32]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = GenerateOptions {
        sign_key: key,
        ..GenerateOptions::default()
    };
    generate(repo, REF, from, to, &opts, &mut out, &mut |_, _| {}).unwrap();
    out
}

/// The second version of the sample tree: one file changed, one added, one removed, a mode,
/// an xattr and a symlink target changed, a directory emptied.
fn make_v2(src: &Path) {
    fs::write(src.join("etc/os-release"), b"NAME=ecu\nVERSION=2\n").unwrap();
    fs::write(src.join("etc/new-file"), b"added in v2\n").unwrap();
    fs::remove_file(src.join("var/lib/empty-too")).unwrap();
    fs::set_permissions(src.join("etc/secret"), fs::Permissions::from_mode(0o400)).unwrap();
    set_xattr(&src.join("usr/bin/tool"), "user.checksum", b"def456");
    fs::remove_file(src.join("etc/tool-link")).unwrap();
    std::os::unix::fs::symlink("../usr/bin/sgid", src.join("etc/tool-link")).unwrap();
    fs::remove_dir_all(src.join("srv/nested/empty/dir")).unwrap();
}

fn key_pair() -> ([u8; 32], [u8; 32]) {
    let seed = [7u8; 32];
    (seed, keys::public_key(&seed))
}

#[test]
fn from_scratch_and_delta_round_trip_at_every_chunk_size() {
    let tmp = tempfile::tempdir().unwrap();
    let (src1, src2) = (tmp.path().join("src1"), tmp.path().join("src2"));
    write_sample_tree(&src1);
    write_sample_tree(&src2);
    make_v2(&src2);
    let build = Repo::init(&tmp.path().join("build")).unwrap();
    let c1 = commit_dir(&build, &src1, "1", 1_700_000_000);
    let c2 = commit_dir(&build, &src2, "2", 1_700_000_100);
    let (seed, public) = key_pair();
    let full1 = update_bytes(&build, None, &c1, Some(seed));
    let full2 = update_bytes(&build, None, &c2, Some(seed));
    let delta = update_bytes(&build, Some(c1), &c2, Some(seed));
    assert!(
        delta.len() < full2.len() / 10,
        "delta {} vs full {}",
        delta.len(),
        full2.len()
    );

    let keys = [public];
    for chunk in [1, 7, 512, 64 * 1024, usize::MAX] {
        let dev = Repo::init(&tmp.path().join(format!("dev-{chunk}"))).unwrap();
        let i1 = install_chunked(&dev, &full1, chunk, Policy::require(&keys)).unwrap();
        assert_eq!((i1.commit, i1.from), (c1, None));
        assert_eq!(dev.read_ref(REF).unwrap(), Some(c1));
        let co1 = tmp.path().join(format!("co1-{chunk}"));
        checkout(&dev, &c1, &co1, CheckoutMode::Copy).unwrap();
        assert_same_tree(&src1, &co1);

        let i2 = install_chunked(&dev, &delta, chunk, Policy::require(&keys)).unwrap();
        assert_eq!((i2.commit, i2.from), (c2, Some(c1)));
        assert_eq!(dev.read_ref(REF).unwrap(), Some(c2));
        assert_eq!(dev.read_commit(&c2).unwrap().parent, Some(c1));
        for mode in [CheckoutMode::Copy, CheckoutMode::HardLink] {
            let co2 = tmp.path().join(format!("co2-{chunk}-{mode:?}"));
            checkout(&dev, &c2, &co2, mode).unwrap();
            assert_same_tree(&src2, &co2);
        }
        assert!(staged_files(&dev).is_empty(), "{:?}", staged_files(&dev));

        // The newest from-scratch file on a fresh device gives the same tree.
        let fresh = Repo::init(&tmp.path().join(format!("fresh-{chunk}"))).unwrap();
        install_chunked(&fresh, &full2, chunk, Policy::require(&keys)).unwrap();
        let co = tmp.path().join(format!("co3-{chunk}"));
        checkout(&fresh, &c2, &co, CheckoutMode::Copy).unwrap();
        assert_same_tree(&src2, &co);
    }
}

fn small_tree_update(tmp: &Path) -> (Repo, ObjectId, ObjectId, Vec<u8>, Vec<u8>) {
    let build = Repo::init(&tmp.join("build")).unwrap();
    let t1 = MemDir::new()
        .with(
            b"a",
            MemNode::File {
                mode: 0o644,
                content: b"one\n".to_vec(),
                xattrs: vec![],
            },
        )
        .with(
            b"d",
            MemNode::Dir(MemDir::new().with(
                b"x",
                MemNode::Symlink {
                    target: b"../a".to_vec(),
                },
            )),
        );
    let t2 = t1.clone().with(
        b"b",
        MemNode::File {
            mode: 0o755,
            content: semi_random_text(3, 600),
            xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
        },
    );
    let meta = |v: &str| CommitMeta {
        version: v.into(),
        subject: "s".into(),
        body: String::new(),
        timestamp: 5,
    };
    let c1 = build
        .commit(REF, build_mem(&build, &t1).unwrap().0, &meta("1"))
        .unwrap();
    let c2 = build
        .commit(REF, build_mem(&build, &t2).unwrap().0, &meta("2"))
        .unwrap();
    let (seed, _) = key_pair();
    let full1 = update_bytes(&build, None, &c1, Some(seed));
    let full2 = update_bytes(&build, None, &c2, Some(seed));
    (build, c1, c2, full1, full2)
}

/// Asserts a failed install left `dev` as it was: `c1` on the ref, no `c2`, no new commit
/// object, nothing staged.
fn assert_untouched(dev: &Repo, c1: &ObjectId, c2: &ObjectId, what: &str) {
    assert!(!dev.has_commit(c2).unwrap(), "{what}: commit appeared");
    assert_eq!(dev.read_ref(REF).unwrap(), Some(*c1), "{what}: ref moved");
    assert_eq!(
        commit_objects(dev),
        vec![*c1],
        "{what}: commit objects changed"
    );
    assert!(
        staged_files(dev).is_empty(),
        "{what}: staged files left: {:?}",
        staged_files(dev)
    );
}

#[test]
fn every_flipped_bit_truncation_wrong_key_and_unsigned_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (build, c1, c2, full1, full2) = small_tree_update(tmp.path());
    let (_, public) = key_pair();
    let keys = [public];
    let dev = Repo::init(&tmp.path().join("dev")).unwrap();
    install_chunked(&dev, &full1, usize::MAX, Policy::require(&keys)).unwrap();
    assert!(
        full2.len() < 4096,
        "the test wants a small file, got {}",
        full2.len()
    );

    // A flipped bit at every offset of the file.
    for offset in 0..full2.len() {
        let mut bad = full2.clone();
        bad[offset] ^= 1 << (offset % 8);
        let err = install_chunked(&dev, &bad, 97, Policy::require(&keys))
            .expect_err(&format!("flip at {offset} was accepted"));
        assert!(!err.to_string().is_empty());
        assert_untouched(&dev, &c1, &c2, &format!("flip at {offset}"));
    }
    // Cut short at every length.
    for len in 0..full2.len() {
        let err = install_chunked(&dev, &full2[..len], 64, Policy::require(&keys))
            .expect_err(&format!("truncation to {len} was accepted"));
        assert!(!err.to_string().is_empty());
        assert_untouched(&dev, &c1, &c2, &format!("truncated to {len}"));
    }
    // Trailing garbage.
    let mut long = full2.clone();
    long.push(0);
    assert!(install_chunked(&dev, &long, 512, Policy::require(&keys)).is_err());
    assert_untouched(&dev, &c1, &c2, "trailing byte");

    // Signed by another key.
    let other = [keys::public_key(&[9u8; 32])];
    let err = install_chunked(&dev, &full2, 512, Policy::require(&other)).unwrap_err();
    assert!(matches!(err, InstallError::BadSignature), "{err}");
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
    assert_untouched(&dev, &c1, &c2, "wrong key");

    // Unsigned while keys are required.
    let unsigned = update_bytes(&build, None, &c2, None);
    let err = install_chunked(&dev, &unsigned, 512, Policy::require(&keys)).unwrap_err();
    assert!(matches!(err, InstallError::Unsigned), "{err}");
    assert!(err.to_string().contains("not signed"), "{err}");
    assert_untouched(&dev, &c1, &c2, "unsigned");

    // The intact file still installs afterwards.
    install_chunked(&dev, &full2, 512, Policy::require(&keys)).unwrap();
    assert_eq!(dev.read_ref(REF).unwrap(), Some(c2));
}

#[test]
fn an_abandoned_install_leaves_no_commit_and_nothing_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, c1, c2, full1, full2) = small_tree_update(tmp.path());
    let (_, public) = key_pair();
    let keys = [public];
    let dev = Repo::init(&tmp.path().join("dev")).unwrap();
    install_chunked(&dev, &full1, 4096, Policy::require(&keys)).unwrap();
    for cut in [full2.len() / 3, full2.len() / 2, full2.len() - 1] {
        let mut win = tests::window();
        let mut dict = tests::dictionary();
        let mut xz = Box::new(agent_core::install::XzDecoder::new(&mut dict));
        let mut inst = Box::new(
            agent_core::install::Installer::new(Policy::require(&keys), &mut win).with_xz(&mut xz),
        );
        let mut store = agent_linux::store::RepoStore::new(&dev);
        let _ = inst.feed(&mut store, &full2[..cut]);
        // Power is cut, or the transport gives up: the store is simply dropped.
        drop(store);
        assert_untouched(&dev, &c1, &c2, &format!("abandoned at {cut}"));
    }
}

#[test]
fn delta_of_one_changed_file_is_small() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for i in 0..5u64 {
        let p = src.join(format!("lib/part{i}.txt"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, semi_random_text(100 + i, 200 * 1024)).unwrap();
    }
    fs::write(src.join("config"), b"x=1\n").unwrap();
    let build = Repo::init(&tmp.path().join("build")).unwrap();
    let c1 = commit_dir(&build, &src, "1", 10);
    let changed = semi_random_text(999, 200 * 1024);
    fs::write(src.join("lib/part2.txt"), &changed).unwrap();
    let c2 = commit_dir(&build, &src, "2", 20);
    let delta = update_bytes(&build, Some(c1), &c2, None);
    let full = update_bytes(&build, None, &c2, None);
    let deflated = miniz_oxide::deflate::compress_to_vec(&changed, 6).len();
    eprintln!(
        "delta {} bytes, full {} bytes, changed file deflated {deflated} bytes",
        delta.len(),
        full.len()
    );
    assert!(
        delta.len() < deflated + 4096,
        "delta is {} bytes, the changed file deflates to {deflated}",
        delta.len()
    );
    assert!(
        delta.len() * 3 < full.len(),
        "delta {} vs full {}",
        delta.len(),
        full.len()
    );
    // And it installs over the source.
    let dev = Repo::init(&tmp.path().join("dev")).unwrap();
    install_chunked(
        &dev,
        &update_bytes(&build, None, &c1, None),
        4096,
        Policy::require(&[]).allow_unsigned(),
    )
    .unwrap();
    install_chunked(&dev, &delta, 4096, Policy::require(&[]).allow_unsigned()).unwrap();
    let co = tmp.path().join("co");
    checkout(&dev, &c2, &co, CheckoutMode::Copy).unwrap();
    assert_same_tree(&src, &co);
}

#[test]
fn a_delta_whose_source_is_missing_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (build, c1, c2, _, _) = small_tree_update(tmp.path());
    let delta = update_bytes(&build, Some(c1), &c2, None);
    let dev = Repo::init(&tmp.path().join("dev")).unwrap();
    let trust = apply::Trust {
        allow_unsigned: true,
        ..apply::Trust::default()
    };
    let err = apply::apply(&dev, &mut &delta[..], &trust, &mut |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("commit {c1}, the source of this delta, is not in the store")
    );
    assert!(commit_objects(&dev).is_empty());
    assert_eq!(dev.read_ref(REF).unwrap(), None);
}

fn dirmeta_bytes() -> Vec<u8> {
    DirMeta {
        mode: S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
        xattrs: Xattrs::EMPTY,
    }
    .to_vec()
}

fn commit_bytes(tree: ObjectId, meta: ObjectId) -> Vec<u8> {
    object::Commit {
        parent: None,
        timestamp: 1,
        root_tree: tree,
        root_meta: meta,
        version: "x",
        subject: "",
        body: "",
        security_version: 0,
    }
    .to_vec()
    .unwrap()
}

#[test]
fn names_that_are_not_one_component_are_refused_by_generator_and_installer() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::init(&tmp.path().join("build")).unwrap();
    let dev = Repo::init(&tmp.path().join("dev")).unwrap();
    for bad in [&b".."[..], b"a/b", b"a\0b"] {
        // Build side: a tree held in memory (a filesystem cannot hold these names).
        let t = MemDir::new().with(
            bad,
            MemNode::File {
                mode: 0o644,
                content: b"x".to_vec(),
                xattrs: vec![],
            },
        );
        let err = build_mem(&repo, &t).unwrap_err();
        assert!(matches!(err, BuildError::BadName { .. }), "{err}");
        let nested = MemDir::new().with(
            b"ok",
            MemNode::Dir(MemDir::new().with(bad, MemNode::Dir(MemDir::new()))),
        );
        assert!(matches!(
            build_mem(&repo, &nested).unwrap_err(),
            BuildError::BadName { .. }
        ));

        // A repository that somehow holds such a dirtree: the generator refuses to read it.
        let file = object::file_object(0o644, 0, 0, b"payload");
        let file_id = ObjectId::of(&file);
        // Unchecked: the checked encoder refuses the bad name.
        let tree = object::dirtree_object_unchecked(&[DirEntry::File {
            name: bad,
            id: file_id,
        }]);
        let (tree_id, meta) = (ObjectId::of(&tree), dirmeta_bytes());
        let meta_id = ObjectId::of(&meta);
        let commit = commit_bytes(tree_id, meta_id);
        let commit_id = ObjectId::of(&commit);
        let p = repo.object_path(ObjectKind::DirTree, &tree_id);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, &tree).unwrap();
        repo.write_metadata_object(ObjectKind::DirMeta, &meta)
            .unwrap();
        let cp = repo.object_path(ObjectKind::Commit, &commit_id);
        fs::create_dir_all(cp.parent().unwrap()).unwrap();
        fs::write(&cp, &commit).unwrap();
        let err = generate(
            &repo,
            REF,
            None,
            &commit_id,
            &GenerateOptions::default(),
            &mut Vec::new(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                GenerateError::Repo(RepoError::CorruptObject {
                    kind: ObjectKind::DirTree,
                    ..
                })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("name"), "{err}");

        // Device side: a hand-crafted update with that dirtree.
        let mut w = UpdateWriter::new(REF, None, commit_id, 1, "x", "");
        w.write_object(ObjectKind::File, file_id, &file).unwrap();
        w.write_object(ObjectKind::DirTree, tree_id, &tree).unwrap();
        w.write_object(ObjectKind::DirMeta, meta_id, &meta).unwrap();
        w.write_object(ObjectKind::Commit, commit_id, &commit)
            .unwrap();
        let mut update = Vec::new();
        w.finish(None, &mut update).unwrap();
        for chunk in [1, 7, 512, usize::MAX] {
            let err = install_chunked(&dev, &update, chunk, Policy::require(&[]).allow_unsigned())
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    InstallError::Object {
                        kind: ObjectKind::DirTree,
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
            assert!(!dev.has_commit(&commit_id).unwrap());
            assert!(
                !dev.has_object(ObjectKind::DirTree, &tree_id).unwrap(),
                "a bad dirtree was stored"
            );
            assert!(commit_objects(&dev).is_empty());
            assert!(staged_files(&dev).is_empty());
        }
    }
    // The control: the same shape with a good name installs.
    let file = object::file_object(0o644, 0, 0, b"payload");
    let tree = object::dirtree_object(&[DirEntry::File {
        name: b"good",
        id: ObjectId::of(&file),
    }])
    .unwrap();
    let meta = dirmeta_bytes();
    let commit = commit_bytes(ObjectId::of(&tree), ObjectId::of(&meta));
    let mut w = UpdateWriter::new(REF, None, ObjectId::of(&commit), 1, "x", "");
    w.write_object(ObjectKind::File, ObjectId::of(&file), &file)
        .unwrap();
    w.write_object(ObjectKind::DirTree, ObjectId::of(&tree), &tree)
        .unwrap();
    w.write_object(ObjectKind::DirMeta, ObjectId::of(&meta), &meta)
        .unwrap();
    w.write_object(ObjectKind::Commit, ObjectId::of(&commit), &commit)
        .unwrap();
    let mut update = Vec::new();
    w.finish(None, &mut update).unwrap();
    install_chunked(&dev, &update, 7, Policy::require(&[]).allow_unsigned()).unwrap();
    let co = tmp.path().join("co");
    checkout(&dev, &ObjectId::of(&commit), &co, CheckoutMode::Copy).unwrap();
    assert_eq!(fs::read(co.join("good")).unwrap(), b"payload");
}

#[test]
fn a_build_with_the_same_tree_twice_writes_nothing_new_and_history_is_unbroken() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_sample_tree(&src);
    let repo = Repo::init(&tmp.path().join("build")).unwrap();
    let ids: Vec<ObjectId> = (0..4)
        .map(|i| commit_dir(&repo, &src, &i.to_string(), 100 + i))
        .collect();
    let (history, missing) = repo.history(&ids[3]).unwrap();
    assert_eq!(missing, None);
    let got: Vec<ObjectId> = history.iter().map(|c| c.id).collect();
    assert_eq!(got, ids.iter().rev().copied().collect::<Vec<_>>());
    for w in history.windows(2) {
        assert_eq!(w[0].parent, Some(w[1].id));
        assert_eq!(w[0].content_checksum(), w[1].content_checksum());
    }
    let (root, stats) = build_dir(&repo, &src, &BuildOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(stats.new_objects, 0);
    assert_eq!(
        root,
        TreeRoot {
            tree: history[0].root_tree,
            meta: history[0].root_meta
        }
    );
}
