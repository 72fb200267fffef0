//! Resumable installs on NOR flash (`docs/RESUME.md`, `docs/FLASH.md`): power cut at every
//! write and erase of an install (part boundaries and inside parts), then a reboot resumes
//! from the checkpoint the store kept in the slot, and the slot ends as after an uninterrupted
//! install; a second cut during the resumed install resumes again; another file's checkpoint
//! is ignored.

mod flash_common;

use agent_core::install::{InstallError, Installer, Policy};
use agent_core::object::ObjectId;
use agent_core::store::flash::model::NorModelError;
use agent_core::store::flash::{FlashSlot, FlashStore, FlashStoreError};
use flash_common::*;

type Err = InstallError<FlashStoreError<NorModelError>>;

/// Installs `file` into slot B (A active), `chunk` bytes at a time; with `resume`, from the
/// checkpoint the slot holds, seeking over the verified parts. Returns where it resumed.
fn install(
    f: &mut Nor<'_>,
    file: &[u8],
    chunk: usize,
    resume: bool,
) -> Result<(Option<u64>, ObjectId), Err> {
    let mut store = FlashStore::new(&mut *f, LAYOUT, FlashSlot::A).unwrap();
    let keys = [public_key()];
    let mut win = window();
    let mut inst = Box::new(Installer::new(Policy::require(&keys), &mut win));
    if resume {
        if let Some(cp) = store.saved_checkpoint().map_err(InstallError::Store)? {
            assert!(inst.resume(cp));
        }
    }
    let mut pos = 0;
    while pos < file.len() {
        let end = (pos + chunk).min(file.len());
        let p = inst.feed(&mut store, &file[pos..end])?;
        pos = end;
        if p.resume_offset.is_some_and(|o| o > pos as u64) {
            pos = inst.skip() as usize;
        }
    }
    let c = inst.finish(&mut store)?.commit;
    Ok((inst.progress().resume_offset, c))
}

/// Part boundaries of `file` (the possible resume offsets).
fn boundaries(file: &[u8]) -> Vec<u64> {
    let n = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let sb = agent_core::wire::Superblock::parse_version(
        &file[16..16 + n],
        u16::from_le_bytes([file[8], file[9]]),
    )
    .unwrap();
    let mut at = (16 + n + 1 + 64) as u64;
    let mut b: Vec<u64> = sb
        .parts
        .iter()
        .map(|p| {
            at += u64::from(p.size);
            at
        })
        .collect();
    b.pop();
    b
}

/// Slot B holds `to` completely: every object verifies, the image is `image`.
fn check(f: &mut Nor<'_>, to: &ObjectId, image: &[u8], what: &str) {
    let mut store = FlashStore::new(&mut *f, LAYOUT, FlashSlot::A).unwrap();
    let info = store
        .verify_slot(FlashSlot::B)
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
        .unwrap_or_else(|| panic!("{what}: slot B not valid"));
    assert_eq!(info.commit, *to, "{what}");
    drop(store);
    assert_eq!(image_in(f, FlashSlot::B), image, "{what}");
}

#[test]
fn power_cut_at_every_write_and_erase_resumes_at_the_last_verified_part() {
    let (v0, v1, _) = commits();
    let file = update_file(&v1, None);
    let bs = boundaries(&file);
    assert!(bs.len() >= 2, "{bs:?}");
    let mut base = vec![0u8; DEVICE];
    provisioned(&mut base, &v0);
    // The uninterrupted install, and how many flash operations it takes.
    let mut mem = base.clone();
    let mut f = Nor::new(&mut mem);
    assert_eq!(
        install(&mut f, &file, 64, false).unwrap(),
        (None, v1.commit)
    );
    let total = f.stats().ops;
    check(&mut f, &v1.commit, &v1.image, "uninterrupted");

    let mut resumed = Vec::new();
    for n in 0..total {
        let mut mem = base.clone();
        let mut f = Nor::new(&mut mem);
        f.cut_at(n);
        assert!(install(&mut f, &file, 64, false).is_err(), "cut {n}");
        f.power_on();
        let what = format!("cut at op {n} of {total}");
        let (at, c) = install(&mut f, &file, 333, true).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(c, v1.commit);
        if let Some(at) = at {
            assert!(
                bs.contains(&at),
                "{what}: resumed at {at}, not a part boundary"
            );
        }
        // Later cuts never resume earlier.
        if let (Some(prev), Some(at)) = (resumed.last().copied().flatten(), at) {
            assert!(at >= prev, "{what}: resumed at {at} after {prev}");
        }
        resumed.push(at);
        check(&mut f, &v1.commit, &v1.image, &what);
        // Every fifth cut: cut again during the resumed install, then resume again.
        if n % 5 == 0 {
            let mut mem = base.clone();
            let mut f = Nor::new(&mut mem);
            f.cut_at(n);
            let _ = install(&mut f, &file, 64, false);
            f.power_on();
            let second = f.stats().ops + (total - n) / 2 + 1;
            f.cut_at(second);
            let _ = install(&mut f, &file, 100, true);
            f.power_on();
            let (at2, c) = install(&mut f, &file, 512, true)
                .unwrap_or_else(|e| panic!("{what}, then again: {e}"));
            assert_eq!(c, v1.commit);
            if let (Some(a), Some(b)) = (at, at2) {
                assert!(b >= a, "{what}: second resume at {b} before {a}");
            }
            check(&mut f, &v1.commit, &v1.image, &format!("{what}, twice"));
        }
    }
    let n = resumed.iter().filter(|r| r.is_some()).count();
    let distinct: std::collections::BTreeSet<_> = resumed.iter().flatten().collect();
    eprintln!("{total} cut points, {n} resumed, at {distinct:?}");
    assert!(
        n > resumed.len() / 2,
        "only {n} of {} resumed",
        resumed.len()
    );
    assert_eq!(
        distinct.len(),
        bs.len(),
        "not every boundary was resumed at"
    );
}

#[test]
fn a_delta_resumes_too_and_chunk_sizes_do_not_matter() {
    let (v0, v1, v2) = commits();
    let full = update_file(&v1, None);
    let delta = update_file(&v2, Some(&v1));
    // v1 installed in B and booted: the delta goes into A.
    let mut base = vec![0u8; DEVICE];
    provisioned(&mut base, &v0);
    let mut f = Nor::new(&mut base);
    install(&mut f, &full, 4096, false).unwrap();
    let bs = boundaries(&delta);
    for chunk in [1usize, 7, 512, 64 * 1024, delta.len()] {
        for &cut in &[3u32, 17, 40] {
            let mut mem = base.clone();
            let mut f = Nor::new(&mut mem);
            let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::B).unwrap();
            let keys = [public_key()];
            store.flash().cut_at(cut);
            let mut win = window();
            let mut inst = Box::new(Installer::new(Policy::require(&keys), &mut win));
            let mut failed = false;
            for c in delta.chunks(chunk) {
                if inst.feed(&mut store, c).is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(failed || inst.finish(&mut store).is_err() || cut > 1000);
            store.flash().power_on();
            let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::B).unwrap();
            let cp = store.saved_checkpoint().unwrap();
            let mut win = window();
            let mut inst = Box::new(Installer::new(Policy::require(&keys), &mut win));
            if let Some(cp) = cp {
                assert!(inst.resume(cp));
            }
            for c in delta.chunks(chunk) {
                let _ = inst.feed(&mut store, c).unwrap();
            }
            assert_eq!(inst.finish(&mut store).unwrap().commit, v2.commit);
            if let Some(at) = inst.progress().resume_offset {
                assert!(bs.contains(&at));
            }
            let info = store.verify_slot(FlashSlot::A).unwrap().unwrap();
            assert_eq!(info.commit, v2.commit, "chunk {chunk} cut {cut}");
            drop(store);
            assert_eq!(image_in(&mut f, FlashSlot::A), v2.image);
        }
    }
}

#[test]
fn a_checkpoint_of_another_file_is_ignored() {
    let (v0, v1, v2) = commits();
    let f1 = update_file(&v1, None);
    let f2 = update_file(&v2, None);
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let mut f = Nor::new(&mut mem);
    // Interrupted late in v1's install: a checkpoint of v1 in slot B.
    f.cut_at(150);
    assert!(install(&mut f, &f1, 64, false).is_err());
    f.power_on();
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    let cp = store.saved_checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(cp.target, v1.commit);
    drop(store);
    // v2's file with v1's checkpoint: installed from its first part.
    let (at, c) = install(&mut f, &f2, 256, true).unwrap();
    assert_eq!((at, c), (None, v2.commit));
    check(&mut f, &v2.commit, &v2.image, "other file");
    // A staged slot offers no checkpoint.
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    assert_eq!(store.saved_checkpoint().unwrap(), None);
}
