//! `nor_record::RecordStore` over a NOR flash that enforces NOR rules and cuts power after N
//! programmed or erased bytes: after every cut, a fresh store over the same flash reads the old
//! state or the new one, never anything else.

use bootloader_hooks::nor_record::{LayoutError, RecordStore, StoreError, PROGRAM_LEN};
use bootloader_hooks::{BootState, DecisionKind, Slot, SlotName};
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

const SECTOR: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    PowerCut,
    Rule,
}

impl NorFlashError for Fault {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

/// Four sectors of NOR: program only erased bytes (1 -> 0), erase whole sectors, power lost
/// once `budget` bytes were programmed or erased (an erase cut leaves its first bytes erased).
#[derive(Clone, Debug)]
struct Nor {
    mem: Vec<u8>,
    budget: Option<usize>,
}

impl Nor {
    fn new() -> Nor {
        Nor {
            mem: vec![0xFF; 4 * SECTOR],
            budget: None,
        }
    }

    fn spend(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

impl ErrorType for Nor {
    type Error = Fault;
}

impl ReadNorFlash for Nor {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Fault> {
        let o = offset as usize;
        bytes.copy_from_slice(&self.mem[o..o + bytes.len()]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for Nor {
    const WRITE_SIZE: usize = 8;
    const ERASE_SIZE: usize = SECTOR;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Fault> {
        if !(from as usize).is_multiple_of(SECTOR) || !(to as usize).is_multiple_of(SECTOR) {
            return Err(Fault::Rule);
        }
        for i in from as usize..to as usize {
            if !self.spend() {
                return Err(Fault::PowerCut);
            }
            self.mem[i] = 0xFF;
        }
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Fault> {
        if !(offset as usize).is_multiple_of(8) || !bytes.len().is_multiple_of(8) {
            return Err(Fault::Rule);
        }
        for (i, b) in bytes.iter().enumerate() {
            let at = offset as usize + i;
            if self.mem[at] != 0xFF && *b != 0xFF {
                return Err(Fault::Rule);
            }
            if !self.spend() {
                return Err(Fault::PowerCut);
            }
            self.mem[at] &= *b;
        }
        Ok(())
    }
}

fn name(s: &str) -> SlotName {
    SlotName::from_str(s).unwrap()
}

fn store(nor: Nor) -> RecordStore<Nor> {
    RecordStore::new(nor, SECTOR as u32, SECTOR as u32).unwrap()
}

#[test]
fn layout_is_checked() {
    let bad = |base, sector| RecordStore::new(Nor::new(), base, sector).unwrap_err();
    assert_eq!(
        bad(0, 512),
        LayoutError::Sector {
            sector: 512,
            erase_size: SECTOR
        }
    );
    assert_eq!(bad(512, 1024), LayoutError::Base { base: 512 });
    assert_eq!(
        bad(3 * SECTOR as u32, 1024),
        LayoutError::TooSmall {
            needed: 5 * SECTOR as u64,
            capacity: 4 * SECTOR
        }
    );
    assert!(bad(0, 0).to_string().contains("sector size 0"));
    assert!(RecordStore::new(Nor::new(), 2 * SECTOR as u32, SECTOR as u32).is_ok());
}

#[test]
fn erased_flash_has_no_state_until_one_is_written() {
    let mut s = store(Nor::new());
    assert!(matches!(s.read(), Err(StoreError::Record(_))));
    let st = BootState::initial(Slot::A, name("rel-1"));
    assert_eq!(s.write(&st).unwrap(), 0);
    assert_eq!(s.read().unwrap().slot(Slot::A), st.slot(Slot::A));
    // The next write goes to the other copy and wins; copies stay in their sectors.
    let mut next = s.read().unwrap();
    next.stage(Slot::B, 3, name("rel-2")).unwrap();
    assert_eq!(s.write(&next).unwrap(), 1);
    assert_eq!(s.read().unwrap().slot(Slot::B), next.slot(Slot::B));
    let nor = s.into_inner();
    assert!(
        nor.mem[..SECTOR].iter().all(|&b| b == 0xFF),
        "sector 0 untouched"
    );
    assert!(
        nor.mem[3 * SECTOR..].iter().all(|&b| b == 0xFF),
        "sector 3 untouched"
    );
    assert!(nor.mem[SECTOR + PROGRAM_LEN..2 * SECTOR]
        .iter()
        .all(|&b| b == 0xFF));
}

#[test]
fn boot_counts_a_try_and_writes_it_first() {
    let mut s = store(Nor::new());
    let mut st = BootState::initial(Slot::A, name("rel-1"));
    st.stage(Slot::B, 2, name("rel-2")).unwrap();
    s.write(&st).unwrap();
    let d = s.boot().unwrap();
    assert_eq!((d.slot, d.kind), (Slot::B, DecisionKind::Trial));
    assert_eq!(s.read().unwrap().slot(Slot::B).tries_left, 1);
    let d = s.boot().unwrap();
    assert_eq!(s.read().unwrap().slot(Slot::B).tries_left, 0);
    assert_eq!(d.slot, Slot::B);
    // No tries left: A, confirmed, nothing written.
    let before = s.flash_mut().mem.clone();
    let d = s.boot().unwrap();
    assert_eq!((d.slot, d.kind), (Slot::A, DecisionKind::Confirmed));
    assert_eq!(s.flash_mut().mem, before);
}

/// Cuts power at every programmed or erased byte of the write of `new` over `old`: after
/// every cut the old state or the new one, and the anti-rollback floor the old or the new one,
/// never lower.
fn cut_everywhere(old: BootState, change: impl Fn(&mut BootState)) {
    let mut s = store(Nor::new());
    s.write(&old).unwrap();
    let old = s.read().unwrap();
    let mut new = old;
    change(&mut new);
    let base = s.into_inner();
    let mut cuts = 0;
    let mut saw_old = false;
    let mut saw_new = false;
    for budget in 0.. {
        let mut nor = base.clone();
        nor.budget = Some(budget);
        let mut s = store(nor);
        let done = s.write(&new).is_ok();
        let mut nor = s.into_inner();
        nor.budget = None;
        let got = store(nor).read().expect("a valid copy after every cut");
        let is_new = got.slot(Slot::B) == new.slot(Slot::B)
            && got.slot(Slot::A) == new.slot(Slot::A)
            && got.floor == new.floor;
        let is_old = got == old;
        assert!(is_old || is_new, "cut after {budget} bytes: {got:?}");
        assert!(
            got.floor == old.floor || got.floor == new.floor,
            "cut after {budget} bytes: floor {} is neither the old {} nor the new {}",
            got.floor,
            old.floor,
            new.floor
        );
        assert!(
            got.floor >= old.floor,
            "cut after {budget} bytes lowered the floor"
        );
        saw_old |= is_old;
        saw_new |= is_new;
        if done {
            assert!(is_new, "a complete write reads back");
            break;
        }
        cuts += 1;
    }
    assert!(cuts >= SECTOR + PROGRAM_LEN - 1, "{cuts} cut points");
    assert!(saw_old && saw_new);
}

/// A power cut at every programmed or erased byte of a write: the old state or the new one.
#[test]
fn a_power_cut_at_every_byte_leaves_the_old_or_the_new_state() {
    let mut old = BootState::initial(Slot::A, name("rel-1"));
    old.floor = 3;
    cut_everywhere(old, |new| {
        new.stage_versioned(Slot::B, 3, name("rel-2"), 7).unwrap();
    });
}

/// The same for the write of a mark-good that raises the floor from 3 to 7.
#[test]
fn a_power_cut_while_the_floor_rises_leaves_the_old_or_the_new_floor() {
    let mut old = BootState::initial(Slot::A, name("rel-1"));
    old.floor = 3;
    old.stage_versioned(Slot::B, 3, name("rel-2"), 7).unwrap();
    cut_everywhere(old, |new| {
        assert!(new.mark_good(Slot::B));
        assert_eq!(new.floor, 7);
    });
}

/// A version-1 record left by an older build reads with floor 0 and is rewritten as version 2.
#[test]
fn a_version_1_record_is_read_and_rewritten_as_version_2() {
    use bootloader_hooks::flash_record::{self, field, V1_RECORD_LEN, VERSION, VERSION_1};
    let mut st = BootState::initial(Slot::A, name("rel-1"));
    st.stage(Slot::B, 2, name("rel-2")).unwrap();
    let mut nor = Nor::new();
    let rec = &mut nor.mem[SECTOR..SECTOR + V1_RECORD_LEN];
    let mut full = [0u8; flash_record::RECORD_LEN];
    flash_record::emit(&st, &mut full);
    rec.copy_from_slice(&full[..V1_RECORD_LEN]);
    rec[4..6].copy_from_slice(&VERSION_1.to_le_bytes());
    rec[6..8].copy_from_slice(&(V1_RECORD_LEN as u16).to_le_bytes());
    let crc = bootloader_hooks::crc32(&rec[..field::V1_CRC]);
    rec[field::V1_CRC..].copy_from_slice(&crc.to_le_bytes());
    let mut s = store(nor);
    assert_eq!(s.read().unwrap(), st);
    let d = s.boot().unwrap();
    assert_eq!((d.slot, d.kind), (Slot::B, DecisionKind::Trial));
    let copy1 = 2 * SECTOR;
    assert_eq!(
        s.flash_mut().mem[copy1 + 4..copy1 + 6],
        VERSION.to_le_bytes()
    );
    let mut next = s.read().unwrap();
    assert_eq!(next.floor, 0);
    assert!(next.mark_good(Slot::B));
    assert_eq!(s.write(&next).unwrap(), 0);
    assert_eq!(
        s.flash_mut().mem[SECTOR + 4..SECTOR + 6],
        VERSION.to_le_bytes()
    );
    assert_eq!(s.read().unwrap(), next);
}
