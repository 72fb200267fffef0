//! Install scenarios: updates built with the writer, installed into an in-memory store.

mod common;

use std::collections::HashSet;

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
}

#[test]
fn from_scratch_round_trip() {
    let built = build(&sample_tree(), None, 1_700_000_000, &HashSet::new());
    let keys = [public_key(&SEED)];
    let file = write_update(&built, None, Some(&SEED), 4096);
    let mut store = MemStore::default();
    let mut inst = Installer::new(policy(&keys));
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
        let mut inst = Installer::new(policy(&keys));
        let installed = install_chunks(&mut inst, &mut store, &file, sizes).unwrap();
        assert_eq!(installed.commit, built.commit);
        match &reference {
            None => reference = Some(store.log.clone()),
            Some(r) => assert_eq!(&store.log, r, "chunks {sizes:?}"),
        }
    }
}
