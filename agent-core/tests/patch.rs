//! Patch records (`docs/FORMAT.md` §6): objects built from a source object the store holds and
//! a bsdiff-style patch, streamed in fixed memory, whatever the chunking; every way a patch, its
//! source or its file can be wrong is refused with nothing committed.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;

use agent_core::install::{InstallError, PATCH_WINDOW};
use agent_core::object::{DirEntry, ObjectId};
use agent_core::wire::{FormatError, OpRepr, PATCH_CONTROL_LEN, PATCH_HEADER_LEN};
use agent_core::write::{apply_patch, diff, UpdateWriter, WriteError};
use agent_core::ObjectKind;
use common::*;

const TS: u64 = 1_700_000_000;

/// Code-like bytes linked at 0x0800_0000 ([`test_support::image::code`]).
fn code(seed: u64, len: usize) -> Vec<u8> {
    test_support::image::code(seed, len, 0x0800_0000)
}

/// A small code change: `n` bytes inserted at `at`, and every literal pointing past `at`
/// moved by `n` (what relinking does).
fn relinked(old: &[u8], at: usize, n: usize) -> Vec<u8> {
    let inserted: Vec<u8> = (0..n).map(|i| 0x20 + i as u8).collect();
    test_support::image::relinked(old, 0x0800_0000, at, &inserted)
}

struct Case {
    v1: Built,
    v2: Built,
    /// v1's file objects, the sources of v2's patches.
    sources: Vec<Vec<u8>>,
    app1: Vec<u8>,
}

fn case() -> Case {
    let app1 = code(1, 16_000);
    let app2 = relinked(&app1, 6_000, 24);
    let lib1 = code(2, 5_000);
    let mut lib2 = lib1.clone();
    lib2[3000..3010].fill(0);
    let t1 = Tree::default()
        .file("app.bin", app1.clone())
        .file("README", "version 1\n")
        .dir("lib", Tree::default().file("libfoo.so.1.2", lib1.clone()));
    let t2 = Tree::default()
        .file("app.bin", app2)
        .file("README", "version 2\n")
        .dir("lib", Tree::default().file("libfoo.so.1.3", lib2));
    let v1 = build(&t1, None, TS, &HashSet::new());
    let v2 = build(&t2, Some(v1.commit), TS + 10, &v1.ids);
    let sources = vec![
        file_object(&app1),
        file_object(&lib1),
        file_object(b"version 1\n"),
    ];
    Case {
        v1,
        v2,
        sources,
        app1,
    }
}

/// The store after installing v1, and the patched delta v1 -> v2.
fn store_and_delta(c: &Case) -> (MemStore, Vec<u8>) {
    let keys = [public_key(&SEED)];
    let mut store = MemStore::default();
    let full = write_update(&c.v1, None, Some(&SEED), 16 * 1024);
    install_all(&mut store, &full, policy(&keys)).unwrap();
    let patched = patch_from(c.sources.clone());
    let delta = write_update_patched(&c.v2, Some(c.v1.commit), Some(&SEED), 16 * 1024, &patched);
    (store, delta)
}

/// The objects a committed store holds beyond `before`.
fn added(store: &MemStore, before: &MemStore) -> Vec<(ObjectKind, ObjectId)> {
    store
        .objects
        .keys()
        .filter(|k| !before.objects.contains_key(k))
        .copied()
        .collect()
}

#[test]
fn a_patched_delta_round_trips_and_is_much_smaller() {
    let c = case();
    let keys = [public_key(&SEED)];
    let (store, delta) = store_and_delta(&c);
    assert_eq!(
        delta[8..10],
        [3, 0],
        "a file with patch records is format 3"
    );
    let plain = write_update(&c.v2, Some(c.v1.commit), Some(&SEED), 16 * 1024);
    assert_eq!(
        plain[8..10],
        [3, 0],
        "xz parts (the default codec) are format 3"
    );
    let plain_deflate = write_update_deflate(&c.v2, Some(c.v1.commit), Some(&SEED), 16 * 1024);
    assert_eq!(
        plain_deflate[8..10],
        [2, 0],
        "a deflate file without patch records stays format 2"
    );
    assert!(
        delta.len() * 5 < plain.len(),
        "patched {} vs written {}",
        delta.len(),
        plain.len()
    );
    let mut s = store.clone();
    let installed = install_all(&mut s, &delta, policy(&keys)).unwrap();
    assert_eq!(installed.commit, c.v2.commit);
    // Every object of v2 is there, with the bytes its id names.
    for op in &c.v2.ops {
        if let Op::Write(k, id, b) = op {
            assert_eq!(s.objects.get(&(*k, *id)), Some(b), "{k} {id}");
        }
    }
    assert!(s.reads > 0, "the sources were read through read_object");
    // Patched objects are begun and finished as written ones are.
    let app2 = c.v2.ops.iter().find_map(|o| match o {
        Op::Write(ObjectKind::File, id, b) if b.len() > 12_000 => Some(*id),
        _ => None,
    });
    let app2 = app2.unwrap();
    assert!(
        s.log.contains(&format!("finish file {app2}")),
        "{:?}",
        s.log
    );
    assert_eq!(added(&s, &store).len(), c.v2.ops.len() - 1);
}

#[test]
fn chunking_does_not_matter_for_patch_records() {
    let c = case();
    let (store, delta) = store_and_delta(&c);
    installs_alike(
        &store,
        &delta,
        c.v2.commit,
        &[
            &[delta.len()][..],
            &[1],
            &[7],
            &[512],
            &[65536],
            &[3, 1, PATCH_WINDOW + 1, 4000],
        ],
    );
}

/// Installs `file` over a clone of `store` in several chunkings; it must fail with `want` (or
/// any error when `None`) and leave the store as it was.
fn refused(store: &MemStore, file: &[u8], want: Option<&InstallError<Infallible>>) {
    refused_over(
        store,
        file,
        want,
        &[&[file.len().max(1)][..], &[1], &[7], &[512]],
    );
}

#[test]
fn a_missing_or_damaged_source_is_refused_with_nothing_committed() {
    let c = case();
    let (store, delta) = store_and_delta(&c);
    let app1 = ObjectId::of(&file_object(&c.app1));
    let key = (ObjectKind::File, app1);
    let app2 =
        c.v2.ops
            .iter()
            .find_map(|o| match o {
                Op::Write(ObjectKind::File, id, b) if b.len() > 12_000 => Some(*id),
                _ => None,
            })
            .unwrap();

    let mut missing = store.clone();
    missing.objects.remove(&key).unwrap();
    let want = InstallError::PatchSourceMissing {
        kind: ObjectKind::File,
        id: app2,
        source: app1,
    };
    refused(&missing, &delta, Some(&want));
    let msg = want.to_string();
    assert!(
        msg.contains(&app1.to_string()) && msg.contains("not in the store"),
        "{msg}"
    );

    for at in [0, 30, 24 + 6_000, c.app1.len() + 23] {
        let mut damaged = store.clone();
        let bytes = damaged.objects.get_mut(&key).unwrap();
        bytes[at] ^= 0x10;
        let found = ObjectId::of(bytes);
        let want = InstallError::PatchSourceDamaged {
            kind: ObjectKind::File,
            source: app1,
            found,
        };
        refused(&damaged, &delta, Some(&want));
        assert!(want.to_string().contains("damaged"), "{want}");
    }
    // Cut short or grown by a byte: damaged too.
    for change in [-1i32, 1] {
        let mut damaged = store.clone();
        let bytes = damaged.objects.get_mut(&key).unwrap();
        if change < 0 {
            bytes.pop();
        } else {
            bytes.push(0);
        }
        let found = ObjectId::of(bytes);
        let want = InstallError::PatchSourceDamaged {
            kind: ObjectKind::File,
            source: app1,
            found,
        };
        refused(&damaged, &delta, Some(&want));
    }
}

#[test]
fn a_flipped_bit_anywhere_in_a_patched_delta_fails() {
    let c = case();
    let (store, delta) = store_and_delta(&c);
    assert!(delta.len() < 8000, "{}", delta.len());
    every_flip_refused(&store, &delta);
}

#[test]
fn a_patched_delta_cut_at_every_length_fails() {
    let c = case();
    let (store, delta) = store_and_delta(&c);
    every_cut_truncated(&store, &delta);
}

/// A source file, the object a patch record builds from it, and the records of a delta that
/// patches it into `new` (the root dirtree and dirmeta written, the commit last).
struct Hand {
    store: MemStore,
    source: ObjectId,
    target: ObjectId,
    commit: ObjectId,
    /// The records after the patch record.
    tail: Vec<u8>,
    tail_ops: u32,
}

fn hand(old: &[u8], new: &[u8]) -> Hand {
    let mut store = MemStore::default();
    let src = file_object(old);
    let source = ObjectId::of(&src);
    store.objects.insert((ObjectKind::File, source), src);
    let from = ObjectId([0xcc; 32]);
    store.commits.insert(from);
    let obj = file_object(new);
    let target = ObjectId::of(&obj);
    let tree = dirtree_object(&[DirEntry::File {
        name: b"f",
        id: target,
    }]);
    let meta = dirmeta_object();
    let commit = commit_object(
        Some(from),
        TS,
        ObjectId::of(&tree),
        ObjectId::of(&meta),
        "1.0",
    );
    let mut tail = rec_obj(ObjectKind::DirTree, &tree);
    tail.extend(rec_obj(ObjectKind::DirMeta, &meta));
    tail.extend(rec_obj(ObjectKind::Commit, &commit));
    Hand {
        store,
        source,
        target,
        commit: ObjectId::of(&commit),
        tail,
        tail_ops: 3,
    }
}

/// A patch record of `kind` and `len` from `source` with `patch` as its body.
fn patch_record(
    kind: ObjectKind,
    id: ObjectId,
    len: u64,
    source: ObjectId,
    patch: &[u8],
) -> Vec<u8> {
    let op = OpRepr::Patch {
        kind,
        id,
        len,
        source,
    };
    let mut r = vec![0u8; op.buffer_len()];
    op.emit(&mut r);
    r.extend_from_slice(patch);
    r
}

/// A control: add, copy (raw u64) and seek (bsdiff's sign and magnitude).
fn control(add: u64, copy: u64, seek: i64) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&add.to_le_bytes());
    c.extend_from_slice(&copy.to_le_bytes());
    let s = if seek < 0 {
        seek.unsigned_abs() | 1 << 63
    } else {
        seek as u64
    };
    c.extend_from_slice(&s.to_le_bytes());
    c
}

fn hand_file(h: &Hand, records: Vec<u8>, version: u16) -> Vec<u8> {
    let ops = 1 + h.tail_ops;
    let mut all = records;
    all.extend_from_slice(&h.tail);
    raw_update_version(
        version,
        Some(ObjectId([0xcc; 32])),
        h.commit,
        TS,
        ops,
        &[RawPart::stored(all, ops)],
        Some(&SEED),
        |_, _| {},
    )
}

#[test]
fn hand_made_patches_apply_and_bad_ones_are_refused_precisely() {
    let keys = [public_key(&SEED)];
    let old = b"0123456789abcdefghij".to_vec();
    let new = b"ABCabcdefXY0123".to_vec();
    let h = hand(&old, &new);
    let obj_old = file_object(&old);
    let obj_new = file_object(&new);
    let header_len = obj_new.len() - new.len(); // 24: file header, same for both
                                                // Controls: add the 24-byte header (diff against the old header), copy "ABC", seek to
                                                // "abcdef" (offset 24 + 10), add 6, copy "XY", seek back to "0123" (24 + 0), add 4.
    let mut p = control(header_len as u64, 3, 10);
    let diff_bytes = |o: &[u8], n: &[u8]| -> Vec<u8> {
        n.iter().zip(o).map(|(n, o)| n.wrapping_sub(*o)).collect()
    };
    p.extend(diff_bytes(&obj_old[..header_len], &obj_new[..header_len]));
    p.extend_from_slice(b"ABC");
    p.extend(control(6, 2, -16));
    p.extend(diff_bytes(b"abcdef", b"abcdef"));
    p.extend_from_slice(b"XY");
    p.extend(control(4, 0, 0));
    p.extend(diff_bytes(b"0123", b"0123"));
    assert_eq!(apply_patch(&obj_old, &p).unwrap(), obj_new);
    let len = obj_new.len() as u64;
    let good = patch_record(ObjectKind::File, h.target, len, h.source, &p);
    let f = hand_file(&h, good.clone(), 3);
    let mut s = h.store.clone();
    install_all(&mut s, &f, policy(&keys)).unwrap();
    assert_eq!(s.objects[&(ObjectKind::File, h.target)], obj_new);

    // The same record in a format-2 file: the code is unknown there.
    let f = hand_file(&h, good.clone(), 2);
    refused(
        &h.store,
        &f,
        Some(&InstallError::Format(FormatError::UnknownOp(3))),
    );

    let bad = |p: &[u8], want: InstallError<Infallible>| {
        let r = patch_record(ObjectKind::File, h.target, len, h.source, p);
        refused(&h.store, &hand_file(&h, r, 3), Some(&want));
        want.to_string()
    };
    let kind = ObjectKind::File;
    let id = h.target;
    // Adds past the source's end: a seek to its end, then one byte.
    let mut q = control(0, 1, obj_old.len() as i64);
    q.push(b'A');
    q.extend(control(1, 0, 0));
    q.push(0);
    let msg = bad(
        &q,
        InstallError::PatchRange {
            kind,
            id,
            offset: 44,
            len: 1,
            source_len: 44,
        },
    );
    assert!(
        msg.contains("offset 44") && msg.contains("of 44 bytes"),
        "{msg}"
    );
    // A seek before the source's start, then an add.
    let mut q = control(0, 1, -1);
    q.push(b'A');
    q.extend(control(1, 0, 0));
    q.push(0);
    bad(
        &q,
        InstallError::PatchRange {
            kind,
            id,
            offset: -1,
            len: 1,
            source_len: obj_old.len() as u64,
        },
    );
    // A control building more than the record's length.
    let msg = bad(
        &control(0, len + 1, 0),
        InstallError::PatchOverrun {
            kind,
            id,
            len,
            at: 0,
        },
    );
    assert!(msg.contains(&format!("{len} bytes")), "{msg}");
    // A negative add length (a sign bit) is too long.
    bad(
        &control(1 << 63 | 1, 0, 0),
        InstallError::PatchOverrun {
            kind,
            id,
            len,
            at: 0,
        },
    );
    // A seek that overflows.
    let mut q = control(0, 1, i64::MAX);
    q.push(b'A');
    q.extend(control(0, 1, i64::MAX));
    q.push(b'B');
    bad(
        &q,
        InstallError::PatchRange {
            kind,
            id,
            offset: i64::MAX,
            len: 0,
            source_len: obj_old.len() as u64,
        },
    );
    // Builds the right length but wrong bytes: the object's hash.
    let mut q = p.clone();
    let last = q.len() - 1;
    q[last] ^= 1;
    let r = patch_record(ObjectKind::File, h.target, len, h.source, &q);
    refused(&h.store, &hand_file(&h, r, 3), None);
    // A patch whose object cannot fit in what is left of its part (a patch has a record
    // byte for each byte it builds); one whose part ends inside a control.
    let cut = &p[..PATCH_CONTROL_LEN - 1];
    for (len, want) in [
        (
            len,
            InstallError::ObjectTooLong {
                kind,
                id,
                len,
                room: 23,
            },
        ),
        (10, InstallError::PartEndsInsideOp { part: 0 }),
    ] {
        let r = patch_record(ObjectKind::File, h.target, len, h.source, cut);
        let f = raw_update_version(
            3,
            Some(ObjectId([0xcc; 32])),
            h.commit,
            TS,
            1,
            &[RawPart::stored(r, 1)],
            Some(&SEED),
            |_, _| {},
        );
        refused(&h.store, &f, Some(&want));
    }
    // A commit is never patched.
    let r = patch_record(ObjectKind::Commit, h.commit, 10, h.source, &[]);
    refused(
        &h.store,
        &hand_file(&h, r, 3),
        Some(&InstallError::PatchCommit { id: h.commit }),
    );
    // The structure of a patched object is checked as it streams, as a written one's.
    let mut bad_mode = obj_new.clone();
    bad_mode[1] = 0xff;
    let q = diff(&obj_old, &bad_mode);
    let r = patch_record(ObjectKind::File, ObjectId::of(&bad_mode), len, h.source, &q);
    let f = hand_file(&h, r, 3);
    refused(&h.store, &f, None);
    assert!(matches!(
        install_all(&mut h.store.clone(), &f, policy(&keys)),
        Err(InstallError::Object { .. })
    ));
}

#[test]
fn the_writer_checks_patch_framing_and_version() {
    let c = case();
    let old = file_object(&c.app1);
    let new = c.v2.ops.iter().find_map(|o| match o {
        Op::Write(ObjectKind::File, id, b) if b.len() > 12_000 => Some((*id, b.clone())),
        _ => None,
    });
    let (id, new) = new.unwrap();
    let p = diff(&old, &new);
    let mut w = UpdateWriter::new(REF, None, id, TS, "1", "s");
    let src = ObjectId::of(&old);
    let len = new.len() as u64;
    assert!(w
        .patch_object(ObjectKind::File, id, len + 1, src, &p)
        .is_err());
    assert!(w
        .patch_object(ObjectKind::File, id, len, src, &p[..p.len() - 1])
        .is_err());
    assert!(w
        .patch_object(ObjectKind::Commit, id, len, src, &p)
        .is_err());
    // Format 2 cannot carry a patch record.
    let mut w = UpdateWriter::new(REF, Some(c.v1.commit), c.v2.commit, TS + 10, "1.0", "t")
        .format_version(2);
    for op in &c.v2.ops {
        match op {
            Op::Write(k, i, b) if *i == id => {
                let _ = (k, b);
                w.patch_object(ObjectKind::File, id, len, src, &p).unwrap();
            }
            Op::Write(k, i, b) => w.write_object(*k, *i, b).unwrap(),
            Op::Reuse(k, i) => w.reuse_object(*k, *i),
        }
    }
    let e = w.finish(None, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, WriteError::PatchNeedsV3 { version: 2 }), "{e}");
    assert_eq!(PATCH_HEADER_LEN, 74);
}

/// The worked example of docs/FORMAT.md §6: a patch record that builds the file object of
/// "hello, world!\n" from that of "hello world\n".
/// A record, its sections (name, length), the store and file around it, the object it builds.
type Example = (Vec<u8>, Vec<(&'static str, usize)>, Hand, Vec<u8>);

fn format_patch_example() -> Example {
    let old = file_object(b"hello world\n");
    let new = file_object(b"hello, world!\n");
    let h = hand(b"hello world\n", b"hello, world!\n");
    let diff_bytes = |o: &[u8], n: &[u8]| -> Vec<u8> {
        n.iter().zip(o).map(|(n, o)| n.wrapping_sub(*o)).collect()
    };
    // Header and "hello" from the source (only the size differs), "," copied; " world" from
    // the source, "!\n" copied.
    let mut p = control(29, 1, 0);
    p.extend(diff_bytes(&old[..29], &new[..29]));
    p.push(b',');
    p.extend(control(6, 2, 0));
    p.extend(diff_bytes(&old[29..35], &new[30..36]));
    p.extend_from_slice(b"!\n");
    assert_eq!(apply_patch(&old, &p).unwrap(), new);
    let record = patch_record(ObjectKind::File, h.target, new.len() as u64, h.source, &p);
    let sections = vec![
        ("Patch record header", PATCH_HEADER_LEN),
        ("control 0: add 29, copy 1, seek 0", PATCH_CONTROL_LEN),
        ("29 bytes to add to source bytes 0..29", 29),
        ("1 byte to copy", 1),
        ("control 1: add 6, copy 2, seek 0", PATCH_CONTROL_LEN),
        ("6 bytes to add to source bytes 29..35", 6),
        ("2 bytes to copy", 2),
    ];
    (record, sections, h, new)
}

/// docs/FORMAT.md shows the patch example byte for byte; this keeps it true.
#[test]
fn format_patch_example_matches_the_spec() {
    let keys = [public_key(&SEED)];
    let (record, sections, h, new) = format_patch_example();
    let dump = hex_dump(&record, &sections);
    let mut s = h.store.clone();
    install_all(&mut s, &hand_file(&h, record, 3), policy(&keys)).unwrap();
    assert_eq!(s.objects[&(ObjectKind::File, h.target)], new);
    if std::env::var_os("PRINT_FORMAT_EXAMPLE").is_some() {
        println!("source {}\ntarget {}\n{dump}", h.source, h.target);
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md");
    let doc = std::fs::read_to_string(path).expect("docs/FORMAT.md");
    assert!(
        doc.contains(&dump),
        "the patch example in docs/FORMAT.md is out of date; run with PRINT_FORMAT_EXAMPLE=1 and paste"
    );
}
