//! Reuse-entries records (`docs/FORMAT.md` §6, format version 5): a changed directory's
//! unchanged entries reused by one record naming the source dirtree and a bitmap over its
//! references. They install as the same reuses one record each would, whatever the chunking;
//! a missing or damaged source, a bitmap that does not fit it, a reference the store lacks, a
//! flipped bit and a cut are each refused with nothing committed.

mod common;

use std::collections::HashSet;

use agent_core::install::InstallError;
use agent_core::object::{Commit, DirEntry, DirTree, ObjectId};
use agent_core::wire::{FormatError, OpRepr, REUSE_ENTRIES_HEADER_LEN};
use agent_core::write::{UpdateWriter, WriteError};
use agent_core::ObjectKind;
use common::*;

const TS: u64 = 1_700_000_000;

struct Case {
    v1: Built,
    v2: Built,
    /// v1's root dirtree: the source of the root's reuse-entries record.
    source: ObjectId,
    source_bytes: Vec<u8>,
    /// v2's root dirtree.
    root: ObjectId,
}

/// v1 has four files, a symlink and two subdirectories at its root: 9 references (the files
/// and the link one each, `sub` and `tools` a dirtree and a dirmeta each, in name order). v2
/// changes `a.txt` and `tools/z`: the root's other entries are reused, but for `tools`' dirmeta,
/// which is `sub`'s (every directory has the same metadata) and reused once.
fn case() -> Case {
    let tree = |a: &str, z: &str| {
        Tree::default()
            .file("a.txt", a)
            .file("b.txt", "bravo\n")
            .file("c.txt", "charlie\n")
            .file("d.bin", vec![7u8; 3000])
            .link("link", "a.txt")
            .dir("sub", Tree::default().file("x", "x\n").file("y", "y\n"))
            .dir("tools", Tree::default().file("z", z))
    };
    let v1 = build(&tree("version 1\n", "z 1\n"), None, TS, &HashSet::new());
    let v2 = build(
        &tree("version 2\n", "z 2\n"),
        Some(v1.commit),
        TS + 10,
        &v1.ids,
    );
    let root_of = |b: &Built| {
        let Some(Op::Write(_, _, c)) = b.ops.last() else {
            panic!("the commit is last")
        };
        Commit::parse(c).unwrap().root_tree
    };
    let source = root_of(&v1);
    let source_bytes = v1
        .ops
        .iter()
        .find_map(|o| match o {
            Op::Write(ObjectKind::DirTree, id, b) if *id == source => Some(b.clone()),
            _ => None,
        })
        .unwrap();
    let root = root_of(&v2);
    Case {
        v1,
        v2,
        source,
        source_bytes,
        root,
    }
}

/// The references of dirtree `bytes`, in entry order.
fn refs(bytes: &[u8]) -> Vec<(ObjectKind, ObjectId)> {
    DirTree::parse(bytes).unwrap().references().collect()
}

/// The writer of v2's delta.
fn writer(c: &Case) -> UpdateWriter {
    UpdateWriter::new(
        REF,
        Some(c.v1.commit),
        c.v2.commit,
        c.v2.timestamp,
        "1.0",
        "test commit",
    )
}

/// v2's delta with the reuses of the root's entries that v1's root names gathered into one
/// reuse-entries record before the root dirtree; `bitmap` turns the bitmap before it is
/// written. Returns the file and the bitmap written.
fn grouped(c: &Case, mut bitmap: impl FnMut(&mut Vec<u8>)) -> (Vec<u8>, Vec<u8>) {
    let mut w = writer(c).part_size(1024);
    let bits = test_support::tree::write_ops_grouped(
        &mut w,
        &c.v2.ops,
        (&c.source_bytes, c.root),
        &mut bitmap,
        &|_, _| None,
        4096,
    )
    .unwrap();
    let mut out = Vec::new();
    w.finish(Some(&SEED), &mut out).unwrap();
    (out, bits)
}

/// The store after installing v1.
fn v1_store(c: &Case) -> MemStore {
    let mut store = MemStore::default();
    let full = write_update(&c.v1, None, Some(&SEED), 16 * 1024);
    install_all(&mut store, &full, policy(&[public_key(&SEED)])).unwrap();
    store
}

const CHUNKINGS: [&[usize]; 4] = [&[1 << 20], &[1], &[7], &[512]];

#[test]
fn a_grouped_delta_installs_as_its_reuses_would_whatever_the_chunking() {
    let c = case();
    let keys = [public_key(&SEED)];
    let store = v1_store(&c);
    let (delta, bits) = grouped(&c, |_| {});
    let plain = write_update(&c.v2, Some(c.v1.commit), Some(&SEED), 1024);
    assert_eq!(delta[8..10], [5, 0], "reuse-entries records are format 5");
    assert_eq!(plain[8..10], [3, 0], "without them the writer stays at 3");
    // b.txt, c.txt, d.bin, link, sub's dirtree and dirmeta: references 1 to 6 of 9.
    assert_eq!(refs(&c.source_bytes).len(), 9);
    assert_eq!(bits, [0b0111_1110, 0]);

    let chunkings: [&[usize]; 6] = [&[delta.len()], &[1], &[7], &[512], &[65536], &[3, 1, 129]];
    let s = installs_alike(&store, &delta, c.v2.commit, &chunkings);
    assert!(s.commits.contains(&c.v2.commit));
    // The same objects as the delta that reuses each by its own record, reused the same
    // number of times.
    let mut p = store.clone();
    install_all(&mut p, &plain, policy(&keys)).unwrap();
    assert_eq!(s.objects, p.objects);
    let reuses = |log: &[String]| {
        let mut r: Vec<String> = log
            .iter()
            .filter(|l| l.starts_with("reuse "))
            .cloned()
            .collect();
        r.sort();
        r
    };
    assert_eq!(reuses(&s.log), reuses(&p.log));
    assert_eq!(reuses(&s.log).len(), 6);
    assert!(s.reads > 0, "the source was read through read_object");
}

#[test]
fn a_missing_or_damaged_source_dirtree_is_refused_with_nothing_committed() {
    let c = case();
    let store = v1_store(&c);
    let (delta, _) = grouped(&c, |_| {});
    let key = (ObjectKind::DirTree, c.source);

    let mut missing = store.clone();
    missing.objects.remove(&key).unwrap();
    let want = InstallError::EntriesSourceMissing { source: c.source };
    refused_over(&missing, &delta, Some(&want), &CHUNKINGS);
    let msg = want.to_string();
    assert!(
        msg.contains(&c.source.to_string()) && msg.contains("not in the store"),
        "{msg}"
    );

    for at in [0, 5, c.source_bytes.len() - 1] {
        let mut damaged = store.clone();
        let bytes = damaged.objects.get_mut(&key).unwrap();
        bytes[at] ^= 0x04;
        let found = ObjectId::of(bytes);
        let want = InstallError::PatchSourceDamaged {
            kind: ObjectKind::DirTree,
            source: c.source,
            found,
        };
        refused_over(&damaged, &delta, Some(&want), &CHUNKINGS);
        assert!(want.to_string().contains("reused entries"), "{want}");
    }
}

#[test]
fn a_bitmap_that_does_not_fit_its_source_is_refused() {
    let c = case();
    let store = v1_store(&c);
    let bitmap_error = |len: u64, refs: u64| InstallError::EntriesBitmap {
        source: c.source,
        len,
        refs,
    };
    // A byte short: the last two references are not covered.
    let (short, _) = grouped(&c, |b| {
        b.pop();
    });
    refused_over(&store, &short, Some(&bitmap_error(1, 9)), &CHUNKINGS);
    // A byte too many, even of zeros.
    let (long, _) = grouped(&c, |b| b.push(0));
    refused_over(&store, &long, Some(&bitmap_error(3, 9)), &CHUNKINGS);
    // A bit past the 9th reference.
    let (past, _) = grouped(&c, |b| b[1] |= 1 << 2);
    refused_over(&store, &past, Some(&bitmap_error(2, 9)), &CHUNKINGS);
    // None at all.
    let (empty, _) = grouped(&c, |b| b.clear());
    refused_over(&store, &empty, Some(&bitmap_error(0, 1)), &CHUNKINGS);
    let msg = bitmap_error(3, 9).to_string();
    assert!(msg.contains("3 bytes") && msg.contains("9 read"), "{msg}");
}

#[test]
fn a_selected_reference_the_store_lacks_is_refused() {
    let c = case();
    let store = v1_store(&c);
    let (delta, _) = grouped(&c, |_| {});
    let b = ObjectId::of(&file_object(b"bravo\n"));
    let mut lacking = store.clone();
    lacking.objects.remove(&(ObjectKind::File, b)).unwrap();
    let want = InstallError::MissingObject {
        kind: ObjectKind::File,
        id: b,
    };
    refused_over(&lacking, &delta, Some(&want), &CHUNKINGS);
}

#[test]
fn before_format_5_the_record_is_unknown_and_the_writer_refuses_it() {
    let c = case();
    let (delta, bits) = grouped(&c, |_| {});
    // The same file under a version-4 header (re-signed): operation 5 is unknown there.
    let mut old = delta.clone();
    old[8..10].copy_from_slice(&4u16.to_le_bytes());
    let sb_len = u32::from_le_bytes(old[12..16].try_into().unwrap()) as usize;
    let signed = 16 + sb_len;
    use ed25519_dalek::Signer;
    let sig = ed25519_dalek::SigningKey::from_bytes(&SEED).sign(&old[..signed]);
    old[signed + 1..signed + 65].copy_from_slice(&sig.to_bytes());
    let store = v1_store(&c);
    refused_over(
        &store,
        &old,
        Some(&InstallError::Format(FormatError::UnknownOp(5))),
        &CHUNKINGS,
    );
    // The writer asked for version 4 refuses the record.
    let mut w = writer(&c).format_version(4);
    w.reuse_entries(c.source, &bits).unwrap();
    for op in &c.v2.ops {
        if let Op::Write(k, id, b) = op {
            w.write_object(*k, *id, b).unwrap();
        }
    }
    let e = w.finish(None, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(e, WriteError::ReuseEntriesNeedsV5 { version: 4 }),
        "{e}"
    );
}

#[test]
fn a_flipped_bit_anywhere_in_a_grouped_delta_fails() {
    let c = case();
    let (delta, _) = grouped(&c, |_| {});
    assert!(delta.len() < 4000, "{}", delta.len());
    every_flip_refused(&v1_store(&c), &delta);
}

#[test]
fn a_grouped_delta_cut_at_every_length_fails() {
    let c = case();
    let (delta, _) = grouped(&c, |_| {});
    every_cut_truncated(&v1_store(&c), &delta);
}

/// The example of docs/FORMAT.md: a root of `hostname`, `os-release` and a directory `ssl`
/// whose `hostname` changes; the record reuses references 1 to 3 (`os-release`, `ssl`'s
/// dirtree and dirmeta). Returns the record, the store holding the source and the file that
/// installs the target with it.
fn format_reuse_entries_example() -> (Vec<u8>, MemStore, Vec<u8>, ObjectId) {
    let obj = |b: &[u8]| (ObjectId::of(b), b.to_vec());
    let (host1, host1_b) = obj(&file_object(b"ecu-1\n"));
    let (host2, host2_b) = obj(&file_object(b"ecu-2\n"));
    let (osr, osr_b) = obj(&file_object(b"ID=ecu\n"));
    let (cert, cert_b) = obj(&file_object(b"cert\n"));
    let (meta, meta_b) = obj(&dirmeta_object());
    let (ssl, ssl_b) = obj(&dirtree_object(&[DirEntry::File {
        name: b"cert.pem",
        id: cert,
    }]));
    let root = |host: ObjectId| {
        obj(&dirtree_object(&[
            DirEntry::File {
                name: b"hostname",
                id: host,
            },
            DirEntry::File {
                name: b"os-release",
                id: osr,
            },
            DirEntry::Dir {
                name: b"ssl",
                tree: ssl,
                meta,
            },
        ]))
    };
    let (source, source_b) = root(host1);
    let (target, target_b) = root(host2);
    let from = ObjectId([0xcc; 32]);
    let mut store = MemStore::default();
    store.commits.insert(from);
    for (k, id, b) in [
        (ObjectKind::File, host1, host1_b),
        (ObjectKind::File, osr, osr_b),
        (ObjectKind::File, cert, cert_b),
        (ObjectKind::DirMeta, meta, meta_b),
        (ObjectKind::DirTree, ssl, ssl_b),
        (ObjectKind::DirTree, source, source_b),
    ] {
        store.objects.insert((k, id), b);
    }
    let op = OpRepr::ReuseEntries { source, len: 1 };
    let mut record = vec![0u8; op.buffer_len()];
    op.emit(&mut record);
    record.push(0b0000_1110);
    let commit = commit_object(Some(from), TS, target, meta, "1.0");
    let mut records = rec_write(ObjectKind::File, host2, &host2_b);
    records.extend(&record);
    records.extend(rec_write(ObjectKind::DirTree, target, &target_b));
    records.extend(rec_obj(ObjectKind::Commit, &commit));
    let file = raw_update_version(
        5,
        Some(from),
        ObjectId::of(&commit),
        TS,
        4,
        &[RawPart::stored(records, 4)],
        Some(&SEED),
        |_, _| {},
    );
    (record, store, file, source)
}

/// docs/FORMAT.md shows the reuse-entries example byte for byte; this keeps it true.
#[test]
fn format_reuse_entries_example_matches_the_spec() {
    let (record, store, file, source) = format_reuse_entries_example();
    let dump = hex_dump(
        &record,
        &[
            ("Reuse-entries record header", REUSE_ENTRIES_HEADER_LEN),
            ("bitmap: references 1, 2 and 3 of 4", 1),
        ],
    );
    let mut s = store.clone();
    install_all(&mut s, &file, policy(&[public_key(&SEED)])).unwrap();
    let reused: Vec<&String> = s.log.iter().filter(|l| l.starts_with("reuse ")).collect();
    assert_eq!(reused.len(), 3, "{:?}", s.log);
    if std::env::var_os("PRINT_FORMAT_EXAMPLE").is_some() {
        println!("source {source}\n{dump}\n{reused:?}");
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md");
    let doc = std::fs::read_to_string(path).expect("docs/FORMAT.md");
    assert!(
        doc.contains(&dump),
        "the reuse-entries example in docs/FORMAT.md is out of date; run with PRINT_FORMAT_EXAMPLE=1 and paste"
    );
}
