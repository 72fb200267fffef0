//! `Store::declared`: called once per install, after the superblock is verified and before
//! any object call, with the record bytes the parts decode to; a refusal there writes nothing.

mod common;

use std::collections::HashSet;

use agent_core::install::{InstallError, Installer};
use agent_core::object::{ObjectId, ObjectKind};
use agent_core::store::{Declared, Store};
use agent_core::wire::{Header, HEADER_LEN};
use common::*;
use test_support::MemStore;

/// A [`MemStore`] that holds at most `limit` record bytes and records what it was declared,
/// and how many object calls came before.
struct Limited {
    inner: MemStore,
    limit: u64,
    /// `(record bytes, object calls before)` for each `declared`.
    asked: Vec<(u64, usize)>,
    object_calls: usize,
}

/// What [`Limited`] says when the declared size is over its limit.
const REFUSED: &str = "the store has no room for the declared records";

impl Store for Limited {
    type Error = &'static str;
    fn has_commit(&mut self, id: &ObjectId) -> Result<bool, &'static str> {
        self.inner.has_commit(id).map_err(|e| match e {})
    }
    fn declared(&mut self, declared: &Declared) -> Result<(), &'static str> {
        self.asked.push((declared.records, self.object_calls));
        if declared.records > self.limit {
            Err(REFUSED)
        } else {
            Ok(())
        }
    }
    fn has_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, &'static str> {
        self.inner.has_object(kind, id).map_err(|e| match e {})
    }
    fn begin_object(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        len: u64,
    ) -> Result<(), &'static str> {
        self.object_calls += 1;
        self.inner
            .begin_object(kind, id, len)
            .map_err(|e| match e {})
    }
    fn write_object(&mut self, data: &[u8]) -> Result<(), &'static str> {
        self.inner.write_object(data).map_err(|e| match e {})
    }
    fn finish_object(&mut self) -> Result<(), &'static str> {
        self.inner.finish_object().map_err(|e| match e {})
    }
    fn abort_object(&mut self) {
        self.inner.abort_object()
    }
    fn reuse_object(&mut self, kind: ObjectKind, id: &ObjectId) -> Result<bool, &'static str> {
        self.object_calls += 1;
        self.inner.reuse_object(kind, id).map_err(|e| match e {})
    }
    fn part_verified(&mut self) -> Result<(), &'static str> {
        self.inner.part_verified().map_err(|e| match e {})
    }
    fn tree_depth(&mut self, id: &ObjectId) -> Result<Option<u16>, &'static str> {
        self.inner.tree_depth(id).map_err(|e| match e {})
    }
    fn commit(&mut self, ref_name: &str, id: &ObjectId) -> Result<(), &'static str> {
        self.inner.commit(ref_name, id).map_err(|e| match e {})
    }
    fn abort(&mut self) {
        self.inner.abort()
    }
}

/// The sum of the superblock's `uncompressed_size`s, as the file declares them.
fn declared(file: &[u8], parts: u32) -> u64 {
    let h = Header::new_checked(file).unwrap();
    let sb = &file[HEADER_LEN..HEADER_LEN + h.superblock_len() as usize];
    let info = agent_core::wire::Superblock::parse(sb).unwrap();
    assert_eq!(info.parts.len() as u32, parts);
    info.parts
        .iter()
        .map(|p| u64::from(p.uncompressed_size))
        .sum()
}

#[test]
fn declared_comes_once_before_any_object_with_the_record_bytes() {
    let built = build(&sample_tree(), None, 1_700_000_000, &HashSet::new());
    let file = write_update(&built, None, Some(&SEED), 16 * 1024);
    let keys = [public_key(&SEED)];
    let new = |limit| Limited {
        inner: MemStore::default(),
        limit,
        asked: Vec::new(),
        object_calls: 0,
    };

    let mut s = new(u64::MAX);
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    for chunk in file.chunks(7) {
        let _ = inst.feed(&mut s, chunk).unwrap();
    }
    let parts = inst.superblock_info().unwrap().parts;
    assert!(parts > 1, "several parts");
    inst.finish(&mut s).unwrap();
    let needed = declared(&file, parts);
    assert!(needed > 100_000, "{needed}");
    assert_eq!(s.asked, vec![(needed, 0)]);

    // One byte less than declared: refused before any object call, nothing staged.
    let mut s = new(needed - 1);
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
    let e = inst.feed(&mut s, &file).unwrap_err();
    assert_eq!(e, InstallError::Store(REFUSED));
    assert_eq!(e.to_string(), format!("the store failed: {REFUSED}"));
    assert_eq!(s.asked, vec![(needed, 0)]);
    assert_eq!(s.object_calls, 0);
    s.inner.assert_failed_cleanly();
}
