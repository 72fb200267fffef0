//! The `bootstate_ops` check, model-based in the shape of sequential-storage's `map.rs`: a
//! sequence of boot-state operations runs on a [`BootState`] (the model) and, in parallel,
//! through the two-copy flash record, with torn writes. After every step the record must
//! decode to the state before or the state after the step, and the decision rules hold.

use arbitrary::Arbitrary;
use bootloader_hooks::flash_record::{self, RECORD_LEN};
use bootloader_hooks::{BootState, DecisionKind, Operation, Slot, SlotName, StateError, MAX_TRIES};

/// One operation of the agent or the bootloader.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Op {
    /// `stage(slot, tries, name)`; `tries` may be out of range (must then be refused).
    Stage {
        /// Slot B when true.
        b: bool,
        /// Tries.
        tries: u8,
        /// Length of the generated name (taken modulo 129), also its security version.
        name_len: u8,
    },
    /// `mark_good(slot)`.
    MarkGood {
        /// Slot B when true.
        b: bool,
    },
    /// `rollback(abandon)`.
    Rollback {
        /// Slot B when true.
        b: bool,
    },
    /// One boot: `decide` and store its state.
    Boot,
}

/// A power cut during the write of the step's record copy.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Tear {
    /// Bytes of the copy written before the cut (taken modulo [`RECORD_LEN`]).
    pub after: u16,
    /// Whether the copy was erased (0xFF) before programming (NOR flash); otherwise the cut
    /// leaves the copy's old bytes after the written ones (EEPROM, FRAM).
    pub erased: bool,
}

/// One step: an operation and, maybe, a torn write of its result.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Step {
    /// The operation.
    pub op: Op,
    /// A cut during its write.
    pub tear: Option<Tear>,
}

fn slot(b: bool) -> Slot {
    if b {
        Slot::B
    } else {
        Slot::A
    }
}

fn name(len: u8) -> SlotName {
    let n = len as usize % (bootloader_hooks::MAX_NAME_LEN + 1);
    let bytes: Vec<u8> = (0..n)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789._-"[i % 39])
        .collect();
    SlotName::from_bytes(&bytes).expect("generated names are valid")
}

fn bootable(s: &bootloader_hooks::SlotState) -> bool {
    s.priority > 0 && (s.successful || s.tries_left > 0)
}

/// The decision rules, checked against the documented ones: the first bootable slot in order
/// boots (a slot with success or tries is chosen over one with neither); a confirmed slot
/// changes nothing; a trial uses exactly one try of the chosen slot and nothing else; with no
/// bootable slot the second in order boots and nothing changes.
fn check_decision(before: &BootState) {
    let d = before.decide();
    let order = before.order();
    let first_bootable = order.into_iter().find(|&s| bootable(before.slot(s)));
    match first_bootable {
        Some(s) => {
            assert_eq!(
                d.slot, s,
                "the first bootable slot in order must boot: {before:?}"
            );
            let st = before.slot(s);
            if st.successful {
                assert_eq!(d.kind, DecisionKind::Confirmed);
                assert!(!d.changed);
                assert_eq!(d.state, *before);
            } else {
                assert_eq!(d.kind, DecisionKind::Trial);
                assert!(st.on_trial());
                assert!(d.changed);
                let mut expect = *before;
                expect.slot_mut(s).tries_left -= 1;
                assert_eq!(
                    d.state, expect,
                    "a trial uses one try of the chosen slot, nothing else"
                );
            }
        }
        None => {
            assert_eq!(d.kind, DecisionKind::LastResort);
            assert_eq!(d.slot, order[1]);
            assert!(!d.changed);
            assert_eq!(d.state, *before);
        }
    }
    assert_eq!(
        d.state.revision, before.revision,
        "the decision never moves the revision"
    );
}

/// Checks one operation's effect on the model against its documentation.
fn check_op(op: &Operation, before: &BootState, after: &BootState, res: &Result<bool, StateError>) {
    match *op {
        Operation::Stage { slot, tries, name } => {
            if tries == 0 || tries > MAX_TRIES {
                assert_eq!(res, &Err(StateError::TriesOutOfRange { tries }));
                assert_eq!(after, before);
                return;
            }
            // Re-staging the same slot, tries and name changes nothing (Ok(false)).
            assert_eq!(res, &Ok(after != before));
            let s = after.slot(slot);
            assert_eq!((s.tries_left, s.successful, s.name), (tries, false, name));
            assert_eq!(after.order()[0], slot);
            assert!(s.priority > after.slot(slot.other()).priority);
            assert_eq!(after.decide().slot, slot, "a staged slot boots next");
        }
        Operation::MarkGood { slot } => {
            let s = after.slot(slot);
            assert!(s.successful && s.tries_left == 0);
            assert!(s.priority > after.slot(slot.other()).priority);
            assert_eq!(after.decide().slot, slot, "a slot marked good boots next");
            assert_eq!(res, &Ok(after != before));
        }
        Operation::Rollback { abandon } => {
            let o = before.slot(abandon.other());
            if !o.successful && o.tries_left == 0 {
                assert_eq!(res, &Err(StateError::NoFallback { abandon }));
                assert_eq!(after, before);
                return;
            }
            let s = after.slot(abandon);
            assert_eq!((s.priority, s.tries_left, s.successful), (0, 0, false));
            assert_eq!(
                after.decide().slot,
                abandon.other(),
                "rollback boots the other slot"
            );
            assert_eq!(res, &Ok(after != before));
        }
        Operation::Boot => {}
    }
    if res == &Ok(true) && !matches!(op, Operation::Boot) {
        assert_eq!(
            after.revision,
            before.revision.wrapping_add(1),
            "{op:?} changed the state"
        );
    }
    // Tries only go down by a boot of a slot on trial (by one), or to 0 by mark-good/rollback
    // of that slot, or by staging it.
    for s in Slot::ALL {
        let (b, a) = (before.slot(s).tries_left, after.slot(s).tries_left);
        if a < b {
            let ok = match *op {
                Operation::Stage { slot, .. } => slot == s,
                Operation::MarkGood { slot } => slot == s && a == 0,
                Operation::Rollback { abandon } => abandon == s && a == 0,
                Operation::Boot => before.slot(s).on_trial() && a + 1 == b,
            };
            assert!(ok, "slot {s} tries {b} -> {a} by {op:?}");
        } else if a > b {
            assert!(
                matches!(*op, Operation::Stage { slot, .. } if slot == s),
                "tries rose by {op:?}"
            );
        }
    }
}

/// The anti-rollback floor: a staged slot records its security version; only `mark_good`
/// moves the floor, to the larger of the floor and the slot's version; nothing lowers it.
fn check_floor(
    op: &Operation,
    before: &BootState,
    after: &BootState,
    res: &Result<bool, StateError>,
) {
    assert!(after.floor >= before.floor, "{op:?} lowered the floor");
    match *op {
        Operation::MarkGood { slot } => assert_eq!(
            after.floor,
            before.floor.max(before.slot(slot).security_version)
        ),
        _ => assert_eq!(after.floor, before.floor, "only mark-good moves the floor"),
    }
    if let (Operation::Stage { slot, name, .. }, Ok(_)) = (*op, res) {
        assert_eq!(after.slot(slot).security_version, name.len() as u64);
    }
}

/// Runs `steps` from a fresh A-successful state in a blank two-copy flash (see the module
/// docs). Returns how many writes completed and how many were torn.
pub fn run(steps: &[Step]) -> (usize, usize) {
    let mut flash = [vec![0xFFu8; RECORD_LEN], vec![0xFFu8; RECORD_LEN]];
    assert!(
        flash_record::select(&flash[0], &flash[1]).is_err(),
        "blank flash has no state"
    );
    let init = BootState::initial(Slot::A, name(2));
    let mut out = [0u8; RECORD_LEN];
    let t = flash_record::prepare_write(&flash[0], &flash[1], &init, &mut out);
    flash[t].copy_from_slice(&out);
    let (mut written, mut torn) = (1, 0);
    for step in steps {
        // Every step starts from what the flash holds, as after a reboot.
        let (_, stored) =
            flash_record::select(&flash[0], &flash[1]).expect("the flash always holds a state");
        let op = match step.op {
            Op::Stage { b, tries, name_len } => Operation::Stage {
                slot: slot(b),
                tries,
                name: name(name_len),
            },
            Op::MarkGood { b } => Operation::MarkGood { slot: slot(b) },
            Op::Rollback { b } => Operation::Rollback { abandon: slot(b) },
            Op::Boot => Operation::Boot,
        };
        if let Operation::Boot = op {
            check_decision(&stored);
        }
        let mut model = stored;
        let res = match op {
            // the name's length doubles as the security version staged
            Operation::Stage { slot, tries, name } => {
                model.stage_versioned(slot, tries, name, name.len() as u64)
            }
            _ => model.apply(&op).map(|a| a.changed),
        };
        check_op(&op, &stored, &model, &res);
        check_floor(&op, &stored, &model, &res);
        let changed = res.unwrap_or(false);
        assert_eq!(
            changed,
            model != stored,
            "`changed` must say whether the state changed"
        );
        if !changed {
            continue;
        }
        let t = flash_record::prepare_write(&flash[0], &flash[1], &model, &mut out);
        let new = flash_record::parse(&out).expect("an emitted record parses");
        assert_eq!(
            BootState {
                revision: model.revision,
                ..new
            },
            model
        );
        assert!(flash_record::is_newer(new.revision, stored.revision));
        match step.tear {
            Some(tear) => {
                torn += 1;
                let cut = tear.after as usize % RECORD_LEN;
                if tear.erased {
                    flash[t].fill(0xFF);
                }
                flash[t][..cut].copy_from_slice(&out[..cut]);
                let (_, got) = flash_record::select(&flash[0], &flash[1])
                    .expect("a torn write must leave a decodable state");
                assert!(
                    got == stored || got == new,
                    "torn write after {cut} bytes decoded to neither the old nor the new state: {got:?}"
                );
                assert!(got.floor == stored.floor || got.floor == new.floor);
            }
            None => {
                written += 1;
                flash[t].copy_from_slice(&out);
                let (i, got) =
                    flash_record::select(&flash[0], &flash[1]).expect("a complete write decodes");
                assert_eq!(
                    (i, got),
                    (t, new),
                    "a complete write must be the current copy"
                );
            }
        }
    }
    (written, torn)
}
