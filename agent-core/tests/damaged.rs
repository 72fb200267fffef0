//! A failure inside a part of a damaged file is the damage: `Installer::check_part` hashes the
//! rest of the part and tells a damaged part from an intact one whose contents fail.

mod common;

use agent_core::install::{InstallError, Installer, PartCheck};
use agent_core::object::DirEntry;
use agent_core::wire::{Header, HEADER_LEN};
use agent_core::{ObjectId, ObjectKind};
use common::*;

/// Feeds `file` in chunks of `chunk` bytes until the installer fails, then the rest of the
/// file (from where it stopped) to `check_part` in the same chunks. Returns the failure and
/// the verdict; `None` when the install succeeds.
fn fail_and_check(
    inst: &mut Installer<'_>,
    file: &[u8],
    chunk: usize,
) -> Option<(InstallError<std::convert::Infallible>, PartCheck)> {
    inst.reset();
    let mut store = MemStore::default();
    let mut error = None;
    for c in file.chunks(chunk) {
        if let Err(e) = inst.feed(&mut store, c) {
            error = Some(e);
            break;
        }
    }
    let error = match error {
        Some(e) => e,
        None => match inst.finish(&mut store) {
            Ok(_) => return None,
            Err(e) => e,
        },
    };
    store.assert_failed_cleanly();
    let at = inst.progress().bytes as usize;
    let mut verdict = inst.check_part(&[]);
    for c in file[at..].chunks(chunk) {
        if verdict != PartCheck::NeedMore {
            break;
        }
        verdict = inst.check_part(c);
    }
    Some((error, verdict))
}

/// Where the single part of an unsigned file starts.
fn part_start(file: &[u8]) -> usize {
    let h = Header::new_checked(file).unwrap();
    HEADER_LEN + h.superblock_len() as usize + 1
}

/// Unsigned files (a signature check per flipped byte would only slow the test down).
fn unsigned() -> agent_core::install::Policy<'static> {
    agent_core::install::Policy::require(&[]).allow_unsigned()
}

#[test]
fn every_flipped_byte_of_a_part_is_damage_whatever_the_chunking() {
    let (records, ops, commit) = minimal_records(1_700_000_000);
    let file = fresh_update(
        commit,
        1_700_000_000,
        ops,
        &[RawPart::stored(records, ops)],
        None,
    );
    lent!(win, xz);
    let mut inst = Installer::new(unsigned(), win).with_xz(xz);
    assert!(
        fail_and_check(&mut inst, &file, file.len()).is_none(),
        "the file installs"
    );
    let start = part_start(&file);
    let mut not_hash = 0;
    for at in start..file.len() {
        let mut bad = file.clone();
        bad[at] ^= 0x10;
        let mut seen = None;
        for chunk in [1, 7, 512, bad.len()] {
            let (error, verdict) =
                fail_and_check(&mut inst, &bad, chunk).expect("a damaged file fails");
            assert_eq!(
                verdict,
                PartCheck::Damaged {
                    part: 0,
                    start: start as u64,
                    end: file.len() as u64,
                },
                "byte {at}, chunks of {chunk}: {error}"
            );
            // Chunking does not change the failure either.
            match &seen {
                None => seen = Some(error),
                Some(e) => assert_eq!(*e, error, "byte {at}, chunks of {chunk}"),
            }
        }
        if !matches!(seen, Some(InstallError::PartHash { .. })) {
            not_hash += 1;
        }
    }
    // Most flips fail inside the part, before its hash is checked (a name, an id, a length):
    // exactly what check_part is for.
    assert!(not_hash > 0);
}

#[test]
fn an_intact_part_whose_contents_fail_is_not_damage() {
    // A dirtree naming a file the update does not hold: the file is whole, its content is wrong.
    let absent = ObjectId::of(b"not in the update");
    let tree = dirtree_object(&[DirEntry::File {
        name: b"f",
        id: absent,
    }]);
    let meta = dirmeta_object();
    let commit = commit_object(
        None,
        1_700_000_000,
        ObjectId::of(&tree),
        ObjectId::of(&meta),
        "1.0",
    );
    let mut records = rec_obj(ObjectKind::DirTree, &tree);
    records.extend(rec_obj(ObjectKind::DirMeta, &meta));
    records.extend(rec_obj(ObjectKind::Commit, &commit));
    let file = fresh_update(
        ObjectId::of(&commit),
        1_700_000_000,
        3,
        &[RawPart::stored(records, 3)],
        None,
    );
    lent!(win, xz);
    let mut inst = Installer::new(unsigned(), win).with_xz(xz);
    for chunk in [1, 7, file.len()] {
        let (error, verdict) = fail_and_check(&mut inst, &file, chunk).unwrap();
        assert_eq!(
            error,
            InstallError::MissingObject {
                kind: ObjectKind::File,
                id: absent
            }
        );
        assert_eq!(verdict, PartCheck::Intact, "chunks of {chunk}");
    }
    // Before any failure, or for a failure outside the parts, there is nothing to check.
    inst.reset();
    assert_eq!(inst.check_part(&file), PartCheck::Intact);
    let mut store = MemStore::default();
    let mut junk = file.clone();
    junk[0] ^= 1;
    assert!(inst.feed(&mut store, &junk).is_err());
    assert_eq!(inst.check_part(&file), PartCheck::Intact);
}

#[test]
fn a_damaged_part_is_said_so() {
    let e: InstallError<std::convert::Infallible> = InstallError::PartHash { part: 2 };
    assert_eq!(
        e.to_string(),
        "the file is damaged: part 2 does not hash to the SHA-256 its superblock gives; get the file again"
    );
}
