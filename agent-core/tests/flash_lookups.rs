//! The flash store's object look-ups (`docs/FLASH.md`, "Look-ups"): the reads of index
//! entries an install spends grow linearly with the number of objects (they grew with its
//! square while every look-up walked the whole index), from scratch and as a delta that copies
//! whole subtrees from the active slot; and the slots come out byte for byte as before.
#![cfg(feature = "_test-flash")]

mod flash_common;

use agent_core::object::{ObjectId, ObjectKind};
use agent_core::store::flash::model::NorModelError;
use agent_core::store::flash::{FlashSlot, FlashStore};
use agent_core::store::Store;
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use flash_common::*;
use sha2::{Digest, Sha256};

/// Fault-injection style wrapper: the real test flash, counting the reads that land in a
/// slot's index area (the upper half of a slot; the objects of these updates stay far below).
struct Counting<'a, 'm> {
    nor: &'a mut Nor<'m>,
    index_reads: u64,
}

impl ErrorType for Counting<'_, '_> {
    type Error = NorModelError;
}

impl ReadNorFlash for Counting<'_, '_> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorModelError> {
        let in_index = LAYOUT
            .slots
            .iter()
            .any(|&s| offset >= s + SLOT / 2 && offset < s + SLOT);
        if in_index {
            self.index_reads += 1;
        }
        self.nor.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.nor.capacity()
    }
}

impl NorFlash for Counting<'_, '_> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), NorModelError> {
        self.nor.erase(from, to)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorModelError> {
        self.nor.write(offset, bytes)
    }
}

/// A tree of about `objects` objects: `firmware.bin` (`version` in it) and directories of 16
/// small files each.
fn tree(objects: usize, version: u8) -> Node {
    let dirs = objects.saturating_sub(4).div_ceil(17);
    let mut root = vec![(
        "firmware.bin".to_string(),
        Node::File([noise(9, 4000), vec![version]].concat()),
    )];
    for d in 0..dirs {
        let files = (0..16)
            .map(|f| {
                let seed = (d * 16 + f) as u64 + 1000;
                (format!("f{f:02}"), Node::File(noise(seed, 40)))
            })
            .collect();
        root.push((format!("d{d:03}"), Node::Dir(files)));
    }
    Node::Dir(root.into_iter().collect())
}

/// Clears the look-up chain of every index entry of slot `s` (bytes 1..4 zero, the entry's
/// CRC computed again): the slot as a store without chains wrote it.
fn clear_chains(mem: &mut [u8], s: FlashSlot) {
    let start = LAYOUT.start(s) as usize;
    let slot = &mut mem[start..start + SLOT as usize];
    // Entries are 48 bytes (a multiple of W), from the end of the slot down.
    for e in slot.rchunks_exact_mut(48).take(SLOT as usize / 2 / 48) {
        let crc_ok =
            u32::from_le_bytes(e[44..48].try_into().unwrap()) == bootloader_hooks::crc32(&e[..44]);
        if crc_ok && e[3] & 0x80 != 0 {
            e[1..4].fill(0);
            let crc = bootloader_hooks::crc32(&e[..44]);
            e[44..48].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// SHA-256 of slot `s` with its look-up chains cleared ([`clear_chains`]).
fn slot_sha(mem: &[u8], s: FlashSlot) -> String {
    let mut copy = mem.to_vec();
    clear_chains(&mut copy, s);
    let start = LAYOUT.start(s) as usize;
    let h = Sha256::digest(&copy[start..start + SLOT as usize]);
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Installs `file` through the real installer into the inactive slot (`active` booted),
/// counting index reads; returns them and the staged commit.
fn install(mem: &mut [u8], active: FlashSlot, file: &[u8]) -> (u64, ObjectId) {
    let mut nor = Nor::new(mem);
    let mut counting = Counting {
        nor: &mut nor,
        index_reads: 0,
    };
    let mut store = FlashStore::new(&mut counting, LAYOUT, active).unwrap();
    let commit = install_file(&mut store, file, 4096).unwrap();
    assert_eq!(store.staged().map(|s| s.commit), Some(commit));
    drop(store);
    (counting.index_reads, commit)
}

/// Every object of `b` is in `slot`, found by a look-up and with its bytes.
fn check_objects(mem: &mut [u8], slot: FlashSlot, b: &Built) {
    let mut nor = Nor::new(mem);
    let mut store = FlashStore::new(&mut nor, LAYOUT, slot).unwrap();
    let info = store.verify_slot(slot).unwrap().expect("valid slot");
    // Positions: the objects, and the checkpoints the install kept (two each).
    assert!(info.objects as usize >= b.objects.len(), "{}", info.objects);
    for ((kind, id), bytes) in &b.objects {
        let mut got = vec![0u8; bytes.len() + 1];
        let n = store
            .read_object(ObjectKind::from_code(*kind), id, 0, &mut got)
            .unwrap();
        assert_eq!(n, Some(bytes.len()), "{id}");
        assert_eq!(&got[..bytes.len()], &bytes[..], "{id}");
    }
}

/// From scratch into slot B, then a delta into slot A that reuses every directory: the index
/// reads of each and the SHA-256 of both slots after.
fn run(objects: usize) -> (u64, u64, [String; 2], usize) {
    let (v0, _, _) = commits();
    let t1 = tree(objects, 1);
    let v1 = build(&t1, None, "1");
    let v2 = build(&tree(objects, 2), Some(v1.commit), "2");
    assert!(v1.objects.len() >= objects, "{}", v1.objects.len());
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let (full, got) = install(&mut mem, FlashSlot::A, &update_file(&v1, None));
    assert_eq!(got, v1.commit);
    check_objects(&mut mem, FlashSlot::B, &v1);
    // Each reuse by its own record, as when the slots below were recorded (a reuse-entries
    // record reuses the same objects in its source's order, so the slot's bytes differ).
    let delta_file = update_file_with(&v2, Some(&v1), false);
    let (delta, got) = install(&mut mem, FlashSlot::B, &delta_file);
    assert_eq!(got, v2.commit);
    check_objects(&mut mem, FlashSlot::A, &v2);
    let shas = [slot_sha(&mem, FlashSlot::A), slot_sha(&mem, FlashSlot::B)];
    eprintln!(
        "{} objects: {full} index reads from scratch, {delta} as a delta; slots {shas:?}",
        v1.objects.len()
    );
    (full, delta, shas, v1.objects.len())
}

#[test]
fn index_reads_grow_linearly_with_the_objects() {
    let (full1, delta1, _, n1) = run(110);
    let (full2, delta2, _, n2) = run(220);
    // Twice the objects (123 and 225), about twice the reads. Walking the whole index for
    // every look-up made these ratios 3.3 and 2.9 (8,507 then 28,143 reads from scratch,
    // 24,472 then 70,291 as a delta), and more as the objects grow.
    assert!(
        full2 * 10 < full1 * 25,
        "from scratch: {full1} then {full2}"
    );
    assert!(delta2 * 10 < delta1 * 25, "delta: {delta1} then {delta2}");
    // A few reads per object (it was over a hundred).
    for (reads, n) in [(full1, n1), (delta1, n1), (full2, n2), (delta2, n2)] {
        assert!(reads < 5 * n as u64, "{reads} index reads for {n} objects");
    }
}

#[test]
fn slots_are_byte_for_byte_as_before_past_the_prints_too() {
    // Recorded with the store that walked the whole index for every look-up.
    let want = [
        (
            110,
            [
                "dd8a8e47aa93203b87ded3397e858600d5cd8141f6c00730870e6fde70e72d72",
                "7e67553c8c99beeca9ee2f80165dfad3623775e67de9867a7c632d522fcc641d",
            ],
        ),
        (
            600,
            [
                "6648746db79018322708e7491531bf05811a7d7d03224ebc82dcf9a8f0d3c8d5",
                "9ffa34914b1e640fcab4b6e7db72ea804c9aa85fac4e2022d47b1d90d667263c",
            ],
        ),
    ];
    // 600 objects were past the prints (240 positions) of the store before the chains. The
    // chains (docs/FLASH.md, "Look-ups") are the only bytes that differ: `slot_sha` clears them.
    let got: Vec<_> = want.iter().map(|(objects, _)| run(*objects).2).collect();
    for ((objects, shas), got) in want.iter().zip(got) {
        assert_eq!(got, shas.map(String::from), "{objects} objects");
    }
}

/// The store reads the indexes again after its device was lent out (`FlashStore::flash`): a
/// slot rewritten meanwhile is looked up as it is now, never through the chains of what it held
/// before (no false negative).
#[test]
fn lookups_follow_the_flash_after_it_was_lent_out() {
    let (v0, v1, _) = commits();
    // A device whose slot B holds v1.
    let mut other = vec![0u8; DEVICE];
    provisioned(&mut other, &v0);
    install(&mut other, FlashSlot::A, &update_file(&v1, None));
    let b = LAYOUT.start(FlashSlot::B) as usize;
    let v1_slot = other[b..b + SLOT as usize].to_vec();

    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    let mut nor = Nor::new(&mut mem);
    let mut store = FlashStore::new(&mut nor, LAYOUT, FlashSlot::A).unwrap();
    let mut buf = [0u8; 8];
    let (kind, id) = *v1.objects.keys().next().unwrap();
    let kind = ObjectKind::from_code(kind);
    // Slot A (v0) is looked up: its chains are built.
    assert_eq!(store.read_object(kind, &id, 0, &mut buf).unwrap(), None);
    // Slot A rewritten with v1 through the lent device: v1's objects are found there now.
    let a = LAYOUT.start(FlashSlot::A) as usize;
    store.flash().bytes_mut()[a..a + SLOT as usize].copy_from_slice(&v1_slot);
    for ((kind, id), bytes) in &v1.objects {
        let n = store
            .read_object(ObjectKind::from_code(*kind), id, 0, &mut buf)
            .unwrap();
        assert_eq!(n, Some(bytes.len().min(8)), "{id}");
    }
}

/// An update of about 1,000 objects (issue 14: "an install does O(n²) reads"), from scratch and
/// as a delta: the index reads stay a small multiple of the objects. With one-byte prints of
/// only the first 240 positions, the look-ups past them walked the index on flash; the
/// look-up chains read only one bucket's entries.
#[test]
fn an_update_of_1000_objects_reads_the_index_a_bounded_number_of_times() {
    let (full, delta, _, n) = run(1000);
    eprintln!("{n} objects: {full} index reads from scratch, {delta} as a delta");
    let n = n as u64;
    assert!(
        full < 12 * n,
        "from scratch: {full} index reads for {n} objects"
    );
    assert!(delta < 24 * n, "delta: {delta} index reads for {n} objects");
}

/// A slot written by a store without look-up chains (every chain field zero) is still read:
/// every object is found, and a delta from it installs and comes out as with chains.
#[test]
fn a_slot_written_without_chains_is_still_read() {
    let (v0, _, _) = commits();
    let v1 = build(&tree(300, 1), None, "1");
    let v2 = build(&tree(300, 2), Some(v1.commit), "2");
    let mut mem = vec![0u8; DEVICE];
    provisioned(&mut mem, &v0);
    install(&mut mem, FlashSlot::A, &update_file(&v1, None));
    let mut with_chains = mem.clone();
    clear_chains(&mut mem, FlashSlot::B);
    assert!(mem != with_chains, "the install wrote no chains");
    check_objects(&mut mem, FlashSlot::B, &v1);
    let delta = update_file(&v2, Some(&v1));
    let (walked, _) = install(&mut mem, FlashSlot::B, &delta);
    let (chained, _) = install(&mut with_chains, FlashSlot::B, &delta);
    check_objects(&mut mem, FlashSlot::A, &v2);
    let a = LAYOUT.start(FlashSlot::A) as usize..(LAYOUT.start(FlashSlot::A) + SLOT) as usize;
    assert!(
        mem[a.clone()] == with_chains[a],
        "the delta from a slot without chains differs"
    );
    // The slot without chains is walked whole at each look-up; the new one has its chains.
    assert!(walked > chained, "{walked} and {chained} index reads");
}
