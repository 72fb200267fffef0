//! The flash A/B store through the calls an install makes: from scratch, delta, what is
//! copied, what is refused.
#![cfg(feature = "_test-flash")]

mod flash_common;

use agent_core::object::{self, ObjectId, ObjectKind};
use agent_core::store::flash::{FlashSlot, FlashStore, FlashStoreError, SlotInfo};
use agent_core::store::Store;
use flash_common::*;

fn slot_bytes(mem: &[u8], s: FlashSlot) -> Vec<u8> {
    let start = LAYOUT.start(s) as usize;
    mem[start..start + SLOT as usize].to_vec()
}

#[test]
fn from_scratch_then_delta_with_every_chunk_size() {
    let (v0, v1, v2) = commits();
    for chunk in [1, 7, 512, 1 << 20] {
        let mut mem = vec![0u8; DEVICE];
        provisioned(&mut mem, &v0);
        let a_before = slot_bytes(&mem, FlashSlot::A);
        let mut f = Nor::new(&mut mem);
        let (now, _) = update(
            &mut f,
            None,
            v1.commit,
            Payload::Ops(&ops(&v1, None)),
            chunk,
        )
        .unwrap();
        assert_eq!(slot_of(now), FlashSlot::B);
        assert_eq!(image_in(&mut f, FlashSlot::B), v1.image);
        // The active slot was only read.
        assert_eq!(slot_bytes(&mem, FlashSlot::A), a_before);

        let b_before = slot_bytes(&mem, FlashSlot::B);
        let mut f = Nor::new(&mut mem);
        let delta = ops(&v2, Some(&v1));
        assert!(
            delta.iter().filter(|o| matches!(o, Op::Reuse(..))).count() >= 3,
            "{delta:?}"
        );
        let (now, _) = update(
            &mut f,
            Some(v1.commit),
            v2.commit,
            Payload::Ops(&delta),
            chunk,
        )
        .unwrap();
        assert_eq!(slot_of(now), FlashSlot::A);
        assert_eq!(image_in(&mut f, FlashSlot::A), v2.image);
        // Every object of v2 is in slot A, including those reused from slot B.
        let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
        let info: SlotInfo = store.verify_slot(FlashSlot::A).unwrap().unwrap();
        assert_eq!(info.objects as usize, v2.objects.len());
        drop(store);
        assert_eq!(slot_bytes(&mem, FlashSlot::B), b_before);
    }
}

#[test]
fn delta_needs_its_source_and_reuse_of_unknown_is_refused() {
    let (v0, v1, _) = commits();
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let mut f = Nor::new(&mut mem);
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    assert!(store.has_commit(&v0.commit).unwrap());
    assert!(!store.has_commit(&v1.commit).unwrap());
    assert!(!store
        .reuse_object(ObjectKind::File, &ObjectId([7; 32]))
        .unwrap());
    assert!(!store
        .has_object(ObjectKind::File, &ObjectId([7; 32]))
        .unwrap());
    // A reused file of v0 is copied.
    let (k, id) = v0
        .objects
        .keys()
        .find(|(k, _)| *k == ObjectKind::File.code())
        .map(|(k, i)| (*k, *i))
        .unwrap();
    assert!(store.reuse_object(ObjectKind::from_code(k), &id).unwrap());
    assert!(store.has_object(ObjectKind::File, &id).unwrap());
}

#[test]
fn object_with_wrong_bytes_is_not_indexed_and_commit_without_image_fails() {
    let (v0, v1, _) = commits();
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let mut f = Nor::new(&mut mem);
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    let id = ObjectId::of(b"abc");
    store.begin_object(ObjectKind::File, &id, 3).unwrap();
    store.write_object(b"abd").unwrap();
    assert!(matches!(
        store.finish_object(),
        Err(FlashStoreError::Verify { .. })
    ));
    assert!(!store.has_object(ObjectKind::File, &id).unwrap());
    // Sequence errors instead of panics.
    assert!(matches!(
        store.write_object(b"x"),
        Err(FlashStoreError::Sequence(_))
    ));
    store.begin_object(ObjectKind::File, &id, 3).unwrap();
    assert!(matches!(
        store.write_object(b"abcd"),
        Err(FlashStoreError::Sequence(_))
    ));
    store.abort_object();
    // Commit of a commit object that was never written.
    assert!(matches!(
        store.commit("r", &v1.commit),
        Err(FlashStoreError::MissingCommit(_))
    ));
    store.abort();
    assert_eq!(store.staged(), None);
    // The old slot is still what boots.
    drop(store);
    let (slot, _, _) = boot(&mut f).unwrap();
    assert_eq!(slot_of(slot), FlashSlot::A);
    assert_eq!(image_in(&mut f, FlashSlot::A), v0.image);
}

#[test]
fn full_slot_is_refused_with_the_numbers() {
    let (v0, _, _) = commits();
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let mut f = Nor::new(&mut mem);
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    match store.begin_object(ObjectKind::File, &ObjectId::ZERO, u64::from(SLOT)) {
        Err(FlashStoreError::NoSpace { needed, free }) => assert!(needed > free, "{needed} {free}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.begin_object(ObjectKind::File, &ObjectId::ZERO, u64::MAX),
        Err(FlashStoreError::TooLarge { .. })
    ));
}

#[test]
fn torn_header_or_entry_makes_the_slot_invalid_or_corrupt() {
    let (v0, _, _) = commits();
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let a = LAYOUT.start(FlashSlot::A) as usize;
    // Flip a bit of the commit id in the header: CRC fails, the slot is not valid.
    let mut m2 = mem.clone();
    m2[a + 20] ^= 1;
    let mut f = Nor::new(&mut m2);
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    assert_eq!(store.slot_info(FlashSlot::A).unwrap(), None);
    assert!(!store.has_commit(&v0.commit).unwrap());
    // Flip a bit of an object: verify_slot says which.
    let mut m3 = mem.clone();
    m3[a + 200] ^= 1;
    let mut f = Nor::new(&mut m3);
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    assert!(store.slot_info(FlashSlot::A).unwrap().is_some());
    assert!(store.verify_slot(FlashSlot::A).is_err());
}

#[test]
fn bad_layouts_are_refused() {
    let mut mem = vec![0u8; DEVICE];
    let mut f = Nor::new(&mut mem);
    let mut l = LAYOUT;
    l.slots[1] = l.slots[0] + 2048;
    assert!(matches!(
        FlashStore::new(&mut f, l, FlashSlot::A),
        Err(FlashStoreError::Layout(_))
    ));
    let mut l = LAYOUT;
    l.slots[0] += 1;
    assert!(matches!(
        FlashStore::new(&mut f, l, FlashSlot::A),
        Err(FlashStoreError::Layout(_))
    ));
    let mut l = LAYOUT;
    l.slot_size = SLOT * 2;
    assert!(matches!(
        FlashStore::new(&mut f, l, FlashSlot::A),
        Err(FlashStoreError::Layout(_))
    ));
}

#[test]
fn store_ram_is_small_and_fixed() {
    let n = core::mem::size_of::<FlashStore<Nor<'static>>>();
    eprintln!("size_of FlashStore<NorModel> = {n}");
    // The look-up chain heads of both slots (2 bytes a bucket) come on top of the 1,400 B of
    // before (docs/FLASH.md): 504 B, as the 240 one-byte prints they replace.
    let chains = 2 * (2 * agent_core::store::flash::INDEX_BUCKETS + 12);
    assert!(n < 1400 + chains, "{n}");
}

#[test]
fn real_update_files_through_the_installer_in_bus_sized_blocks() {
    let (v0, v1, v2) = commits();
    let full = update_file(&v1, None);
    let delta = update_file(&v2, Some(&v1));
    // The image is patched: the delta is a small fraction of the full file.
    assert!(
        delta.len() * 8 < full.len(),
        "{} {}",
        delta.len(),
        full.len()
    );
    for chunk in [8, 64, 4093] {
        let mut mem = vec![0u8; DEVICE];
        provisioned(&mut mem, &v0);
        let mut f = Nor::new(&mut mem);
        let (now, _) = update(&mut f, None, v1.commit, Payload::File(&full), chunk).unwrap();
        assert_eq!(image_in(&mut f, slot_of(now)), v1.image);
        let (now, _) = update(
            &mut f,
            Some(v1.commit),
            v2.commit,
            Payload::File(&delta),
            chunk,
        )
        .unwrap();
        assert_eq!(slot_of(now), FlashSlot::A);
        assert_eq!(image_in(&mut f, FlashSlot::A), v2.image);
        // A flipped byte anywhere in the parts is refused, the booted slot stays as it was.
        let before = slot_bytes(f.bytes(), FlashSlot::A);
        let mut bad = update_file(&v1, None);
        let at = bad.len() * 2 / 3;
        bad[at] ^= 0x40;
        let r = update(&mut f, None, v1.commit, Payload::File(&bad), chunk);
        assert!(matches!(r, Err(StepError::Install(_))), "{r:?}");
        assert_eq!(slot_bytes(f.bytes(), FlashSlot::A), before);
        let (slot, kind, _) = boot(&mut f).unwrap();
        assert_eq!(
            (slot_of(slot), kind),
            (FlashSlot::A, bootloader_hooks::DecisionKind::Confirmed)
        );
    }
}

/// From scratch then delta on devices of other geometries: byte-writable (W = 1), 32-byte
/// words (as STM32H7), 256-byte pages with 4 KiB sectors.
fn other_geometry<const GW: usize, const GE: usize>() {
    use agent_core::store::flash::model::NorModel;
    use agent_core::store::flash::FlashLayout;
    let (_, v1, v2) = commits();
    let slot = (160 * 1024 / GE * GE) as u32;
    let layout = FlashLayout {
        slots: [0, slot],
        slot_size: slot,
    };
    let mut mem = vec![0u8; 2 * slot as usize];
    let mut f: NorModel<'_, GW, GE> = NorModel::new(&mut mem);
    f.erase_all();
    let mut store = FlashStore::new(&mut f, layout, FlashSlot::B).unwrap();
    install_file(&mut store, &update_file(&v1, None), 64).unwrap();
    assert_eq!(store.staged().unwrap().slot, FlashSlot::A);
    store.set_active(FlashSlot::A);
    install_file(&mut store, &update_file(&v2, Some(&v1)), 7).unwrap();
    let info = store.verify_slot(FlashSlot::B).unwrap().unwrap();
    assert_eq!(info.commit, v2.commit);
    let mut img = vec![0u8; info.image_len as usize];
    store.read_image(FlashSlot::B, 0, &mut img).unwrap();
    assert_eq!(img, v2.image);
    // The source slot still verifies with v1.
    assert_eq!(
        store.verify_slot(FlashSlot::A).unwrap().unwrap().commit,
        v1.commit
    );
}

#[test]
fn other_device_geometries() {
    other_geometry::<1, 4096>();
    other_geometry::<32, 8192>();
    other_geometry::<256, 4096>();
}

#[test]
fn an_update_larger_than_the_slot_is_refused_before_anything_is_written() {
    let (v0, _, _) = commits();
    // Three files that each fit a slot (192 KiB) but not together; noise barely compresses.
    let big = build(
        &dir(vec![
            ("firmware.bin", Node::File(noise(9, 70 * 1024))),
            ("a.bin", Node::File(noise(10, 70 * 1024))),
            ("b.bin", Node::File(noise(11, 70 * 1024))),
        ]),
        None,
        "big",
    );
    let file = update_file(&big, None);
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let before = mem.clone();
    let mut f = Nor::new(&mut mem);
    let stats = f.stats();
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    let err = install_file(&mut store, &file, 512).unwrap_err();
    match err {
        agent_core::InstallError::Store(FlashStoreError::SlotTooSmall { needed, slot_size }) => {
            assert_eq!(slot_size, SLOT);
            assert!(needed > u64::from(SLOT) && needed < 220 * 1024, "{needed}");
            let text = FlashStoreError::<()>::SlotTooSmall { needed, slot_size }.to_string();
            assert!(text.contains(&needed.to_string()) && text.contains(&SLOT.to_string()));
        }
        e => panic!("{e:?}"),
    }
    drop(store);
    let after = f.stats();
    assert_eq!((after.writes, after.erases), (stats.writes, stats.erases));
    assert!(f.bytes() == &before[..], "the flash changed");
    // What fits still installs.
    let (_, v1, _) = commits();
    let mut f = Nor::new(&mut mem);
    let file = update_file(&v1, None);
    let (now, _) = update(&mut f, None, v1.commit, Payload::File(&file), 512).unwrap();
    assert_eq!(image_in(&mut f, slot_of(now)), v1.image);
}

/// `read_object` serves the objects of the active slot (a delta's source), in any window, and
/// nothing of the slot being written.
#[test]
fn read_object_serves_the_active_slot() {
    let (v0, v1, _) = commits();
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let mut f = Nor::new(&mut mem);
    let mut store = FlashStore::new(&mut f, LAYOUT, FlashSlot::A).unwrap();
    let old = object::file_object(0o644, 0, 0, &v0.image);
    let old_id = ObjectId::of(&old);
    install_file(&mut store, &update_file(&v1, None), 64).unwrap();
    // Slot A (active) holds v0: its image object reads back whole in any window.
    for w in [1usize, 7, 128, 512, 100_000] {
        let mut got = Vec::new();
        let mut buf = vec![0u8; w];
        loop {
            let n = store
                .read_object(ObjectKind::File, &old_id, got.len() as u64, &mut buf)
                .unwrap()
                .unwrap();
            got.extend_from_slice(&buf[..n]);
            if n < w {
                break;
            }
        }
        assert_eq!(got, old, "window {w}");
    }
    let mut b = [0u8; 8];
    let past = store.read_object(ObjectKind::File, &old_id, 1 << 40, &mut b);
    assert_eq!(past.unwrap(), Some(0));
    // v1's image is in the inactive slot only: not a source.
    let new_id = ObjectId::of(&object::file_object(0o644, 0, 0, &v1.image));
    let r = store.read_object(ObjectKind::File, &new_id, 0, &mut b);
    assert_eq!(r.unwrap(), None);
    let r = store.read_object(ObjectKind::DirTree, &old_id, 0, &mut b);
    assert_eq!(r.unwrap(), None);
}
