//! Property tests: the decision and operations against a reference model, every encoding
//! round-tripped (in memory, and through fw_printenv/fw_setenv and grub-editenv), and torn
//! writes of one copy that must decode to the old or the new state.

mod common;

use std::process::Command;

use bootloader_hooks::uboot_env::{self, Env, Layout};
use bootloader_hooks::{
    flash_record, grub_env, BootState, DecisionKind, EnvRead, Flavor, MenderConfig, Operation,
    RaucConfig, Scheme, Slot, SlotName, SlotState, VarSet, MAX_TRIES,
};
use common::host::{Backend, BootEnv};
use common::*;
use proptest::prelude::*;

fn slot_name() -> impl Strategy<Value = SlotName> {
    prop_oneof![
        Just(SlotName::EMPTY),
        "[0-9a-f]{64}".prop_map(|s| SlotName::from_str(&s).unwrap()),
        "[A-Za-z0-9._:/+@,~-]{1,128}".prop_map(|s| SlotName::from_str(&s).unwrap()),
    ]
}

fn slot_state() -> impl Strategy<Value = SlotState> {
    (0u8..=9, 0u8..=MAX_TRIES, any::<bool>(), slot_name()).prop_map(
        |(priority, tries_left, successful, name)| SlotState {
            priority,
            tries_left,
            successful,
            name,
            // the environment schemes do not store it (see `versioned`)
            security_version: 0,
        },
    )
}

fn boot_state() -> impl Strategy<Value = BootState> {
    (slot_state(), slot_state(), any::<u32>()).prop_map(|(a, b, revision)| BootState {
        slots: [a, b],
        revision,
        floor: 0,
        ..Default::default()
    })
}

/// A state with an anti-rollback floor and slot security versions (what the flash record
/// stores and the environment schemes do not).
fn versioned() -> impl Strategy<Value = BootState> {
    (boot_state(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(mut s, f, a, b)| {
        s.floor = f;
        s.slots[0].security_version = a;
        s.slots[1].security_version = b;
        s
    })
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![Just(Slot::A), Just(Slot::B)]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (slot(), 0u8..=MAX_TRIES + 1, slot_name())
            .prop_map(|(slot, tries, name)| Operation::Stage { slot, tries, name }),
        slot().prop_map(|slot| Operation::MarkGood { slot }),
        slot().prop_map(|abandon| Operation::Rollback { abandon }),
        Just(Operation::Boot),
        Just(Operation::Boot),
        Just(Operation::Boot),
    ]
}

/// The decision written independently of the crate, as the issue states it.
fn reference_decide(s: &BootState) -> (Slot, Option<Slot>) {
    let (first, second) = if s.slots[1].priority > s.slots[0].priority {
        (Slot::B, Slot::A)
    } else {
        (Slot::A, Slot::B)
    };
    for c in [first, second] {
        let st = s.slot(c);
        if st.priority > 0 && st.successful {
            return (c, None);
        }
        if st.priority > 0 && st.tries_left > 0 {
            return (c, Some(c));
        }
    }
    (second, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decision_matches_reference(s in boot_state()) {
        let d = s.decide();
        let (slot, counted) = reference_decide(&s);
        prop_assert_eq!(d.slot, slot);
        prop_assert_eq!(d.changed, counted.is_some());
        let mut expect = s;
        if let Some(c) = counted {
            expect.slot_mut(c).tries_left -= 1;
        }
        prop_assert_eq!(d.state, expect);
        prop_assert_eq!(d.kind == DecisionKind::Confirmed, !d.changed && s.slot(d.slot).successful && s.slot(d.slot).priority > 0);
    }

    #[test]
    fn operation_sequences_keep_their_promises(start in boot_state(), ops in proptest::collection::vec(operation(), 1..40)) {
        let mut s = start;
        for op in ops {
            let before = s;
            match s.apply(&op) {
                Err(_) => prop_assert_eq!(s, before, "a refused operation changes nothing"),
                Ok(applied) => {
                    prop_assert_eq!(applied.changed, s != before);
                    if applied.changed && !matches!(op, Operation::Boot) {
                        prop_assert_eq!(s.revision, before.revision.wrapping_add(1));
                    } else {
                        prop_assert_eq!(s.revision, before.revision);
                    }
                    match op {
                        Operation::Stage { slot, tries, .. } => {
                            // the staged slot is tried exactly `tries` times, then never again
                            let mut t = s;
                            for _ in 0..tries {
                                let d = t.decide();
                                prop_assert_eq!((d.slot, d.kind), (slot, DecisionKind::Trial));
                                t = d.state;
                            }
                            for _ in 0..3 {
                                let d = t.decide();
                                prop_assert!(d.slot != slot || d.kind == DecisionKind::LastResort);
                                t = d.state;
                            }
                        }
                        Operation::MarkGood { slot } => {
                            // a slot marked good stays, and its reboots write nothing
                            let d = s.decide();
                            prop_assert_eq!((d.slot, d.kind, d.changed), (slot, DecisionKind::Confirmed, false));
                        }
                        Operation::Rollback { abandon } => {
                            prop_assert_eq!(s.decide().slot, abandon.other());
                        }
                        Operation::Boot => {
                            prop_assert_eq!(applied.decision.map(|d| d.state), Some(s));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn native_encodings_roundtrip(s in boot_state()) {
        let mut set = VarSet::new();
        // U-Boot
        let mut blank = vec![0u8; 0x1000];
        uboot_env::write(&mut blank, Layout::Single, 0, uboot_env::no_vars(), &VarSet::new()).unwrap();
        let env = Env::parse(&blank, Layout::Single).unwrap();
        Scheme::Native.encode(Flavor::UBoot, &s, &env, &mut set).unwrap();
        let mut buf = vec![0u8; 0x1000];
        uboot_env::write(&mut buf, Layout::Redundant, 7, env.vars(), &set).unwrap();
        let env2 = Env::parse(&buf, Layout::Redundant).unwrap();
        prop_assert_eq!(Scheme::Native.decode(Flavor::UBoot, &env2).unwrap(), s);
        // GRUB
        let mut blk = vec![0u8; grub_env::DEFAULT_SIZE];
        grub_env::write(&mut blk, grub_env::no_vars(), &set).unwrap();
        let g = grub_env::GrubEnv::parse(&blk).unwrap();
        prop_assert_eq!(Scheme::Native.decode(Flavor::Grub, &g).unwrap(), s);
        // flash record
        let mut rec = [0u8; flash_record::RECORD_LEN];
        flash_record::emit(&s, &mut rec);
        prop_assert_eq!(flash_record::parse(&rec).unwrap(), s);
    }

    #[test]
    fn foreign_schemes_agree_on_the_decision(booted in slot(), ops in proptest::collection::vec(operation(), 0..12), flavor in prop_oneof![Just(Flavor::UBoot), Just(Flavor::Grub)]) {
        // A state our operations produce, stored in RAUC's or Mender's variables, decodes to a
        // state on which the decision boots the same slot. (RAUC's scripts handle "no slot
        // left" differently, so last-resort decisions are not compared for RAUC.)
        let mut s = BootState::initial(booted, SlotName::EMPTY);
        for op in ops { let _ = s.apply(&op); }
        for scheme in [Scheme::Rauc(RaucConfig::default()), Scheme::Mender(MenderConfig::default())] {
            let mut set = VarSet::new();
            scheme.encode(flavor, &s, &Pairs(Vec::new()), &mut set).unwrap();
            let env = Pairs(set.iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_vec()))).collect());
            let back = scheme.decode(flavor, &env).unwrap();
            let d1 = s.decide();
            if matches!(scheme, Scheme::Rauc(_)) && d1.kind == DecisionKind::LastResort { continue; }
            prop_assert_eq!(d1.slot, back.decide().slot, "{} {:?}: {:?} vs {:?}", scheme.name(), flavor, s, back);
            prop_assert_eq!(back.slot(Slot::A).name, s.slot(Slot::A).name);
            prop_assert_eq!(back.revision, s.revision);
        }
    }

    #[test]
    fn flash_record_keeps_floor_and_versions_and_ops_never_lower_the_floor(s in versioned(), ops in proptest::collection::vec((operation(), any::<u64>()), 0..12)) {
        let mut rec = [0u8; flash_record::RECORD_LEN];
        flash_record::emit(&s, &mut rec);
        prop_assert_eq!(flash_record::parse(&rec).unwrap(), s);
        let mut m = s;
        for (op, v) in ops {
            let before = m;
            match op {
                Operation::Stage { slot, tries, name } => {
                    let _ = m.stage_versioned(slot, tries, name, v);
                }
                op => { let _ = m.apply(&op); }
            }
            prop_assert!(m.floor >= before.floor, "{:?} lowered the floor", op);
            if let Operation::MarkGood { slot } = op {
                prop_assert_eq!(m.floor, before.floor.max(before.slot(slot).security_version));
            } else {
                prop_assert_eq!(m.floor, before.floor, "only mark-good moves the floor");
            }
            if let Operation::Stage { slot, tries: 1..=9, .. } = op {
                prop_assert_eq!(m.slot(slot).security_version, v);
            }
        }
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Env::parse(&bytes, Layout::Single).map(|e| e.vars().count());
        let _ = Env::parse(&bytes, Layout::Redundant).map(|e| e.vars().count());
        let half = bytes.len() / 2;
        let _ = uboot_env::parse_redundant(&bytes[..half], &bytes[half..half * 2]);
        let _ = flash_record::parse(&bytes);
        let mut g = grub_env::SIGNATURE.to_vec();
        g.extend_from_slice(&bytes);
        if let Ok(env) = grub_env::GrubEnv::parse(&g) {
            for (_, v) in env.vars() {
                let mut out = vec![0u8; v.len()];
                prop_assert!(grub_env::unescape(v, &mut out).is_some());
            }
            for scheme in [Scheme::Native, Scheme::Rauc(RaucConfig::default()), Scheme::Mender(MenderConfig::default())] {
                let _ = scheme.decode(Flavor::Grub, &env);
            }
        }
    }
}

proptest! {
    // every cut point of a 512-byte env copy and of a 304-byte record, per case
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn torn_write_of_one_copy_gives_old_or_new(old in boot_state(), new in boot_state(), older in boot_state(), floors in any::<(u64, u64, u64)>()) {
        // U-Boot redundant env: copy 0 current (old, flag 5), copy 1 holds an older state
        // (flag 4); the new state goes to copy 1 with flag 6 and is cut at every byte.
        const SIZE: usize = 0x200;
        let enc = |s: &BootState, flag: u8| {
            let mut set = VarSet::new();
            Scheme::Native.encode(Flavor::UBoot, s, &Pairs(Vec::new()), &mut set).unwrap();
            let mut b = vec![0u8; SIZE];
            uboot_env::write(&mut b, Layout::Redundant, flag, uboot_env::no_vars(), &set).unwrap();
            b
        };
        let c0 = enc(&old, 5);
        let c1_before = enc(&older, 4);
        let c1_new = enc(&new, 6);
        let decode = |a: &[u8], b: &[u8]| {
            let (_, env) = uboot_env::parse_redundant(a, b).unwrap();
            Scheme::Native.decode(Flavor::UBoot, &env).unwrap()
        };
        for cut in 0..=SIZE {
            let mut c1 = c1_before.clone();
            c1[..cut].copy_from_slice(&c1_new[..cut]);
            let got = decode(&c0, &c1);
            prop_assert!(got == old || got == new, "cut {}: {:?}", cut, got);
            if cut == SIZE { prop_assert_eq!(got, new); }
            if cut < 5 { prop_assert_eq!(got, old); }
        }
        // flash record: same with the record pair
        let (mut r0, mut r1) = ([0xFFu8; flash_record::RECORD_LEN], [0xFFu8; flash_record::RECORD_LEN]);
        let mut o = old; o.revision = 100; o.floor = floors.0;
        let mut ol = older; ol.revision = 99; ol.floor = floors.1;
        let mut new = new; new.floor = floors.2;
        flash_record::emit(&o, &mut r0);
        flash_record::emit(&ol, &mut r1);
        let mut rec = [0u8; flash_record::RECORD_LEN];
        let target = flash_record::prepare_write(&r0, &r1, &new, &mut rec);
        prop_assert_eq!(target, 1);
        let new_written = flash_record::parse(&rec).unwrap();
        for cut in 0..=flash_record::RECORD_LEN {
            let mut c = r1;
            c[..cut].copy_from_slice(&rec[..cut]);
            let (_, got) = flash_record::select(&r0, &c).unwrap();
            prop_assert!(got == o || got == new_written, "record cut {}", cut);
            prop_assert!(got.floor == o.floor || got.floor == new.floor, "record cut {}", cut);
        }
        // and erased-then-partially-written (NOR: erase to 0xFF first)
        for cut in (0..=flash_record::RECORD_LEN).step_by(7) {
            let mut c = [0xFFu8; flash_record::RECORD_LEN];
            c[..cut].copy_from_slice(&rec[..cut]);
            let (_, got) = flash_record::select(&r0, &c).unwrap();
            prop_assert!(got == o || got == new_written);
        }
    }
}

struct Pairs(Vec<(String, Vec<u8>)>);
impl EnvRead for Pairs {
    fn get_raw(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &v[..])
    }
}

fn native_listing(s: &BootState) -> Vec<(String, String)> {
    let mut set = VarSet::new();
    Scheme::Native
        .encode(Flavor::UBoot, s, &Pairs(Vec::new()), &mut set)
        .unwrap();
    let mut v: Vec<(String, String)> = set
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), String::from_utf8(v.to_vec()).unwrap())))
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn uboot_roundtrip_through_fw_tools(s in boot_state(), change in (slot(), 0u8..=MAX_TRIES), redundant in any::<bool>()) {
        if !have("fw_printenv", "uboot_roundtrip_through_fw_tools") { return Ok(()); }
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        let (env, cfg) = if redundant {
            (BootEnv::new(Backend::uboot_redundant(&a, 0, &b, 0, 0x2000), Scheme::Native),
             fw_config_redundant(dir.path(), &a, &b, 0x2000))
        } else {
            (BootEnv::new(Backend::uboot_single(&a, 0, 0x2000), Scheme::Native),
             fw_config_single(dir.path(), &a, 0x2000))
        };
        env.init(&s).unwrap();
        // ours -> fw_printenv
        prop_assert_eq!(fw_printenv(&cfg), native_listing(&s));
        // fw_setenv -> ours
        let (slot, tries) = change;
        fw_setenv(&cfg, &[(&format!("ECU_{slot}_TRIES"), &tries.to_string())]);
        let mut expect = s;
        expect.slot_mut(slot).tries_left = tries;
        prop_assert_eq!(env.load().unwrap(), expect);
        // ours again (a boot) -> fw_printenv
        let d = expect.decide();
        env.store(&d.state).unwrap();
        prop_assert_eq!(fw_printenv(&cfg), native_listing(&d.state));
    }

    #[test]
    fn grub_roundtrip_through_grub_editenv(s in boot_state(), change in (slot(), 0u8..=MAX_TRIES)) {
        if !have("grub-editenv", "grub_roundtrip_through_grub_editenv") { return Ok(()); }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("grubenv");
        run(Command::new("grub-editenv").arg(&f).arg("create"));
        let env = BootEnv::new(Backend::grub(&f), Scheme::Native);
        env.store(&s).unwrap();
        let mut listed = grub_list(&f);
        listed.sort();
        prop_assert_eq!(listed, native_listing(&s));
        let (slot, tries) = change;
        run(Command::new("grub-editenv").arg(&f).arg("set").arg(format!("ECU_{slot}_TRIES={tries}")));
        let mut expect = s;
        expect.slot_mut(slot).tries_left = tries;
        prop_assert_eq!(env.load().unwrap(), expect);
    }
}
