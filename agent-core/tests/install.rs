//! Install scenarios: updates built with the writer, installed into an in-memory store.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;

use agent_core::install::{Installer, INSTALLER_SIZE_BUDGET};
use agent_core::ObjectKind;
use common::*;

#[test]
fn installer_fits_its_budget() {
    let size = core::mem::size_of::<Installer<'static>>();
    eprintln!("size_of::<Installer>() = {size}");
    assert!(
        size <= INSTALLER_SIZE_BUDGET,
        "{size} > {INSTALLER_SIZE_BUDGET}"
    );
    // With the window it is lent.
    assert!(
        size + agent_core::install::INFLATE_WINDOW <= INSTALLER_SIZE_BUDGET,
        "{size} + 32 KiB > {INSTALLER_SIZE_BUDGET}"
    );
}

#[test]
fn from_scratch_round_trip() {
    let built = build(&sample_tree(), None, 1_700_000_000, &HashSet::new());
    let keys = [public_key(&SEED)];
    let file = write_update(&built, None, Some(&SEED), 4096);
    let mut store = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    let installed = install_chunks(&mut inst, &mut store, &file, &[file.len()]).unwrap();
    assert_eq!(installed.commit, built.commit);
    assert_eq!(installed.from, None);
    assert_eq!(store.refs.get(REF), Some(&built.commit));
    assert_eq!(store.commit_calls, 1);
    for op in &built.ops {
        if let Op::Write(k, id, b) = op {
            assert_eq!(store.objects.get(&(*k, *id)), Some(b), "{k} {id}");
        }
    }
    assert_eq!(store.objects.len(), built.ops.len());
    let info = inst.superblock_info().unwrap();
    assert_eq!(info.to, built.commit);
    assert_eq!(info.ref_name, REF);
    assert!(info.verified);
    assert!(store.objects.keys().any(|(k, _)| *k == ObjectKind::Commit));
}

#[test]
fn chunk_sizes_give_the_same_store_calls() {
    let built = build(&sample_tree(), None, 1_700_000_000, &HashSet::new());
    let keys = [public_key(&SEED)];
    let file = write_update(&built, None, Some(&SEED), 4096);
    let mut reference: Option<Vec<String>> = None;
    for sizes in [
        &[file.len()][..],
        &[1],
        &[7],
        &[512],
        &[65536],
        &[3, 1, 100, 4000],
    ] {
        let mut store = MemStore::default();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let installed = install_chunks(&mut inst, &mut store, &file, sizes).unwrap();
        assert_eq!(installed.commit, built.commit);
        match &reference {
            None => reference = Some(store.log.clone()),
            Some(r) => assert_eq!(&store.log, r, "chunks {sizes:?}"),
        }
    }
}

use agent_core::install::{InstallError, Policy};
use agent_core::object::{DirEntry, NameError, ObjectError, ObjectId};
use agent_core::wire::{Codec, FormatError};
use sha2::Digest;

const TS: u64 = 1_700_000_000;

fn v1() -> Built {
    build(&sample_tree(), None, TS, &HashSet::new())
}

fn v2_tree() -> Tree {
    let mut t = sample_tree();
    t.0.insert(
        "etc".into(),
        Node::Dir(
            Tree::default()
                .file("hostname", "ecu-2\n")
                .file("os-release", "ID=test\nVERSION=1\n"),
        ),
    );
    t.file("new.txt", "added in v2\n")
}

/// A store holding v1, installed from its from-scratch file.
fn store_with_v1(keys: &[[u8; 32]]) -> (MemStore, Built) {
    let v1 = v1();
    let file = write_update(&v1, None, Some(&SEED), 4096);
    let mut store = MemStore::default();
    install_all(&mut store, &file, policy(keys)).unwrap();
    (store, v1)
}

#[test]
fn delta_round_trip() {
    let keys = [public_key(&SEED)];
    let (mut store, v1) = store_with_v1(&keys);
    let v2 = build(&v2_tree(), Some(v1.commit), TS + 10, &v1.ids);
    // The delta reuses the unchanged file objects, and the empty directory's tree, and writes the rest.
    let reuses = v2.ops.iter().filter(|o| matches!(o, Op::Reuse(..))).count();
    assert!(reuses >= 3, "{:?}", v2.ops);
    assert!(v2
        .ops
        .iter()
        .any(|o| matches!(o, Op::Reuse(ObjectKind::DirTree, _))));
    let file = write_update(&v2, Some(v1.commit), Some(&SEED), 4096);
    let full = write_update(
        &build(&v2_tree(), Some(v1.commit), TS + 10, &HashSet::new()),
        None,
        Some(&SEED),
        4096,
    );
    assert!(
        file.len() * 2 < full.len(),
        "delta {} vs full {}",
        file.len(),
        full.len()
    );

    let installed = install_all(&mut store, &file, policy(&keys)).unwrap();
    assert_eq!(installed.commit, v2.commit);
    assert_eq!(installed.from, Some(v1.commit));
    assert_eq!(installed.ref_name.as_str(), REF);
    assert_eq!(store.refs[REF], v2.commit);
    assert!(store.commits.contains(&v1.commit) && store.commits.contains(&v2.commit));
    for id in &v2.ids {
        assert!(
            store.objects.keys().any(|(_, i)| i == id),
            "object {id} of v2 missing"
        );
    }
    assert!(store
        .log
        .iter()
        .any(|l| l == &format!("has_commit {}", v1.commit)));
}

#[test]
fn delta_without_its_source() {
    let keys = [public_key(&SEED)];
    let v1 = v1();
    let v2 = build(&v2_tree(), Some(v1.commit), TS + 10, &v1.ids);
    let file = write_update(&v2, Some(v1.commit), Some(&SEED), 4096);
    let mut store = MemStore::default();
    let err = install_all(&mut store, &file, policy(&keys)).unwrap_err();
    assert_eq!(err, InstallError::MissingSource(v1.commit));
    assert_eq!(
        err.to_string(),
        format!(
            "commit {}, the source of this delta, is not in the store",
            v1.commit.to_hex().as_str()
        )
    );
    assert_eq!(store.commit_calls, 0);
    assert_eq!(store.abort_calls, 1);
    // Nothing was asked of the store but the source.
    assert_eq!(
        store.log,
        vec![format!("has_commit {}", v1.commit), "abort".to_string()]
    );
}

#[test]
fn delta_whose_reused_object_is_gone() {
    let keys = [public_key(&SEED)];
    let (mut store, v1) = store_with_v1(&keys);
    let a = ObjectId::of(&file_object(b"hello\n"));
    assert!(store.objects.remove(&(ObjectKind::File, a)).is_some());
    let v2 = build(&v2_tree(), Some(v1.commit), TS + 10, &v1.ids);
    let file = write_update(&v2, Some(v1.commit), Some(&SEED), 4096);
    let err = install_all(&mut store, &file, policy(&keys)).unwrap_err();
    assert_eq!(
        err,
        InstallError::MissingObject {
            kind: ObjectKind::File,
            id: a
        }
    );
    assert_eq!(store.refs[REF], v1.commit);
}

#[test]
fn signature_policies() {
    let good = [public_key(&SEED)];
    let other = [public_key(&OTHER_SEED)];
    let built = v1();
    let signed = write_update(&built, None, Some(&SEED), 4096);
    let unsigned = write_update(&built, None, None, 4096);

    let mut s = MemStore::default();
    assert_eq!(
        install_all(&mut s, &signed, policy(&other)),
        Err(InstallError::BadSignature)
    );
    assert!(
        s.log.iter().all(|l| l == "abort"),
        "the store saw {:?}",
        s.log
    );
    let mut s = MemStore::default();
    assert_eq!(
        install_all(&mut s, &unsigned, policy(&good)),
        Err(InstallError::Unsigned)
    );
    assert_eq!(s.log, vec!["abort".to_string()]);
    let mut s = MemStore::default();
    assert_eq!(
        install_all(&mut s, &signed, Policy::require(&[])),
        Err(InstallError::NoTrustedKeys)
    );
    let mut s = MemStore::default();
    assert_eq!(
        install_all(&mut s, &signed, Policy::require(&other).allow_unsigned()),
        Err(InstallError::BadSignature)
    );
    // A signed file with no key to check it is refused, also when unsigned files are allowed:
    // an unchecked signature is never taken for a checked one.
    let mut s = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(&[]).allow_unsigned(), win).with_xz(xz);
    assert_eq!(
        install_chunks(&mut inst, &mut s, &signed, &[100]),
        Err(InstallError::NoTrustedKeys)
    );
    assert_eq!(s.log, vec!["abort".to_string()]);
    assert!(inst.superblock_info().is_none());
    // Accepted: the right key among others; unsigned when allowed; signed and verified when
    // unsigned files are allowed too.
    let both = [other[0], good[0]];
    assert!(install_all(&mut MemStore::default(), &signed, policy(&both)).is_ok());
    assert!(install_all(
        &mut MemStore::default(),
        &unsigned,
        Policy::require(&good).allow_unsigned()
    )
    .is_ok());
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(&good).allow_unsigned(), win).with_xz(xz);
    install_chunks(&mut inst, &mut MemStore::default(), &signed, &[100]).unwrap();
    let info = inst.superblock_info().unwrap();
    assert!(info.signed && info.verified);
    lent!(win, xz);
    let mut inst = Installer::new(Policy::require(&[]).allow_unsigned(), win).with_xz(xz);
    install_chunks(&mut inst, &mut MemStore::default(), &unsigned, &[100]).unwrap();
    let info = inst.superblock_info().unwrap();
    assert!(!info.signed && !info.verified);
    // A key that is not a curve point is a configuration error, reported as such.
    let bad_key = (0u8..=255)
        .map(|b| [b; 32])
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err())
        .unwrap();
    let keys = [bad_key];
    assert_eq!(
        install_all(&mut MemStore::default(), &signed, policy(&keys)),
        Err(InstallError::BadTrustedKey { index: 0 })
    );
}

/// Installs `file` under `policy` in several chunkings, expects `want` every time, and checks
/// that the store saw nothing but the abort: the policy is checked at the superblock.
fn refused_at_the_superblock(file: &[u8], policy: Policy<'_>, want: &InstallError<Infallible>) {
    for sizes in [&[file.len()][..], &[1], &[7], &[512]] {
        let mut s = MemStore::default();
        lent!(win, xz);
        let mut inst = Installer::new(policy, win).with_xz(xz);
        assert_eq!(
            install_chunks(&mut inst, &mut s, file, sizes).as_ref(),
            Err(want),
            "chunks {sizes:?}"
        );
        assert_eq!(s.log, vec!["abort".to_string()], "chunks {sizes:?}");
        s.assert_failed_cleanly();
        assert!(inst.superblock_info().is_none());
    }
}

#[test]
fn revoked_keys_are_refused_by_name_even_when_trusted() {
    let good = [public_key(&SEED)];
    let other = [public_key(&OTHER_SEED)];
    let signed = write_update(&v1(), None, Some(&SEED), 4096);
    let revoked = InstallError::RevokedKey { key: good[0] };
    // Trusted and revoked: refused.
    refused_at_the_superblock(&signed, policy(&good).with_revoked(&good), &revoked);
    // Revoked, trusted is another key: refused naming the revoked key, not "bad signature".
    refused_at_the_superblock(&signed, policy(&other).with_revoked(&good), &revoked);
    // Revoked, unsigned files allowed, no trusted key: still refused by name.
    refused_at_the_superblock(
        &signed,
        Policy::require(&[]).allow_unsigned().with_revoked(&good),
        &revoked,
    );
    let msg = revoked.to_string();
    let hex: String = good[0][..8].iter().map(|b| format!("{b:02x}")).collect();
    assert!(msg.contains(&hex), "{msg}");
    assert!(msg.contains("revoked"), "{msg}");
    // Another key revoked (and one that is no curve point): the file installs.
    let not_a_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err())
        .unwrap();
    let revoked = [other[0], not_a_point];
    let mut s = MemStore::default();
    let installed = install_all(&mut s, &signed, policy(&good).with_revoked(&revoked)).unwrap();
    s.assert_committed(&installed.commit);
}

#[test]
fn refs_not_followed_are_refused_naming_the_ref() {
    let keys = [public_key(&SEED)];
    let signed = write_update(&v1(), None, Some(&SEED), 4096);
    let want = InstallError::RefNotFollowed {
        ref_name: REF.try_into().unwrap(),
        cut: false,
    };
    refused_at_the_superblock(&signed, policy(&keys).with_refs(&["ecu/other"]), &want);
    refused_at_the_superblock(&signed, policy(&keys).with_refs(&[]), &want);
    let msg = want.to_string();
    assert!(msg.contains(&format!("{REF:?}")), "{msg}");
    // A followed ref installs, among others.
    let refs = ["ecu/other", REF];
    let mut s = MemStore::default();
    let installed = install_all(&mut s, &signed, policy(&keys).with_refs(&refs)).unwrap();
    s.assert_committed(&installed.commit);
}

#[test]
fn unsigned_files_need_allow_unsigned() {
    let keys = [public_key(&SEED)];
    let unsigned = write_update(&v1(), None, None, 4096);
    refused_at_the_superblock(&unsigned, policy(&keys), &InstallError::Unsigned);
    refused_at_the_superblock(&unsigned, policy(&[]), &InstallError::Unsigned);
    let msg = InstallError::<Infallible>::Unsigned.to_string();
    assert!(msg.contains("not signed"), "{msg}");
}

#[test]
fn signed_files_without_trusted_keys_are_refused_under_allow_unsigned() {
    let signed = write_update(&v1(), None, Some(&SEED), 4096);
    let p = Policy::require(&[]).allow_unsigned();
    refused_at_the_superblock(&signed, p, &InstallError::NoTrustedKeys);
    let msg = InstallError::<Infallible>::NoTrustedKeys.to_string();
    assert!(msg.contains("no trusted key"), "{msg}");
}

#[test]
fn unknown_codes_are_reported_precisely() {
    let keys = [public_key(&SEED)];
    let (records, ops, to) = minimal_records(TS);
    let ok = fresh_update(
        to,
        TS,
        ops,
        &[RawPart::deflate(records.clone(), ops)],
        Some(&SEED),
    );
    install_all(&mut MemStore::default(), &ok, policy(&keys)).unwrap();

    // Op code 0x03 (patch) in a format-2 file, which has no patch records, at the start of
    // the part; and the unknown 0x04 in a format-3 file.
    for (version, code) in [(2, 3u8), (3, 4)] {
        let mut r = vec![code];
        r.extend(&records);
        let f = raw_update_version(
            version,
            None,
            to,
            TS,
            ops,
            &[RawPart::stored(r, ops)],
            Some(&SEED),
            |_, _| {},
        );
        let e = install_all(&mut MemStore::default(), &f, policy(&keys)).unwrap_err();
        assert_eq!(e, InstallError::Format(FormatError::UnknownOp(code)));
        let text = format!("operation code {code:#04x}");
        assert!(e.to_string().contains(&text), "{e}");
    }

    // Unknown object kind 9.
    let mut r = records.clone();
    r[1] = 9;
    let f = fresh_update(to, TS, ops, &[RawPart::deflate(r, ops)], Some(&SEED));
    assert_eq!(
        install_all(&mut MemStore::default(), &f, policy(&keys)),
        Err(InstallError::Format(FormatError::UnknownKind(9)))
    );

    // Unknown codec 7.
    let f = raw_update(
        None,
        to,
        TS,
        ops,
        &[RawPart::stored(records.clone(), ops)],
        Some(&SEED),
        |sb, _| {
            sb.parts[0].codec = Codec::Unknown(7);
        },
    );
    assert_eq!(
        install_all(&mut MemStore::default(), &f, policy(&keys)),
        Err(InstallError::Format(FormatError::UnknownCodec {
            part: 0,
            codec: 7
        }))
    );

    // Unknown signature algorithm 2.
    let mut f = fresh_update(to, TS, ops, &[RawPart::stored(records.clone(), ops)], None);
    let sb_len = u32::from_le_bytes(f[12..16].try_into().unwrap()) as usize;
    f[16 + sb_len] = 2;
    assert_eq!(
        install_all(
            &mut MemStore::default(),
            &f,
            Policy::require(&[]).allow_unsigned()
        ),
        Err(InstallError::Format(FormatError::UnknownSignature(2)))
    );
}

#[test]
fn trailing_data_is_refused_before_commit() {
    let keys = [public_key(&SEED)];
    let mut f = write_update(&v1(), None, Some(&SEED), 4096);
    let len = f.len() as u64;
    f.push(0);
    for sizes in [&[f.len()][..], &[1], &[7], &[512]] {
        let mut store = MemStore::default();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let e = install_chunks(&mut inst, &mut store, &f, sizes).unwrap_err();
        assert_eq!(e, InstallError::TrailingData { offset: len });
        assert_eq!(store.commit_calls, 0);
        assert!(store.refs.is_empty());
    }
}

fn bad_name_update(name: &[u8]) -> Vec<u8> {
    let (r, to) = one_file_records(&file_object(b"x"), name, &dirmeta_object(), |t, m| {
        commit_object(None, TS, t, m, "1.0")
    });
    fresh_update(to, TS, 4, &[RawPart::deflate(r, 4)], Some(&SEED))
}

#[test]
fn dirtree_names_that_are_not_one_component() {
    let keys = [public_key(&SEED)];
    for (name, why) in [
        (&b".."[..], NameError::Dots),
        (b".", NameError::Dots),
        (b"a/b", NameError::Slash),
        (b"a\0b", NameError::Nul),
    ] {
        let f = bad_name_update(name);
        let mut store = MemStore::default();
        let e = install_all(&mut store, &f, policy(&keys)).unwrap_err();
        match e {
            InstallError::Object {
                kind: ObjectKind::DirTree,
                error: ObjectError::BadName(n),
                ..
            } => assert_eq!(n, why),
            e => panic!("{name:?}: {e:?}"),
        }
        assert_eq!(store.commit_calls, 0);
    }
    // The writer writes whatever it is given; the same bytes with a good name install.
    assert!(install_all(
        &mut MemStore::default(),
        &bad_name_update(b"ok"),
        policy(&keys)
    )
    .is_ok());
}

#[test]
fn structural_errors() {
    use agent_core::wire::Superblock;
    let keys = [public_key(&SEED)];
    let p = policy(&keys);
    let (records, ops, to) = minimal_records(TS);
    let run = |f: &[u8]| {
        let mut s = MemStore::default();
        let r = install_all(&mut s, f, p);
        assert_eq!(s.commit_calls, 0);
        r.unwrap_err()
    };
    let one = |r: Vec<u8>, ops: u32, objects: u32| {
        fresh_update(to, TS, objects, &[RawPart::deflate(r, ops)], Some(&SEED))
    };
    // The good file with `tweak` applied to its superblock and parts before they are signed.
    let tweaked = |tweak: &dyn Fn(&mut Superblock<'_>, &mut Vec<Vec<u8>>)| {
        raw_update(
            None,
            to,
            TS,
            ops,
            &[RawPart::deflate(records.clone(), ops)],
            Some(&SEED),
            tweak,
        )
    };

    // Counts.
    assert_eq!(
        run(&one(records.clone(), ops, ops + 1)),
        InstallError::ObjectCount {
            declared: 5,
            found: 4
        }
    );
    assert_eq!(
        run(&one(records.clone(), ops, ops - 1)),
        InstallError::ObjectCount {
            declared: 3,
            found: 4
        }
    );
    assert_eq!(
        run(&one(records.clone(), ops - 1, ops)),
        InstallError::OpCount {
            part: 0,
            declared: 3,
            found: 4
        }
    );
    assert_eq!(
        run(&one(records.clone(), ops + 1, ops)),
        InstallError::CommitNotLast { id: to }
    );

    // Declared sizes.
    let f = tweaked(&|sb, _| {
        sb.parts[0].uncompressed_size += 1;
    });
    assert_eq!(run(&f), InstallError::CommitNotLast { id: to });
    let f = tweaked(&|sb, _| {
        sb.parts[0].uncompressed_size -= 1;
    });
    assert!(matches!(
        run(&f),
        InstallError::ObjectTooLong {
            kind: ObjectKind::Commit,
            ..
        }
    ));
    let f = tweaked(&|sb, parts| {
        sb.parts[0].size += 1;
        parts[0].push(0);
        sb.parts[0].sha256 = sha2::Sha256::digest(&parts[0]).into();
    });
    assert_eq!(run(&f), InstallError::PartTrailing { part: 0 });
    let f = tweaked(&|sb, parts| {
        sb.parts[0].size -= 1;
        parts[0].pop();
        sb.parts[0].sha256 = sha2::Sha256::digest(&parts[0]).into();
    });
    assert_eq!(run(&f), InstallError::Inflate { part: 0 });
    let f = tweaked(&|sb, _| {
        sb.parts[0].sha256[0] ^= 1;
    });
    assert_eq!(run(&f), InstallError::PartHash { part: 0 });

    // The commit: not the target, not last, missing, reused, timestamps differ.
    let other = ObjectId([5; 32]);
    let f = fresh_update(
        other,
        TS,
        ops,
        &[RawPart::deflate(records.clone(), ops)],
        Some(&SEED),
    );
    assert_eq!(
        run(&f),
        InstallError::CommitNotTarget {
            expected: other,
            found: to
        }
    );
    let mut r = records.clone();
    r.extend(rec_obj(ObjectKind::File, &file_object(b"late")));
    assert_eq!(
        run(&one(r, ops + 1, ops + 1)),
        InstallError::CommitNotLast { id: to }
    );
    let n = records.len();
    let commit_rec_len = 42 + commit_object(None, TS, ObjectId::ZERO, ObjectId::ZERO, "1.0").len();
    assert_eq!(
        run(&one(
            records[..n - commit_rec_len].to_vec(),
            ops - 1,
            ops - 1
        )),
        InstallError::NoCommit
    );
    let mut r = records[..n - commit_rec_len].to_vec();
    r.extend(rec_reuse(ObjectKind::Commit, to));
    assert_eq!(run(&one(r, ops, ops)), InstallError::ReuseCommit { id: to });
    let f = fresh_update(
        to,
        TS + 1,
        ops,
        &[RawPart::deflate(records.clone(), ops)],
        Some(&SEED),
    );
    assert_eq!(
        run(&f),
        InstallError::MetaMismatch {
            superblock: TS + 1,
            commit: TS
        }
    );

    // Objects: wrong id, lengths that disagree with the header, missing references, unsorted.
    let file = file_object(b"x");
    let mut r = rec_write(ObjectKind::File, ObjectId([1; 32]), &file);
    r.extend(&records[42 + file.len()..]);
    assert_eq!(
        run(&one(r, ops, ops)),
        InstallError::ObjectHash {
            kind: ObjectKind::File,
            expected: ObjectId([1; 32]),
            found: ObjectId::of(&file)
        }
    );
    let mut long = file.clone();
    long.push(b'!');
    let mut r = rec_obj(ObjectKind::File, &long);
    r.extend(&records[42 + file.len()..]);
    assert_eq!(
        run(&one(r, ops, ops)),
        InstallError::Object {
            kind: ObjectKind::File,
            id: ObjectId::of(&long),
            error: ObjectError::TrailingBytes(1)
        }
    );
    let short = &file[..file.len() - 1];
    let mut r = rec_obj(ObjectKind::File, short);
    r.extend(&records[42 + file.len()..]);
    assert!(matches!(
        run(&one(r, ops, ops)),
        InstallError::Object {
            kind: ObjectKind::File,
            error: ObjectError::Truncated { .. },
            ..
        }
    ));
    // The dirtree names a file that was never written.
    let r = records[42 + file.len()..].to_vec();
    assert_eq!(
        run(&one(r, ops - 1, ops - 1)),
        InstallError::MissingObject {
            kind: ObjectKind::File,
            id: ObjectId::of(&file)
        }
    );
    // Unsorted entries.
    let (fa, fb) = (file_object(b"a"), file_object(b"b"));
    let tree = dirtree_object(&[
        DirEntry::File {
            name: b"b",
            id: ObjectId::of(&fb),
        },
        DirEntry::File {
            name: b"a",
            id: ObjectId::of(&fa),
        },
    ]);
    let mut r = rec_obj(ObjectKind::File, &fa);
    r.extend(rec_obj(ObjectKind::File, &fb));
    r.extend(rec_obj(ObjectKind::DirTree, &tree));
    assert_eq!(
        run(&one(r, 3, 3)),
        InstallError::Object {
            kind: ObjectKind::DirTree,
            id: ObjectId::of(&tree),
            error: ObjectError::Unsorted
        }
    );
    // A part ending inside a record.
    let mut r = records.clone();
    r.extend([1, 1, 0]);
    let f = fresh_update(
        to,
        TS,
        ops,
        &[
            RawPart::deflate(records.clone(), ops),
            RawPart::stored(vec![1, 1, 0], 0),
        ],
        Some(&SEED),
    );
    assert_eq!(run(&f), InstallError::CommitNotLast { id: to });
    let f = fresh_update(
        to,
        TS,
        ops,
        &[
            RawPart::stored(vec![2, 1], 0),
            RawPart::deflate(records.clone(), ops),
        ],
        Some(&SEED),
    );
    assert_eq!(run(&f), InstallError::PartEndsInsideOp { part: 0 });
    let _ = r;
}

#[test]
fn truncated_at_every_length() {
    let keys = [public_key(&SEED)];
    let (records, ops, to) = minimal_records(TS);
    let f = fresh_update(to, TS, ops, &[RawPart::deflate(records, ops)], Some(&SEED));
    let sb_len = u32::from_le_bytes(f[12..16].try_into().unwrap()) as u64;
    for len in 0..f.len() {
        let mut store = MemStore::default();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let e = install_chunks(&mut inst, &mut store, &f[..len], &[len.max(1)]).unwrap_err();
        let expected = (len as u64 >= 16 + sb_len + 65).then_some(f.len() as u64);
        assert_eq!(
            e,
            InstallError::Truncated {
                expected,
                got: len as u64
            },
            "at {len}"
        );
        assert_eq!(store.commit_calls, 0);
        assert_eq!(store.abort_calls, 1);
    }
}

#[test]
fn a_flipped_bit_anywhere_fails() {
    let keys = [public_key(&SEED)];
    let built = build(
        &Tree::default()
            .file("a", "hello")
            .dir("d", Tree::default().file("b", "x".repeat(300))),
        None,
        TS,
        &HashSet::new(),
    );
    let f = write_update(&built, None, Some(&SEED), 4096);
    assert!(f.len() < 2000, "{}", f.len());
    for at in 0..f.len() {
        for bit in [0u8, 3, 7] {
            let mut g = f.clone();
            g[at] ^= 1 << bit;
            let mut store = MemStore::default();
            let r = install_all(&mut store, &g, policy(&keys));
            assert!(r.is_err(), "flip at {at} bit {bit} installed");
            assert_eq!(store.commit_calls, 0);
            assert!(store.refs.is_empty() && store.objects.is_empty());
        }
    }
}

#[test]
fn failed_installer_stays_failed_until_reset() {
    let keys = [public_key(&SEED)];
    let f = write_update(&v1(), None, Some(&SEED), 4096);
    let mut store = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    let mut g = f.clone();
    g[0] = b'X';
    assert_eq!(
        inst.feed(&mut store, &g),
        Err(InstallError::Format(FormatError::BadMagic))
    );
    assert_eq!(inst.feed(&mut store, &f), Err(InstallError::Failed));
    assert_eq!(inst.finish(&mut store), Err(InstallError::Failed));
    inst.reset();
    let p = inst.feed(&mut store, &f).unwrap();
    assert!(
        p.done
            && p.parts == p.parts_total
            && p.objects == p.objects_total
            && p.bytes == f.len() as u64
    );
    let a = inst.finish(&mut store).unwrap();
    assert_eq!(inst.finish(&mut store).unwrap(), a);
    assert_eq!(store.commit_calls, 1);
    assert_eq!(
        inst.feed(&mut store, &[0]),
        Err(InstallError::TrailingData {
            offset: f.len() as u64
        })
    );
}

/// A reader that yields `n` bytes at a time and fails after `fail_after` bytes.
struct Trickle<'a> {
    data: &'a [u8],
    n: usize,
    fail_after: Option<usize>,
    given: usize,
}

#[derive(Debug, PartialEq)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("broken transport")
    }
}

impl std::error::Error for Broken {}

impl embedded_io::Error for Broken {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl embedded_io::ErrorType for Trickle<'_> {
    type Error = Broken;
}

impl embedded_io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Broken> {
        if self.fail_after.is_some_and(|f| self.given >= f) {
            return Err(Broken);
        }
        let n = self.n.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.given += n;
        Ok(n)
    }
}

#[test]
fn embedded_io_adapter() {
    use agent_core::io::{install_from_reader, ReadInstallError};
    let keys = [public_key(&SEED)];
    let built = v1();
    let f = write_update(&built, None, Some(&SEED), 4096);
    for (n, buf_len) in [(7, 256), (1000, 64), (1 << 20, 4096)] {
        let mut store = MemStore::default();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let mut buf = vec![0u8; buf_len];
        let mut r = Trickle {
            data: &f,
            n,
            fail_after: None,
            given: 0,
        };
        let installed = install_from_reader(&mut inst, &mut store, &mut r, &mut buf).unwrap();
        assert_eq!(installed.commit, built.commit);
        assert_eq!(store.refs[REF], built.commit);
    }
    // A transport failure abandons the install.
    let mut store = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    let mut r = Trickle {
        data: &f,
        n: 100,
        fail_after: Some(f.len() / 2),
        given: 0,
    };
    let e = install_from_reader(&mut inst, &mut store, &mut r, &mut [0u8; 128]).unwrap_err();
    assert!(matches!(e, ReadInstallError::Read(Broken)));
    assert_eq!((store.abort_calls, store.commit_calls), (1, 0));
    // A short file is reported by the installer.
    let mut store = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    let mut r = Trickle {
        data: &f[..f.len() - 1],
        n: 100,
        fail_after: None,
        given: 0,
    };
    let e = install_from_reader(&mut inst, &mut store, &mut r, &mut [0u8; 128]).unwrap_err();
    assert!(
        matches!(e, ReadInstallError::Install(InstallError::Truncated { .. })),
        "{e:?}"
    );
    assert!(matches!(
        install_from_reader(
            &mut Installer::new(policy(&keys), &mut window()),
            &mut store,
            &mut &f[..],
            &mut []
        ),
        Err(ReadInstallError::EmptyBuffer)
    ));
}

#[test]
fn writer_refuses_what_the_installer_would() {
    use agent_core::write::{UpdateWriter, WriteError};
    let built = v1();
    let (commit_bytes, commit_id) = match built.ops.last().unwrap() {
        Op::Write(_, id, b) => (b.clone(), *id),
        _ => unreachable!(),
    };
    let file = file_object(b"z");
    let finish = |w: UpdateWriter| w.finish(None, &mut Vec::new());
    // No commit.
    let mut w = UpdateWriter::new(REF, None, commit_id, TS, "1.0", "s");
    w.write_object(ObjectKind::File, ObjectId::of(&file), &file)
        .unwrap();
    assert!(matches!(finish(w), Err(WriteError::NoCommit)));
    // Something after the commit.
    let mut w = UpdateWriter::new(REF, None, commit_id, TS, "1.0", "s");
    w.write_object(ObjectKind::Commit, commit_id, &commit_bytes)
        .unwrap();
    w.write_object(ObjectKind::File, ObjectId::of(&file), &file)
        .unwrap();
    assert!(matches!(finish(w), Err(WriteError::CommitNotLast)));
    // Another commit than the target; another timestamp.
    let mut w = UpdateWriter::new(REF, None, ObjectId([1; 32]), TS, "1.0", "s");
    w.write_object(ObjectKind::Commit, commit_id, &commit_bytes)
        .unwrap();
    assert!(matches!(finish(w), Err(WriteError::CommitNotTarget { .. })));
    let mut w = UpdateWriter::new(REF, None, commit_id, TS + 1, "1.0", "s");
    w.write_object(ObjectKind::Commit, commit_id, &commit_bytes)
        .unwrap();
    assert!(
        matches!(finish(w), Err(WriteError::MetaMismatch { writer, commit }) if writer == TS + 1 && commit == TS)
    );
    // Bad ref; bytes that do not hash to the id; a reader that ends early.
    let mut w = UpdateWriter::new("", None, commit_id, TS, "1.0", "s");
    w.write_object(ObjectKind::Commit, commit_id, &commit_bytes)
        .unwrap();
    assert!(matches!(finish(w), Err(WriteError::BadRef)));
    // The streaming path (redeflate records off) has spooled part of the object: the writer
    // refuses to go on.
    let mut w = UpdateWriter::new(REF, None, commit_id, TS, "1.0", "s").redeflate(false);
    assert!(w
        .write_object(ObjectKind::File, ObjectId([1; 32]), &file)
        .is_err());
    let e = w.write_object_from(
        ObjectKind::File,
        ObjectId::of(&file),
        file.len() as u64 + 1,
        &mut &file[..],
    );
    assert_eq!(e.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    w.write_object(ObjectKind::Commit, commit_id, &commit_bytes)
        .unwrap_err();
    // With redeflate records on (the default, xz parts), a file object whose content is not
    // gzip streams as before (the same error); a gzip one up to 64 MiB is read whole before
    // anything is spooled (the same error, and the writer goes on).
    let mut w = UpdateWriter::new(REF, None, commit_id, TS, "1.0", "s");
    let e = w.write_object_from(
        ObjectKind::File,
        ObjectId::of(&file),
        file.len() as u64 + 1,
        &mut &file[..],
    );
    assert_eq!(e.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    w.write_object(ObjectKind::Commit, commit_id, &commit_bytes)
        .unwrap_err();
    let gz = file_object(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03not deflate");
    let mut w = UpdateWriter::new(REF, None, commit_id, TS, "1.0", "s");
    let e = w.write_object_from(
        ObjectKind::File,
        ObjectId::of(&gz),
        gz.len() as u64 + 1,
        &mut &gz[..],
    );
    assert_eq!(e.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    w.write_object(ObjectKind::Commit, commit_id, &commit_bytes)
        .unwrap();
}

#[test]
fn many_small_objects_share_parts_and_large_ones_get_their_own() {
    use agent_core::wire::{Superblock, MAX_PARTS};
    // 300 small files, one 200 KB file.
    let mut t = Tree::default().file("large", vec![7u8; 200_000]);
    for i in 0..300 {
        t = t.file(&format!("f{i:03}"), format!("file number {i}\n"));
    }
    let built = build(&t, None, TS, &HashSet::new());
    let parts_of = |f: &[u8]| {
        let n = u32::from_le_bytes(f[12..16].try_into().unwrap()) as usize;
        Superblock::parse_version(&f[16..16 + n], u16::from_le_bytes([f[8], f[9]]))
            .unwrap()
            .parts
            .to_vec()
    };
    for codec in [Codec::Deflate, Codec::Xz] {
        let f = write_update_codec(&built, None, None, 16 * 1024, codec);
        let parts = parts_of(&f);
        let big = parts
            .iter()
            .filter(|p| p.uncompressed_size > 100_000)
            .collect::<Vec<_>>();
        assert_eq!(big.len(), 1);
        assert_eq!(big[0].ops, 1, "the large file is alone in its part");
        assert!(parts
            .iter()
            .all(|p| p.uncompressed_size <= 16 * 1024 || p.ops == 1));
        assert!(parts.iter().any(|p| p.ops > 50), "small files are grouped");
        assert!(parts.iter().all(|p| p.codec == codec));
        install_all(
            &mut MemStore::default(),
            &f,
            Policy::require(&[]).allow_unsigned(),
        )
        .unwrap();
        // A tiny part size would need hundreds of parts: the writer raises it to stay within MAX_PARTS.
        let f = write_update_codec(&built, None, None, 64, codec);
        let parts = parts_of(&f);
        assert!(
            parts.len() <= MAX_PARTS && parts.len() > 8,
            "{}",
            parts.len()
        );
        install_all(
            &mut MemStore::default(),
            &f,
            Policy::require(&[]).allow_unsigned(),
        )
        .unwrap();
    }
}

/// Yields `len` bytes of a repeating, mildly compressible pattern without holding them.
struct Pattern {
    left: u64,
    state: u32,
}

impl std::io::Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = b"abcdefgh"[(self.state >> 29) as usize];
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A 100 MiB file object streamed through the writer and the installer, never held whole.
#[test]
fn hundred_mib_object_streams_through() {
    use agent_core::object::{FileHeader, FILE_HEADER_LEN, S_IFREG};
    use agent_core::write::UpdateWriter;
    use sha2::Sha256;
    const LEN: u64 = 100 << 20;
    let h = FileHeader {
        mode: S_IFREG | 0o644,
        uid: 0,
        gid: 0,
        size: LEN,
        target_len: 0,
        xattrs_len: 0,
    };
    let mut head = [0u8; FILE_HEADER_LEN];
    h.emit(&mut head);
    let mut hasher = Sha256::new();
    hasher.update(head);
    std::io::copy(
        &mut Pattern {
            left: LEN,
            state: 1,
        },
        &mut HashWriter(&mut hasher),
    )
    .unwrap();
    let fid = ObjectId(hasher.finalize().into());
    let tree = dirtree_object(&[DirEntry::File {
        name: b"big",
        id: fid,
    }]);
    let meta = dirmeta_object();
    let commit = commit_object(None, TS, ObjectId::of(&tree), ObjectId::of(&meta), "1.0");
    let to = ObjectId::of(&commit);

    let t0 = std::time::Instant::now();
    let mut w = UpdateWriter::new(REF, None, to, TS, "1.0", "big").compression(1);
    let mut reader = std::io::Read::chain(
        &head[..],
        Pattern {
            left: LEN,
            state: 1,
        },
    );
    w.write_object_from(
        ObjectKind::File,
        fid,
        FILE_HEADER_LEN as u64 + LEN,
        &mut reader,
    )
    .unwrap();
    w.write_object(ObjectKind::DirTree, ObjectId::of(&tree), &tree)
        .unwrap();
    w.write_object(ObjectKind::DirMeta, ObjectId::of(&meta), &meta)
        .unwrap();
    w.write_object(ObjectKind::Commit, to, &commit).unwrap();
    let mut out = Vec::new();
    let s = w.finish(Some(&SEED), &mut out).unwrap();
    assert!(s.bytes < LEN / 2, "{} bytes", s.bytes);

    /// Keeps only the sizes, like a flash store would.
    #[derive(Default)]
    struct Sizes(
        std::collections::HashMap<ObjectId, u64>,
        Option<(ObjectId, u64)>,
        bool,
    );
    impl agent_core::store::Store for Sizes {
        type Error = Infallible;
        fn has_commit(&mut self, _: &ObjectId) -> Result<bool, Infallible> {
            Ok(false)
        }
        fn has_object(&mut self, _: ObjectKind, id: &ObjectId) -> Result<bool, Infallible> {
            Ok(self.0.contains_key(id))
        }
        fn begin_object(&mut self, _: ObjectKind, id: &ObjectId, _: u64) -> Result<(), Infallible> {
            self.1 = Some((*id, 0));
            Ok(())
        }
        fn write_object(&mut self, d: &[u8]) -> Result<(), Infallible> {
            self.1.as_mut().unwrap().1 += d.len() as u64;
            Ok(())
        }
        fn finish_object(&mut self) -> Result<(), Infallible> {
            let (id, n) = self.1.take().unwrap();
            self.0.insert(id, n);
            Ok(())
        }
        fn abort_object(&mut self) {}
        fn reuse_object(&mut self, _: ObjectKind, _: &ObjectId) -> Result<bool, Infallible> {
            Ok(false)
        }
        fn commit(&mut self, _: &str, _: &ObjectId) -> Result<(), Infallible> {
            self.2 = true;
            Ok(())
        }
        fn abort(&mut self) {}
    }
    let t1 = std::time::Instant::now();
    let keys = [public_key(&SEED)];
    let mut store = Sizes::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    for chunk in out.chunks(4096) {
        let _ = inst.feed(&mut store, chunk).unwrap();
    }
    assert_eq!(inst.finish(&mut store).unwrap().commit, to);
    let mib = LEN as f64 / (1 << 20) as f64;
    eprintln!(
        "100 MiB object: file {} bytes; write {:.0} MiB/s, install {:.0} MiB/s (4 KiB chunks)",
        out.len(),
        mib / (t1 - t0).as_secs_f64(),
        mib / t1.elapsed().as_secs_f64()
    );
    assert!(store.2);
    assert_eq!(store.0[&fid], FILE_HEADER_LEN as u64 + LEN);
}

struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The worked example of docs/FORMAT.md: a signed from-scratch update of a tree holding one
/// file, `hello` = "hi\n", written uncompressed so that it reads well.
fn format_example() -> (Vec<u8>, Vec<(&'static str, usize)>) {
    use agent_core::write::UpdateWriter;
    let file = file_object(b"hi\n");
    let fid = ObjectId::of(&file);
    let tree = dirtree_object(&[DirEntry::File {
        name: b"hello",
        id: fid,
    }]);
    let meta = dirmeta_object();
    let commit = agent_core::object::Commit {
        parent: None,
        timestamp: 1_700_000_000,
        root_tree: ObjectId::of(&tree),
        root_meta: ObjectId::of(&meta),
        version: "1",
        subject: "demo",
        body: "",
        security_version: 1,
    }
    .to_vec()
    .unwrap();
    let to = ObjectId::of(&commit);
    let mut w = UpdateWriter::new("ecu/demo", None, to, 1_700_000_000, "1", "demo")
        .codec(Codec::Deflate)
        .format_version(3)
        .compression(0);
    w.write_object(ObjectKind::File, fid, &file).unwrap();
    w.write_object(ObjectKind::DirTree, ObjectId::of(&tree), &tree)
        .unwrap();
    w.write_object(ObjectKind::DirMeta, ObjectId::of(&meta), &meta)
        .unwrap();
    w.write_object(ObjectKind::Commit, to, &commit).unwrap();
    let mut out = Vec::new();
    w.finish(Some(&SEED), &mut out).unwrap();
    let sb_len = u32::from_le_bytes(out[12..16].try_into().unwrap()) as usize;
    let sections = vec![
        ("header", 16),
        ("superblock", sb_len),
        ("signature", 65),
        ("part 0, record 0: Write file", 42 + file.len()),
        ("part 0, record 1: Write dirtree", 42 + tree.len()),
        ("part 0, record 2: Write dirmeta", 42 + meta.len()),
        ("part 0, record 3: Write commit", 42 + commit.len()),
    ];
    (out, sections)
}

/// docs/FORMAT.md shows the example byte for byte; this keeps it true.
#[test]
fn format_example_matches_the_spec() {
    let (file, sections) = format_example();
    let dump = hex_dump(&file, &sections);
    let keys = [public_key(&SEED)];
    install_all(&mut MemStore::default(), &file, policy(&keys)).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md");
    if std::env::var_os("PRINT_FORMAT_EXAMPLE").is_some() {
        println!("public key: {}", ObjectId(keys[0]));
        println!("{dump}");
    }
    let doc = std::fs::read_to_string(path).expect("docs/FORMAT.md");
    assert!(doc.contains(&dump), "the hex example in docs/FORMAT.md is out of date; run with PRINT_FORMAT_EXAMPLE=1 and paste");
}

fn xattr_block(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in entries {
        b.push(n.len() as u8);
        b.extend_from_slice(n);
        b.extend_from_slice(&(v.len() as u16).to_le_bytes());
        b.extend_from_slice(v);
    }
    b
}

/// A file (or symlink) object with an xattr block, and a dirmeta with one.
fn with_xattrs(block: &[u8], target: Option<&str>, content: &[u8]) -> Vec<u8> {
    use agent_core::object::{FileHeader, FILE_HEADER_LEN, S_IFLNK, S_IFREG};
    let (mode, t) = match target {
        Some(t) => (S_IFLNK | 0o777, t.as_bytes()),
        None => (S_IFREG | 0o600, &b""[..]),
    };
    let h = FileHeader {
        mode,
        uid: 1,
        gid: 2,
        size: content.len() as u64,
        target_len: t.len() as u16,
        xattrs_len: block.len() as u16,
    };
    let mut b = vec![0u8; FILE_HEADER_LEN];
    h.emit(&mut b);
    b.extend_from_slice(t);
    b.extend_from_slice(block);
    b.extend_from_slice(content);
    b
}

fn one_file_update(file: &[u8], meta: &[u8]) -> Vec<u8> {
    let (r, to) = one_file_records(file, b"f", meta, |t, m| {
        commit_object(None, TS, t, m, "1.0")
    });
    fresh_update(to, TS, 4, &[RawPart::deflate(r, 4)], None)
}

#[test]
fn xattr_blocks_are_checked_as_they_stream() {
    use agent_core::object::{DirMeta, FileObject, Xattrs, S_IFDIR};
    let p = Policy::require(&[]).allow_unsigned();
    let good = xattr_block(&[
        (b"security.selinux", b"system_u:object_r:etc_t:s0\0"),
        (b"user.a", b""),
        (b"user.b", b"xyz"),
    ]);
    assert!(Xattrs::parse(&good).is_ok());
    let dirmeta = |block: &[u8]| {
        let mut b = (S_IFDIR | 0o700).to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&(block.len() as u16).to_le_bytes());
        b.extend_from_slice(block);
        if let Ok(x) = Xattrs::parse(block) {
            assert_eq!(DirMeta::parse(&b).unwrap().xattrs, x);
        }
        b
    };
    for (file, meta) in [
        (with_xattrs(&good, None, b"content"), dirmeta(&good)),
        (with_xattrs(&good, Some("target"), b""), dirmeta(&[])),
        (with_xattrs(&[], None, b""), dirmeta(&good)),
    ] {
        assert!(FileObject::parse(&file).is_ok());
        for sizes in [&[1usize][..], &[5], &[100_000]] {
            let f = one_file_update(&file, &meta);
            lent!(win, xz);
            let mut inst = Installer::new(p, win).with_xz(xz);
            install_chunks(&mut inst, &mut MemStore::default(), &f, sizes).unwrap();
        }
    }
    let meta = dirmeta(&[]);
    let bad_blocks: Vec<Vec<u8>> = vec![
        xattr_block(&[(b"user.b", b""), (b"user.a", b"")]), // unsorted
        xattr_block(&[(b"user.a", b""), (b"user.a", b"")]), // repeated
        xattr_block(&[(b"", b"v")]),                        // empty name
        xattr_block(&[(b"user\0a", b"v")]),                 // NUL in the name
        {
            // A value running past the end of the block.
            let mut b = xattr_block(&[(b"user.a", b"xyz")]);
            b.pop();
            b
        },
        (0..33)
            .flat_map(|i| xattr_block(&[(format!("user.{i:02}").as_bytes(), b"")]))
            .collect(), // 33 entries
    ];
    for block in bad_blocks {
        assert!(Xattrs::parse(&block).is_err());
        let file = with_xattrs(&block, None, b"c");
        let f = one_file_update(&file, &meta);
        for sizes in [&[1usize][..], &[100_000]] {
            let e = install_chunks(
                &mut Installer::new(p, &mut window()),
                &mut MemStore::default(),
                &f,
                sizes,
            )
            .unwrap_err();
            assert_eq!(
                e,
                InstallError::Object {
                    kind: ObjectKind::File,
                    id: ObjectId::of(&file),
                    error: ObjectError::BadXattrs
                },
                "{block:?}"
            );
        }
        // The same block in a dirmeta.
        let m = dirmeta(&block);
        let f = one_file_update(&with_xattrs(&[], None, b""), &m);
        let e = install_all(&mut MemStore::default(), &f, p).unwrap_err();
        assert_eq!(
            e,
            InstallError::Object {
                kind: ObjectKind::DirMeta,
                id: ObjectId::of(&m),
                error: ObjectError::BadXattrs
            }
        );
    }
}

#[test]
fn commit_texts_must_be_utf8() {
    let good = |root_tree, root_meta| {
        agent_core::object::Commit {
            parent: None,
            timestamp: TS,
            root_tree,
            root_meta,
            version: "1",
            subject: "ünïcode subject",
            body: "body ✓",
            security_version: 0,
        }
        .to_vec()
        .unwrap()
    };
    // The encoding's length does not depend on the root ids.
    let len = good(ObjectId([0; 32]), ObjectId([0; 32])).len();
    let subject_at = 105 + 2 + 2;
    for (at, field) in [
        (106, "version"),
        (subject_at, "subject"),
        (subject_at + 1, "subject"),
        (len - 1, "body"),
    ] {
        let (r, to) = records_with_commit(|t, m| {
            let mut commit = good(t, m);
            commit[at] = 0xff;
            commit
        });
        let f = fresh_update(to, TS, 4, &[RawPart::stored(r, 4)], None);
        for sizes in [&[1usize][..], &[100_000]] {
            let e = install_chunks(
                &mut Installer::new(Policy::require(&[]).allow_unsigned(), &mut window()),
                &mut MemStore::default(),
                &f,
                sizes,
            );
            assert_eq!(
                e,
                Err(InstallError::Object {
                    kind: ObjectKind::Commit,
                    id: to,
                    error: ObjectError::NotUtf8(field)
                }),
                "{at}"
            );
        }
    }
}

/// A store that fails its `n`th call of `write_object` (or `commit`).
struct Failing {
    inner: MemStore,
    writes_left: u32,
    fail_commit: bool,
}

impl agent_core::store::Store for Failing {
    type Error = &'static str;
    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, &'static str> {
        Ok(self.inner.has_commit(id).unwrap())
    }
    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, &'static str> {
        Ok(self.inner.has_object(kind, id).unwrap())
    }
    fn begin_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        len: u64,
    ) -> Result<(), &'static str> {
        self.inner
            .begin_object(kind, id, len)
            .map_err(|e| match e {})
    }
    fn write_object(&mut self, data: &[u8]) -> Result<(), &'static str> {
        if self.writes_left == 0 {
            return Err("disk full");
        }
        self.writes_left -= 1;
        self.inner.write_object(data).map_err(|e| match e {})
    }
    fn finish_object(&mut self) -> Result<(), &'static str> {
        self.inner.finish_object().map_err(|e| match e {})
    }
    fn abort_object(&mut self) {
        self.inner.abort_object()
    }
    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, &'static str> {
        Ok(self.inner.reuse_object(kind, id).unwrap())
    }
    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, &'static str> {
        Ok(self.inner.tree_depth(id).unwrap())
    }
    fn commit(&mut self, r: &str, id: &ObjectId) -> Result<(), &'static str> {
        if self.fail_commit {
            return Err("commit failed");
        }
        self.inner.commit(r, id).map_err(|e| match e {})
    }
    fn abort(&mut self) {
        self.inner.abort()
    }
}

#[test]
fn store_errors_abort_the_install() {
    let keys = [public_key(&SEED)];
    let f = write_update(&v1(), None, Some(&SEED), 4096);
    for writes in [0, 1, 3, 6] {
        let mut store = Failing {
            inner: MemStore::default(),
            writes_left: writes,
            fail_commit: false,
        };
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let e = inst.feed(&mut store, &f).unwrap_err();
        assert_eq!(e, InstallError::Store("disk full"));
        assert_eq!(e.to_string(), "the store failed: disk full");
        // The open object was dropped before the install was (MemStore asserts the order).
        assert_eq!(store.inner.log.last().map(String::as_str), Some("abort"));
        assert_eq!(
            store.inner.log.iter().rev().nth(1).map(String::as_str),
            Some("abort_object")
        );
        assert_eq!(store.inner.commit_calls, 0);
    }
    let mut store = Failing {
        inner: MemStore::default(),
        writes_left: u32::MAX,
        fail_commit: true,
    };
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    assert!(inst.feed(&mut store, &f).unwrap().done);
    assert_eq!(
        inst.finish(&mut store),
        Err(InstallError::Store("commit failed"))
    );
    assert_eq!(store.inner.abort_calls, 1);
    assert_eq!(inst.finish(&mut store), Err(InstallError::Failed));
}

/// `Store::part_verified` comes after each part, before anything of the next part, and the
/// objects of a part whose hash does not match are never covered by it.
#[test]
fn each_part_is_verified_before_the_next_reaches_the_store() {
    let keys = [public_key(&SEED)];
    let built = v1();
    let file = write_update(&built, None, Some(&SEED), 256);
    let mut s = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    install_chunks(&mut inst, &mut s, &file, &[7]).unwrap();
    let parts = inst.superblock_info().unwrap().parts;
    assert!(parts >= 3, "{parts} parts");
    assert_eq!(s.part_verified_calls, parts);
    // The log: every part's objects, then `part_verified`; the last one right before commit.
    let pos: Vec<usize> = (0..s.log.len())
        .filter(|&i| s.log[i] == "part_verified")
        .collect();
    assert_eq!(pos.len(), parts as usize);
    assert_eq!(*pos.last().unwrap() + 1, s.log.len() - 1);
    assert!(s.log.last().unwrap().starts_with("commit "));
    for w in pos.windows(2) {
        assert!(w[1] > w[0] + 1, "a part with no store call: {:?}", s.log);
    }

    // Part 1's hash altered in the superblock (unsigned, so the signature does not stop it):
    // part 0 is verified, part 1's objects finish (each hashes to its id) but are never
    // covered, and nothing is committed.
    let unsigned = write_update(&built, None, None, 256);
    let n = u32::from_le_bytes(unsigned[12..16].try_into().unwrap()) as usize;
    let mut sb = agent_core::wire::Superblock::parse_version(
        &unsigned[16..16 + n],
        u16::from_le_bytes([unsigned[8], unsigned[9]]),
    )
    .unwrap();
    sb.parts[1].sha256[0] ^= 1;
    let mut bad = unsigned.clone();
    assert_eq!(sb.emit(&mut bad[16..16 + n]).unwrap().len(), n);
    let mut s = MemStore::default();
    let err = install_all(&mut s, &bad, Policy::require(&[]).allow_unsigned());
    assert_eq!(err, Err(InstallError::PartHash { part: 1 }));
    assert_eq!(s.part_verified_calls, 1);
    let first = s.log.iter().position(|l| l == "part_verified").unwrap();
    assert!(
        s.log[first + 1..].iter().any(|l| l.starts_with("finish ")),
        "part 1 finished no object before its hash failed: {:?}",
        s.log
    );
    s.assert_failed_cleanly();
}

#[test]
fn files_below_the_floor_are_refused_naming_both_numbers() {
    let keys = [public_key(&SEED)];
    // A format-version-1 file counts as security version 0.
    let signed = write_update(&v1(), None, Some(&SEED), 4096);
    let want = InstallError::BelowFloor {
        security_version: 0,
        floor: 1,
    };
    refused_at_the_superblock(&signed, policy(&keys).with_floor(1), &want);
    let msg = want.to_string();
    assert!(msg.contains(" 0 ") && msg.contains(" 1;"), "{msg}");
    let mut s = MemStore::default();
    let installed = install_all(&mut s, &signed, policy(&keys).with_floor(0)).unwrap();
    s.assert_committed(&installed.commit);
}

/// A chain of `levels` directories named `d` below a root (the root is `levels` deep), each
/// level with one file, optionally ending in a reused dirtree `reuse` instead of an empty one.
fn chain(levels: u16, parent: Option<ObjectId>, ts: u64, reuse: Option<ObjectId>) -> Built {
    let mut ops = Vec::new();
    let meta = dirmeta_object();
    let meta_id = ObjectId::of(&meta);
    let file = file_object(b"leaf\n");
    let file_id = ObjectId::of(&file);
    ops.push(Op::Write(ObjectKind::File, file_id, file));
    ops.push(Op::Write(ObjectKind::DirMeta, meta_id, meta));
    let mut below = match reuse {
        Some(t) => {
            ops.push(Op::Reuse(ObjectKind::DirTree, t));
            Some(t)
        }
        None => None,
    };
    let mut ids: HashSet<ObjectId> = [file_id, meta_id].into();
    for _ in 0..=levels {
        let mut entries = Vec::new();
        if let Some(t) = below {
            entries.push(agent_core::object::DirEntry::Dir {
                name: b"d",
                tree: t,
                meta: meta_id,
            });
        }
        entries.push(agent_core::object::DirEntry::File {
            name: b"f",
            id: file_id,
        });
        let bytes = dirtree_object(&entries);
        let id = ObjectId::of(&bytes);
        ops.push(Op::Write(ObjectKind::DirTree, id, bytes));
        ids.insert(id);
        below = Some(id);
    }
    let root = below.unwrap();
    let c = commit_object(parent, ts, root, meta_id, "1.0");
    let commit = ObjectId::of(&c);
    ops.push(Op::Write(ObjectKind::Commit, commit, c));
    ids.insert(commit);
    Built {
        ops,
        commit,
        timestamp: ts,
        ids,
    }
}

#[test]
fn trees_deeper_than_the_limit_are_refused_in_fixed_memory() {
    use agent_core::object::MAX_TREE_DEPTH;
    let keys = [public_key(&SEED)];
    // The limit itself installs, whatever the chunking.
    let at = chain(MAX_TREE_DEPTH, None, TS, None);
    let file = write_update(&at, None, Some(&SEED), 1 << 20);
    for sizes in [&[file.len()][..], &[7]] {
        let mut store = MemStore::default();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        install_chunks(&mut inst, &mut store, &file, sizes).unwrap();
        store.assert_committed(&at.commit);
        let root = store.depth_of(&root_of(&store, &at.commit)).unwrap();
        assert_eq!(root, MAX_TREE_DEPTH);
    }
    // One level more is refused, naming the depth and the limit, with nothing committed.
    let over = chain(MAX_TREE_DEPTH + 1, None, TS, None);
    let file = write_update(&over, None, Some(&SEED), 1 << 20);
    let mut store = MemStore::default();
    let err = install_all(&mut store, &file, policy(&keys)).unwrap_err();
    assert!(
        matches!(err, InstallError::TreeTooDeep { depth, max, .. } if depth == MAX_TREE_DEPTH + 1 && max == MAX_TREE_DEPTH),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("2049") && msg.contains("2048"), "{msg}");
    store.assert_failed_cleanly();
    // A delta that puts one directory above a reused tree at the limit is refused too: the
    // depth of a reused dirtree comes from the store.
    let mut store = MemStore::default();
    let file = write_update(&at, None, Some(&SEED), 1 << 20);
    install_all(&mut store, &file, policy(&keys)).unwrap();
    let top = root_of(&store, &at.commit);
    let delta = chain(0, Some(at.commit), TS + 1, Some(top));
    let file = write_update(&delta, Some(at.commit), Some(&SEED), 1 << 20);
    let err = install_all(&mut store, &file, policy(&keys)).unwrap_err();
    assert!(
        matches!(err, InstallError::TreeTooDeep { depth, .. } if depth == MAX_TREE_DEPTH + 1),
        "{err}"
    );
    assert!(!store.commits.contains(&delta.commit));
}

fn root_of(store: &MemStore, commit: &ObjectId) -> ObjectId {
    let c = &store.objects[&(ObjectKind::Commit, *commit)];
    agent_core::object::Commit::parse(c).unwrap().root_tree
}

/// The records of a minimal commit whose commit object is `commit_bytes(tree, meta)`.
fn records_with_commit(
    commit_bytes: impl Fn(ObjectId, ObjectId) -> Vec<u8>,
) -> (Vec<u8>, ObjectId) {
    one_file_records(&file_object(b"x"), b"f", &dirmeta_object(), commit_bytes)
}

/// An unsigned format-2 or -3 file turned into format 1: its superblock must have security
/// version 0, no filters and a 32 KiB window, which version 1 does not carry.
fn to_format_1(file: &[u8]) -> Vec<u8> {
    assert!(file[8..10] == [2, 0] || file[8..10] == [3, 0]);
    let n = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let sb = agent_core::wire::Superblock::parse_version(
        &file[16..16 + n],
        u16::from_le_bytes([file[8], file[9]]),
    )
    .unwrap();
    assert_eq!(sb.security_version, 0, "security version 0");
    assert_eq!(file[16 + n], 0, "unsigned");
    let mut v1 = vec![0u8; 32 * 1024];
    let m = sb.emit_version(&mut v1, 1).unwrap().len();
    let mut out = file[..16].to_vec();
    out[8] = 1;
    out[12..16].copy_from_slice(&(m as u32).to_le_bytes());
    out.extend_from_slice(&v1[..m]);
    out.extend_from_slice(&file[16 + n..]);
    out
}

#[test]
fn security_versions_are_reported_and_checked_against_the_floor() {
    let keys = [public_key(&SEED)];
    let built = build_sv(&sample_tree(), None, TS, &HashSet::new(), 5);
    let file = write_update(&built, None, Some(&SEED), 4096);
    assert_eq!(file[8..10], [3, 0], "the writer writes format version 3");
    for floor in [0, 4, 5] {
        let mut s = MemStore::default();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys).with_floor(floor), win).with_xz(xz);
        let installed = install_chunks(&mut inst, &mut s, &file, &[7]).unwrap();
        assert_eq!(installed.security_version, 5);
        let info = inst.superblock_info().unwrap();
        assert_eq!((info.security_version, info.format_version), (5, 3));
        s.assert_committed(&built.commit);
    }
    let want = InstallError::BelowFloor {
        security_version: 5,
        floor: 6,
    };
    refused_at_the_superblock(&file, policy(&keys).with_floor(6), &want);
    refused_at_the_superblock(
        &file,
        policy(&keys).with_floor(u64::MAX),
        &InstallError::BelowFloor {
            security_version: 5,
            floor: u64::MAX,
        },
    );
    let msg = want.to_string();
    assert!(
        msg.contains("security version 5") && msg.contains("floor 6"),
        "{msg}"
    );
}

#[test]
fn format_1_files_install_as_security_version_0() {
    let keys = [public_key(&SEED)];
    let v1_commit = v1();
    let old = write_update_format(&v1_commit, None, Some(&SEED), 4096, 1);
    assert_eq!(old[8..10], [1, 0]);
    let mut s = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    let installed = install_chunks(&mut inst, &mut s, &old, &[1]).unwrap();
    assert_eq!(installed.security_version, 0);
    let info = inst.superblock_info().unwrap();
    assert_eq!((info.security_version, info.format_version), (0, 1));
    s.assert_committed(&v1_commit.commit);
    refused_at_the_superblock(
        &old,
        policy(&keys).with_floor(1),
        &InstallError::BelowFloor {
            security_version: 0,
            floor: 1,
        },
    );
    // Format 1 and format 3 of the same commit install the same objects in the same order
    // (checkpoints name file offsets: format 3's superblock is longer). Deflate, which keeps
    // the records in the order written, as format 1 must.
    let new = write_update_codec(&v1_commit, None, Some(&SEED), 4096, Codec::Deflate);
    let mut s2 = MemStore::default();
    install_all(&mut s2, &new, policy(&keys)).unwrap();
    let calls = |log: &[String]| -> Vec<String> {
        log.iter()
            .filter(|l| !l.starts_with("checkpoint "))
            .cloned()
            .collect()
    };
    assert_eq!(calls(&s2.log), calls(&s.log));
    // A commit at a security version other than 0 cannot be written as format 1.
    let sv = build_sv(&sample_tree(), None, TS, &HashSet::new(), 2);
    let mut w = agent_core::write::UpdateWriter::new(REF, None, sv.commit, TS, "1.0", "s")
        .format_version(1);
    for op in &sv.ops {
        if let Op::Write(k, id, b) = op {
            w.write_object(*k, *id, b).unwrap();
        }
    }
    let err = w.finish(None, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            agent_core::write::WriteError::FormatVersion {
                version: 1,
                security_version: 2
            }
        ),
        "{err}"
    );
    // Unknown versions are still named precisely (4, redeflate records, and 5, reuse-entries
    // records, are known now).
    for v in [0u16, 6, 0xffff] {
        let mut f = new.clone();
        f[8..10].copy_from_slice(&v.to_le_bytes());
        refused_at_the_superblock(
            &f,
            policy(&keys),
            &InstallError::Format(FormatError::UnsupportedVersion(v)),
        );
    }
}

#[test]
fn commit_and_superblock_security_versions_must_agree() {
    let unsigned = Policy::require(&[]).allow_unsigned();
    let run = |file: &[u8]| {
        let mut s = MemStore::default();
        let r = install_all(&mut s, file, unsigned);
        assert_eq!(s.commit_calls, 0, "nothing committed");
        s.assert_failed_cleanly();
        r.unwrap_err()
    };
    // An update of `records` (commit `to`) whose superblock says security version `sv`.
    let at_superblock_sv = |to, records, sv| {
        raw_update(
            None,
            to,
            TS,
            4,
            &[RawPart::deflate(records, 4)],
            None,
            |sb, _| sb.security_version = sv,
        )
    };
    // Superblock 3, commit without a trailer (0).
    let (records, to) = records_with_commit(|t, m| commit_object(None, TS, t, m, "1.0"));
    let f = at_superblock_sv(to, records.clone(), 3);
    assert_eq!(
        run(&f),
        InstallError::SecurityVersionMismatch {
            superblock: 3,
            commit: 0
        }
    );
    // Superblock 3, commit 4.
    let (records4, to4) = records_with_commit(|t, m| commit_object_sv(None, TS, t, m, "1.0", 4));
    let f = at_superblock_sv(to4, records4.clone(), 3);
    let e = run(&f);
    assert_eq!(
        e,
        InstallError::SecurityVersionMismatch {
            superblock: 3,
            commit: 4
        }
    );
    let msg = e.to_string();
    assert!(msg.contains(" 3 ") && msg.contains(" 4;"), "{msg}");
    // A format-1 file (security version 0) carrying a commit at 4.
    let f = fresh_update(to4, TS, 4, &[RawPart::deflate(records4.clone(), 4)], None);
    assert_eq!(
        run(&to_format_1(&f)),
        InstallError::SecurityVersionMismatch {
            superblock: 0,
            commit: 4
        }
    );
    // Agreeing: installs, also as format 1 at 0.
    let f = at_superblock_sv(to4, records4, 4);
    let mut s = MemStore::default();
    assert_eq!(
        install_all(&mut s, &f, unsigned).unwrap().security_version,
        4
    );
    let f = fresh_update(to, TS, 4, &[RawPart::stored(records, 4)], None);
    let mut s = MemStore::default();
    assert_eq!(
        install_all(&mut s, &to_format_1(&f), unsigned)
            .unwrap()
            .security_version,
        0
    );
    // A trailer of 0 (a second encoding of a commit at 0) and a cut trailer are malformed.
    let (zero, to0) = records_with_commit(|t, m| {
        let mut c = commit_object(None, TS, t, m, "1.0");
        c.extend_from_slice(&[0; 8]);
        c
    });
    let f = fresh_update(to0, TS, 4, &[RawPart::stored(zero, 4)], None);
    assert_eq!(
        run(&f),
        InstallError::Object {
            kind: ObjectKind::Commit,
            id: to0,
            error: ObjectError::ZeroSecurityVersion
        }
    );
    let (cut, to_cut) = records_with_commit(|t, m| {
        let mut c = commit_object(None, TS, t, m, "1.0");
        c.extend_from_slice(&[4, 0, 0]);
        c
    });
    let f = fresh_update(to_cut, TS, 4, &[RawPart::stored(cut, 4)], None);
    assert_eq!(
        run(&f),
        InstallError::Object {
            kind: ObjectKind::Commit,
            id: to_cut,
            error: ObjectError::TrailingBytes(3)
        }
    );
}
