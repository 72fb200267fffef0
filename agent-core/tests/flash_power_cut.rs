//! Power cut at every flash write and erase of an update (from scratch, then a delta), then a
//! reboot over the same flash: the boot decision must start a complete, verified slot (the old
//! commit before the boot record switched, the new one after), the old slot must be
//! byte-for-byte untouched, and the update started again must succeed. The updates are real
//! signed `.update` files fed to the installer in 64-byte pieces (a CAN FD frame). The device
//! has a non-zero anti-rollback floor in its boot record; after every cut the floor is the old
//! one or the new commit's security version, never lower, and the new one once it is confirmed.
#![cfg(feature = "_test-flash")]

mod flash_common;

use agent_core::object::ObjectId;
use agent_core::store::flash::{FlashSlot, FlashStore};
use bootloader_hooks::DecisionKind;
use flash_common::*;

/// Operations cut at most per scenario; above this an evenly spread sample is taken (the last
/// 200 operations, where the commit and the switch happen, are always all tried).
const MAX_CUTS: u32 = 4000;

struct Case<'a> {
    base: Vec<u8>,
    from: Option<ObjectId>,
    old: &'a Built,
    new: &'a Built,
    file: Vec<u8>,
}

fn slot_bytes(mem: &[u8], s: FlashSlot) -> Vec<u8> {
    let start = LAYOUT.start(s) as usize;
    mem[start..start + SLOT as usize].to_vec()
}

/// Boots, checks the slot booted holds `want` completely, marks it good when on trial.
fn boot_and_check(f: &mut Nor<'_>, want: &Built, cut: u32) -> FlashSlot {
    let (slot, kind, mut st) =
        boot(f).unwrap_or_else(|e| panic!("cut {cut}: no valid boot record: {e}"));
    let s = slot_of(slot);
    let mut store = FlashStore::new(&mut *f, LAYOUT, s).unwrap();
    let info = store
        .verify_slot(s)
        .unwrap_or_else(|e| panic!("cut {cut}: slot {s} does not verify: {e}"))
        .unwrap_or_else(|| panic!("cut {cut}: slot {s} booted without a valid header"));
    assert_eq!(
        info.commit, want.commit,
        "cut {cut}: slot {s} holds the wrong commit"
    );
    drop(store);
    assert_eq!(image_in(f, s), want.image, "cut {cut}: image differs");
    if kind == DecisionKind::Trial && st.mark_good(slot) {
        write_record(f, &st).unwrap();
    }
    s
}

fn run(case: &Case<'_>, label: &str) -> u32 {
    let (old_slot, old_floor) = {
        let mut mem = case.base.clone();
        let mut f = Nor::new(&mut mem);
        let (slot, _, st) = boot(&mut f).unwrap();
        (slot_of(slot), st.floor)
    };
    assert!(old_floor > 0, "{label}: the device has a floor");
    let new_floor = old_floor.max(case.new.security_version);
    assert!(
        new_floor > old_floor,
        "{label}: the update raises the floor"
    );
    let floor_is = |f: &mut Nor<'_>, want: &[u64], cut: u32| {
        let got = read_record(f).unwrap().floor;
        assert!(
            want.contains(&got),
            "cut {cut}: floor {got}, expected one of {want:?} (old {old_floor}, new {new_floor})"
        );
    };
    let old_bytes = slot_bytes(&case.base, old_slot);
    // Dry run: how many operations, and where the switch is.
    let mut mem = case.base.clone();
    let mut f = Nor::new(&mut mem);
    let (_, switch) = update(
        &mut f,
        case.from,
        case.new.commit,
        Payload::File(&case.file),
        64,
    )
    .unwrap();
    let total = f.stats().ops;
    let mut cuts: Vec<u32> = if total <= MAX_CUTS {
        (0..total).collect()
    } else {
        let tail = total.saturating_sub(200);
        let mut v: Vec<u32> = (0..MAX_CUTS - 200)
            .map(|i| (u64::from(i) * u64::from(tail) / u64::from(MAX_CUTS - 200)) as u32)
            .collect();
        v.extend(tail..total);
        v
    };
    cuts.dedup();
    let (mut old_boots, mut new_boots) = (0, 0);
    // Each operation is cut twice: halfway through (a torn write or a half-erased sector), and
    // just before it (the operations before it complete, nothing after).
    let points: Vec<(u32, bool)> = cuts.iter().flat_map(|&c| [(c, false), (c, true)]).collect();
    for &(cut, before) in &points {
        let mut mem = case.base.clone();
        let mut f = Nor::new(&mut mem);
        if before {
            f.cut_at_keeping(cut, 0);
        } else {
            f.cut_at(cut);
        }
        let r = update(
            &mut f,
            case.from,
            case.new.commit,
            Payload::File(&case.file),
            64,
        );
        assert!(
            r.is_err() && f.is_cut(),
            "cut {cut}: the update did not see the cut: {r:?}"
        );
        f.power_on();
        floor_is(&mut f, &[old_floor, new_floor], cut);
        // Reboot: old before the switch completed, new after.
        let want_new = cut > switch + 1;
        let want = if want_new { case.new } else { case.old };
        let booted = boot_and_check(&mut f, want, cut);
        let settled = if want_new { new_floor } else { old_floor };
        floor_is(&mut f, &[settled], cut);
        assert_eq!(
            booted == old_slot,
            !want_new,
            "cut {cut}: booted slot {booted}"
        );
        assert_eq!(
            slot_bytes(&mem, old_slot),
            old_bytes,
            "cut {cut}: the old slot was written"
        );
        let mut f = Nor::new(&mut mem);
        if want_new {
            new_boots += 1;
        } else {
            old_boots += 1;
            // The update started again succeeds.
            let (now, _) = update(
                &mut f,
                case.from,
                case.new.commit,
                Payload::File(&case.file),
                64,
            )
            .unwrap_or_else(|e| panic!("cut {cut}: the update run again failed: {e:?}"));
            assert_eq!(slot_of(now), old_slot.other());
        }
        // And the new commit boots, confirmed, from now on.
        assert_eq!(boot_and_check(&mut f, case.new, cut), old_slot.other());
        let (_, kind, _) = boot(&mut f).unwrap();
        assert_eq!(kind, DecisionKind::Confirmed, "cut {cut}");
        floor_is(&mut f, &[new_floor], cut);
    }
    println!(
        "{label}: {} flash operations, {} cut points tried, 2 per operation ({} booted the old commit, {} the new one)",
        total,
        points.len(),
        old_boots,
        new_boots
    );
    assert!(old_boots > 0 && new_boots > 0);
    points.len() as u32
}

#[test]
fn power_cut_at_every_write_and_erase() {
    let (v0, v1, v2) = commits();
    let mut base = vec![0u8; DEVICE];
    provisioned(&mut base, &v0);
    let scratch = Case {
        base: base.clone(),
        from: None,
        old: &v0,
        new: &v1,
        file: update_file(&v1, None),
    };
    let n1 = run(&scratch, "from scratch (v0 -> v1)");

    let mut after_v1 = base.clone();
    {
        let mut f = Nor::new(&mut after_v1);
        update(
            &mut f,
            None,
            v1.commit,
            Payload::File(&update_file(&v1, None)),
            4096,
        )
        .unwrap();
    }
    let delta = Case {
        base: after_v1,
        from: Some(v1.commit),
        old: &v1,
        new: &v2,
        file: update_file(&v2, Some(&v1)),
    };
    let n2 = run(&delta, "delta (v1 -> v2)");
    println!("cut points tried in total: {}", n1 + n2);
}
