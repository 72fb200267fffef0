//! `Installer::prefix_left`: feeding at most what it asks for stops exactly at the end of the
//! file's signed prefix (`header || superblock || signature`), signed or not, so that a Linux
//! install saves that prefix without parsing the header itself.

mod common;

use std::collections::HashSet;

use agent_core::install::{Installer, Policy};
use agent_core::wire::{Codec, Header, HEADER_LEN, SIGNATURE_LEN};
use common::*;

const TS: u64 = 1_700_000_000;

#[test]
fn feeding_what_prefix_left_asks_stops_at_the_signed_prefix_end() {
    let keys = [public_key(&SEED)];
    for signed in [true, false] {
        let seed = signed.then_some(&SEED);
        let built = build(&sample_tree(), None, TS, &HashSet::new());
        let file = write_update_codec(&built, None, seed, 2048, Codec::Xz);
        let sb = Header::new_checked(&file[..]).unwrap().superblock_len() as usize;
        let end = HEADER_LEN + sb + 1 + if signed { SIGNATURE_LEN } else { 0 };
        lent!(w, x);
        let mut inst = Installer::new(Policy::require(&keys).allow_unsigned(), w).with_xz(x);
        let mut store = MemStore::default();
        let mut at = 0;
        let mut steps = 0;
        while inst.superblock_info().is_none() {
            let n = inst.prefix_left().expect("still inside the signed prefix");
            assert!(
                n >= 1 && at + n <= end,
                "asked for {n} bytes at {at} (prefix ends at {end})"
            );
            let p = inst.feed(&mut store, &file[at..at + n]).unwrap();
            assert!(!p.done);
            at += n;
            steps += 1;
        }
        assert_eq!(at, end, "signed: {signed}");
        assert_eq!(inst.progress().bytes, end as u64);
        assert_eq!(inst.superblock_info().unwrap().signed, signed);
        assert_eq!(inst.prefix_left(), None);
        // Header, superblock, kind byte (and signature): one step each.
        assert_eq!(steps, if signed { 4 } else { 3 });
        // The rest installs as usual.
        assert!(inst.feed(&mut store, &file[at..]).unwrap().done);
        assert_eq!(inst.finish(&mut store).unwrap().commit, built.commit);
    }
}
