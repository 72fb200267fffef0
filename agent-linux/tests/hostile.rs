//! Hostile input (issue 8): crafted `.update` files for every class of the format, built with
//! `agent_core`'s writer and object encoders and signed with the device's trusted key (a
//! compromised or buggy signer), or spliced, replayed, foreign or revoked. Each is refused by
//! the real `ecu-agent install` with its own error, and the sysroot (refs, deployments, boot
//! environment, floor, configuration) is exactly as it was, with nothing left in `repo/tmp`.

mod deploy_common;

use deploy_common::{bin, tree_listing, Listed};

use std::fs;
use std::path::Path;
use std::process::Command;

use agent_core::object::{
    dirtree_object, dirtree_object_unchecked, file_object, Commit, DirEntry, DirMeta, FileHeader,
    ObjectId, ObjectKind, Xattrs, FILE_HEADER_LEN, S_IFDIR, S_IFREG,
};
use agent_core::wire::HEADER_LEN;
use agent_core::write::UpdateWriter;

const S: &str = "sysroot";
const REF: &str = "ecu/main";

/// An object of an update: kind and canonical bytes.
type Obj = (ObjectKind, Vec<u8>);

fn id(b: &[u8]) -> ObjectId {
    ObjectId::of(b)
}

fn dirmeta(mode: u32) -> Vec<u8> {
    DirMeta {
        mode,
        uid: 0,
        gid: 0,
        xattrs: Xattrs::EMPTY,
    }
    .to_vec()
}

/// A file object with an arbitrary header and tail (target, xattrs, content as given).
fn raw_file(mode: u32, size: u64, xattrs: &[u8], content: &[u8]) -> Vec<u8> {
    let h = FileHeader {
        mode,
        uid: 0,
        gid: 0,
        size,
        target_len: 0,
        xattrs_len: xattrs.len() as u16,
    };
    let mut b = vec![0u8; FILE_HEADER_LEN];
    h.emit(&mut b);
    b.extend_from_slice(xattrs);
    b.extend_from_slice(content);
    b
}

fn xattr_entry(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = vec![name.len() as u8];
    b.extend_from_slice(name);
    b.extend_from_slice(&(value.len() as u16).to_le_bytes());
    b.extend_from_slice(value);
    b
}

/// The device's anti-rollback floor in these tests (the base image's security version,
/// confirmed by `mark-good`).
const FLOOR: u64 = 5;

/// An update of `ref_name` to a commit of `root_tree` (the root dirmeta is 0755 root's)
/// holding `objects` (leaves first), at a security version above the floor, signed by `seed`
/// (unsigned with `None`).
fn update(
    ref_name: &str,
    version: &str,
    objects: &[Obj],
    root_tree: &[u8],
    seed: Option<&[u8; 32]>,
) -> Vec<u8> {
    update_at(ref_name, version, FLOOR + 1, objects, root_tree, seed)
}

/// [`update`] at security version `security_version`.
fn update_at(
    ref_name: &str,
    version: &str,
    security_version: u64,
    objects: &[Obj],
    root_tree: &[u8],
    seed: Option<&[u8; 32]>,
) -> Vec<u8> {
    let meta = dirmeta(S_IFDIR | 0o755);
    let commit = Commit {
        parent: None,
        timestamp: 1_700_000_000,
        root_tree: id(root_tree),
        root_meta: id(&meta),
        version,
        subject: "hostile",
        body: "",
        security_version,
    }
    .to_vec()
    .unwrap();
    let cid = id(&commit);
    let mut w =
        UpdateWriter::new(ref_name, None, cid, 1_700_000_000, version, "hostile").part_size(4096);
    for (k, b) in objects {
        w.write_object(*k, id(b), b).unwrap();
    }
    w.write_object(ObjectKind::DirTree, id(root_tree), root_tree)
        .unwrap();
    w.write_object(ObjectKind::DirMeta, id(&meta), &meta)
        .unwrap();
    w.write_object(ObjectKind::Commit, cid, &commit).unwrap();
    let mut out = Vec::new();
    w.finish(seed, &mut out).unwrap();
    out
}

/// A well-formed image: `bin/app` (0755) and `etc/conf`, `version` in the content.
fn good(version: &str, seed: &[u8; 32]) -> Vec<u8> {
    let (objs, root) = good_tree(version);
    update(REF, version, &objs, &root, Some(seed))
}

fn good_tree(version: &str) -> (Vec<Obj>, Vec<u8>) {
    let app = file_object(
        0o755,
        0,
        0,
        format!("app {version}\n").repeat(2000).as_bytes(),
    );
    let conf = file_object(0o644, 0, 0, b"bitrate=500000\n");
    let bin = dirtree_object(&[DirEntry::File {
        name: b"app",
        id: id(&app),
    }])
    .unwrap();
    let etc = dirtree_object(&[DirEntry::File {
        name: b"conf",
        id: id(&conf),
    }])
    .unwrap();
    let meta = dirmeta(S_IFDIR | 0o755);
    let root = dirtree_object(&[
        DirEntry::Dir {
            name: b"bin",
            tree: id(&bin),
            meta: id(&meta),
        },
        DirEntry::Dir {
            name: b"etc",
            tree: id(&etc),
            meta: id(&meta),
        },
    ])
    .unwrap();
    let objs = vec![
        (ObjectKind::File, app),
        (ObjectKind::File, conf),
        (ObjectKind::DirTree, bin),
        (ObjectKind::DirTree, etc),
        (ObjectKind::DirMeta, meta),
    ];
    (objs, root)
}

/// A root holding one file entry `name` → `file`.
fn one_file(name: &[u8], file: Vec<u8>) -> (Vec<Obj>, Vec<u8>) {
    let root = dirtree_object_unchecked(&[DirEntry::File {
        name,
        id: id(&file),
    }]);
    (vec![(ObjectKind::File, file)], root)
}

/// Everything of the device that a refused install must leave as it was: `repo/tmp` must also
/// be empty.
fn device_state(root: &Path) -> Vec<(String, Vec<u8>)> {
    tree_listing(root, &|rel, is_dir| {
        // Lock files; objects other than commits (content-addressed: the verified parts of a
        // refused file may stay for a resumed install, `cleanup` removes them) and the resume
        // checkpoint. What must not change: refs, commits, deployments, the boot environment,
        // the floor, the configuration.
        let object = rel.starts_with("repo/objects/") && !rel.ends_with(".commit");
        if rel.ends_with("lock") || rel.starts_with("repo/state") || (object && !is_dir) {
            Listed::No
        } else if object {
            Listed::OnlyWhatIsIn
        } else {
            Listed::Yes
        }
    })
}

fn install(d: &Path, file: &Path, extra: &[&str]) -> (bool, String) {
    let o = Command::new(bin())
        .args(["install", "--sysroot", S])
        .args(extra)
        .arg(file)
        .current_dir(d)
        .env("ECU_AGENT_CMDLINE", "/dev/null")
        .env("ECU_AGENT_BOOTED_SLOT", "A")
        .env_remove("ECU_AGENT_FAULT_AT")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `m` with every 64-hex-character object id replaced by `<id>`.
fn without_ids(m: &str) -> String {
    m.split(' ')
        .map(|w| {
            if w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()) {
                "<id>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The byte range of each part in `file`.
fn part_ranges(file: &[u8]) -> Vec<std::ops::Range<usize>> {
    let sb = test_support::wire::superblock(file);
    let mut at = file.len() - sb.parts_size() as usize;
    sb.parts
        .iter()
        .map(|p| {
            let r = at..at + p.size as usize;
            at = r.end;
            r
        })
        .collect()
}

#[test]
fn crafted_files_are_refused_each_with_its_own_error_and_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let seed = [7u8; 32];
    let key = agent_linux::keys::public_key(&seed);
    let other_seed = [9u8; 32];
    let revoked_seed = [11u8; 32];
    let revoked = agent_linux::keys::public_key(&revoked_seed);
    let revoked_prefix = format!(
        "signed by key {}…, which this device has revoked",
        &ObjectId(revoked).to_string()[..16]
    );
    fs::create_dir_all(d.join(S)).unwrap();
    fs::write(
        d.join(S).join("agent.conf"),
        format!(
            "trusted-key = {}\ntrusted-key = {}\nrevoked-key = {}\n",
            ObjectId(key),
            ObjectId(revoked),
            ObjectId(revoked)
        ),
    )
    .unwrap();
    // An old signed release, kept by whoever wants to replay it.
    let (objs0, root0) = good_tree("0");
    let replay = update_at(REF, "0", FLOOR - 2, &objs0, &root0, Some(&seed));
    // The base, at the floor's security version, provisioned and confirmed good.
    let base = d.join("base.update");
    let (objs1, root1) = good_tree("1");
    fs::write(
        &base,
        update_at(REF, "1", FLOOR, &objs1, &root1, Some(&seed)),
    )
    .unwrap();
    let (ok, err) = install(d, &base, &[]);
    assert!(ok, "{err}");
    let slot_a = deploy_common::booted(bootloader_hooks::Slot::A);
    deploy_common::ok(d, &["mark-good", "--sysroot", S], &slot_a);
    assert_eq!(agent_linux::floor::read(&d.join(S)).unwrap(), FLOOR);
    let before = device_state(&d.join(S));

    let s = Some(&seed);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    // Names: one path component, never `.`/`..`, `/` or NUL, never empty.
    for (what, name) in [
        ("name ..", &b".."[..]),
        ("name .", b"."),
        ("name with /", b"etc/passwd"),
        ("name with NUL", b"a\0b"),
        ("empty name", b""),
    ] {
        let (o, r) = one_file(name, file_object(0o644, 0, 0, b"x"));
        cases.push((
            what,
            update(REF, "2", &o, &r, s),
            "bad directory entry name",
        ));
    }
    // Entries out of order, or twice.
    {
        let f = file_object(0o644, 0, 0, b"x");
        let e = |n: &'static [u8]| DirEntry::File {
            name: n,
            id: id(&f),
        };
        let unsorted = dirtree_object_unchecked(&[e(b"b"), e(b"a")]);
        cases.push((
            "unsorted entries",
            update(REF, "2", &[(ObjectKind::File, f.clone())], &unsorted, s),
            "not sorted by name",
        ));
        let dup = dirtree_object_unchecked(&[e(b"a"), e(b"a")]);
        cases.push((
            "duplicate entries",
            update(REF, "2", &[(ObjectKind::File, f.clone())], &dup, s),
            "or repeat a name",
        ));
    }
    // Modes: a device node, a directory's metadata that is not a directory, stray bits.
    {
        let (o, r) = one_file(b"dev", raw_file(0o020666, 1, &[], b"x"));
        cases.push((
            "character device",
            update(REF, "2", &o, &r, s),
            "mode 20666 is not allowed",
        ));
        let (o, r) = one_file(b"f", raw_file(S_IFREG | 0o644 | 0o1000000, 1, &[], b"x"));
        cases.push((
            "mode with stray bits",
            update(REF, "2", &o, &r, s),
            "mode 1100644 is not allowed",
        ));
        let f = file_object(0o644, 0, 0, b"x");
        let bad_meta = dirmeta(S_IFREG | 0o755);
        let sub = dirtree_object(&[DirEntry::File {
            name: b"f",
            id: id(&f),
        }])
        .unwrap();
        let root = dirtree_object(&[DirEntry::Dir {
            name: b"d",
            tree: id(&sub),
            meta: id(&bad_meta),
        }])
        .unwrap();
        let o = vec![
            (ObjectKind::File, f),
            (ObjectKind::DirTree, sub),
            (ObjectKind::DirMeta, bad_meta),
        ];
        cases.push((
            "dirmeta not a directory",
            update(REF, "2", &o, &root, s),
            "dirmeta object",
        ));
    }
    // Xattrs: out of order, twice, a length that overruns the block.
    {
        let mut unsorted = xattr_entry(b"user.b", b"1");
        unsorted.extend(xattr_entry(b"user.a", b"2"));
        let (o, r) = one_file(b"f", raw_file(S_IFREG | 0o644, 1, &unsorted, b"x"));
        cases.push((
            "unsorted xattrs",
            update(REF, "2", &o, &r, s),
            "extended attributes are unsorted",
        ));
        let mut overrun = xattr_entry(b"security.capability", &[1; 20]);
        overrun[1 + 19] = 0xff; // value length
        overrun[1 + 19 + 1] = 0x7f;
        let (o, r) = one_file(b"f", raw_file(S_IFREG | 0o4755, 1, &overrun, b"x"));
        cases.push((
            "xattr length overrun",
            update(REF, "2", &o, &r, s),
            "extended attributes",
        ));
    }
    // Sizes: a header declaring more content than the object has, or less.
    {
        let (o, r) = one_file(b"f", raw_file(S_IFREG | 0o644, 1000, &[], b"short"));
        cases.push((
            "size larger than content",
            update(REF, "2", &o, &r, s),
            "1024 bytes needed",
        ));
        let (o, r) = one_file(b"f", raw_file(S_IFREG | 0o644, 1, &[], b"longer"));
        cases.push((
            "size smaller than content",
            update(REF, "2", &o, &r, s),
            "bytes after its last field",
        ));
    }
    // Counts: a dirtree declaring far more entries than it holds.
    {
        let f = file_object(0o644, 0, 0, b"x");
        let mut tree = dirtree_object(&[DirEntry::File {
            name: b"f",
            id: id(&f),
        }])
        .unwrap();
        tree[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push((
            "entry count beyond the object",
            update(REF, "2", &[(ObjectKind::File, f)], &tree, s),
            "dirtree object",
        ));
    }
    // A part spliced in from another file signed by the same key.
    {
        let (objs, root) = good_tree("2");
        let a = update(REF, "2", &objs, &root, s);
        let (objs_b, root_b) = good_tree("3");
        let b = update(REF, "3", &objs_b, &root_b, s);
        let (ra, rb) = (part_ranges(&a), part_ranges(&b));
        assert!(ra.len() >= 2 && rb.len() >= 2, "the files need two parts");
        let mut spliced = a[..ra[0].start].to_vec();
        spliced.extend_from_slice(&b[rb[0].clone()]);
        spliced.extend_from_slice(&a[ra[0].end..]);
        cases.push(("a part from another signed file", spliced, "part 0 "));
    }
    // Trust: unsigned, another key, a revoked key (also listed as trusted), another ref.
    {
        let (objs, root) = good_tree("2");
        cases.push((
            "unsigned",
            update(REF, "2", &objs, &root, None),
            "not signed",
        ));
        cases.push((
            "signed by an untrusted key",
            update(REF, "2", &objs, &root, Some(&other_seed)),
            "does not verify",
        ));
        cases.push((
            "signed by a revoked key",
            update(REF, "2", &objs, &root, Some(&revoked_seed)),
            revoked_prefix.as_str(),
        ));
        cases.push((
            "another ref",
            update("ecu/other", "2", &objs, &root, s),
            "does not follow",
        ));
        // A tampered byte in the signed superblock.
        let mut f = update(REF, "2", &objs, &root, s);
        f[HEADER_LEN + 3] ^= 1;
        cases.push(("superblock altered after signing", f, "does not verify"));
        // A replay of an old signed release, and a new one below the floor.
        cases.push((
            "replay of an old signed file",
            replay.clone(),
            "security version 3 is below this device's floor 5",
        ));
        cases.push((
            "below the floor",
            update_at(REF, "2", FLOOR - 1, &objs, &root, s),
            "security version 4 is below this device's floor 5",
        ));
        // Truncated in the last part.
        let f = update(REF, "2", &objs, &root, s);
        cases.push(("truncated", f[..f.len() - 10].to_vec(), "truncated"));
    }

    let mut errors: Vec<(String, String)> = Vec::new();
    for (what, bytes, expect) in &cases {
        let p = d.join("hostile.update");
        fs::write(&p, bytes).unwrap();
        let (ok, err) = install(d, &p, &[]);
        assert!(!ok, "{what}: installed");
        assert!(err.starts_with("error: "), "{what}: {err}");
        // The cause, without the file's (shared) name.
        let msg = err
            .lines()
            .skip(1)
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" / ");
        assert!(msg.contains(expect), "{what}: expected {expect:?} in {msg}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        let after = device_state(&d.join(S));
        let changed: Vec<&String> = after
            .iter()
            .filter(|e| !before.contains(e))
            .chain(before.iter().filter(|e| !after.contains(e)))
            .map(|(p, _)| p)
            .collect();
        assert!(
            changed.is_empty(),
            "{what}: the refused install changed the device: {changed:?}"
        );
        assert_eq!(
            fs::read_dir(d.join(S).join("repo/tmp")).unwrap().count(),
            0,
            "{what}: staging left behind"
        );
        errors.push((what.to_string(), msg));
    }
    // Each class is refused with its own error: with object ids left out, the messages still
    // differ (cases of one class, like the five bad names, may share one).
    let mut distinct: Vec<String> = errors.iter().map(|(_, m)| without_ids(m)).collect();
    distinct.sort();
    distinct.dedup();
    for (w, m) in &errors {
        eprintln!("{w:<36} {m}");
    }
    assert!(
        distinct.len() >= 16,
        "only {} distinct errors for {} cases: {distinct:#?}",
        distinct.len(),
        errors.len()
    );
    // And the device still takes a good update.
    fs::write(d.join("good.update"), good("2", &seed)).unwrap();
    let (ok, err) = install(d, &d.join("good.update"), &[]);
    assert!(ok, "{err}");
}
