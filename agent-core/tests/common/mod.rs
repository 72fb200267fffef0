//! Test support: an in-memory store that logs what the installer asks of it, and a tree
//! builder that turns a small directory tree into objects, bottom-up.
#![allow(dead_code)]

use std::collections::HashSet;
use std::convert::Infallible;

use agent_core::install::{InstallError, Installed, Installer, Policy};
use agent_core::object::{self, Commit, DirEntry, ObjectId, ObjectKind};
use agent_core::write::{Locality, UpdateWriter};
use test_support::tree::CommitInfo;

/// A window to lend the installer: 32 KiB for deflate and the header.
pub fn window() -> Vec<u8> {
    vec![0u8; agent_core::install::INFLATE_WINDOW]
}

/// An LZMA2 dictionary to lend with the xz decoder: 8 MiB, what `ecu-agent apply` lends
/// (untouched pages cost nothing).
pub fn dictionary() -> Vec<u8> {
    vec![0u8; 8 << 20]
}

/// `lent!(w, x)`: binds `w` to a lent window ([`window`]) and `x` to a lent xz decoder over a
/// [`dictionary`], both living to the end of the caller's block:
/// `Installer::new(policy, w).with_xz(x)`.
#[macro_export]
macro_rules! lent {
    ($w:ident, $x:ident) => {
        let mut lent_window = window();
        let mut lent_dictionary = dictionary();
        let mut lent_xz = agent_core::install::XzDecoder::new(&mut lent_dictionary);
        let ($w, $x) = (&mut lent_window[..], &mut lent_xz);
    };
}

/// The tree the tests build commits of, and the operations of an update.
#[allow(unused_imports)]
pub use test_support::tree::{dirmeta_object, file_object, link_object, Node, Op, Tree};
/// The protocol-checking in-memory store the tests drive the installer over.
pub use test_support::MemStore;

/// A dirtree object of `entries` in the order given, unchecked (tests make unsorted ones).
pub fn dirtree_object(entries: &[DirEntry<'_>]) -> Vec<u8> {
    object::dirtree_object_unchecked(entries)
}

pub fn commit_object(
    parent: Option<ObjectId>,
    timestamp: u64,
    tree: ObjectId,
    meta: ObjectId,
    version: &str,
) -> Vec<u8> {
    commit_object_sv(parent, timestamp, tree, meta, version, 0)
}

/// [`commit_object`] at security version `security_version`.
pub fn commit_object_sv(
    parent: Option<ObjectId>,
    timestamp: u64,
    tree: ObjectId,
    meta: ObjectId,
    version: &str,
    security_version: u64,
) -> Vec<u8> {
    Commit {
        parent,
        timestamp,
        root_tree: tree,
        root_meta: meta,
        version,
        subject: "test commit",
        body: "",
        security_version,
    }
    .to_vec()
    .unwrap()
}

/// A commit of `tree` with every object, bottom-up, and the commit last.
pub struct Built {
    pub ops: Vec<Op>,
    pub commit: ObjectId,
    pub timestamp: u64,
    /// Every object id of the commit (for later deltas).
    pub ids: HashSet<ObjectId>,
}

/// The operations of a commit of `tree` ([`test_support::tree::Built::ops`]); objects whose
/// id is in `source` become reuses (a reused dirtree covers its whole tree).
pub fn build(
    tree: &Tree,
    parent: Option<ObjectId>,
    timestamp: u64,
    source: &HashSet<ObjectId>,
) -> Built {
    build_sv(tree, parent, timestamp, source, 0)
}

/// [`build`] with a commit at security version `security_version`.
pub fn build_sv(
    tree: &Tree,
    parent: Option<ObjectId>,
    timestamp: u64,
    source: &HashSet<ObjectId>,
    security_version: u64,
) -> Built {
    let info = CommitInfo::new(parent, timestamp, "1.0")
        .subject("test commit")
        .security_version(security_version);
    let b = test_support::tree::build(tree, &info);
    Built {
        ops: b.ops_reusing(&|_, id| source.contains(id)),
        commit: b.commit,
        timestamp,
        ids: b.ids(),
    }
}

pub const REF: &str = "ecu/test/main";
pub const SEED: [u8; 32] = [7; 32];
pub const OTHER_SEED: [u8; 32] = [9; 32];

pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// Writes an update of `built` with the writer, in the format version it chooses.
pub fn write_update(
    built: &Built,
    from: Option<ObjectId>,
    seed: Option<&[u8; 32]>,
    part_size: usize,
) -> Vec<u8> {
    write_update_with(built, from, seed, part_size, &|_, _| None, |w| w)
}

/// [`write_update`] in format version `format_version`.
pub fn write_update_format(
    built: &Built,
    from: Option<ObjectId>,
    seed: Option<&[u8; 32]>,
    part_size: usize,
    format_version: u16,
) -> Vec<u8> {
    write_update_with(built, from, seed, part_size, &|_, _| None, |w| {
        w.format_version(format_version)
    })
}

/// [`write_update`] with `codec`.
pub fn write_update_codec(
    built: &Built,
    from: Option<ObjectId>,
    seed: Option<&[u8; 32]>,
    part_size: usize,
    codec: Codec,
) -> Vec<u8> {
    write_update_with(built, from, seed, part_size, &|_, _| None, |w| {
        w.format_version(agent_core::wire::FORMAT_VERSION)
            .codec(codec)
    })
}

/// [`write_update_codec`] with xz parts laid out as `locality` says.
pub fn write_update_xz(built: &Built, part_size: usize, locality: Locality) -> Vec<u8> {
    write_update_with(built, None, None, part_size, &|_, _| None, |w| {
        w.format_version(agent_core::wire::FORMAT_VERSION)
            .codec(Codec::Xz)
            .locality(locality)
    })
}

/// [`write_update`] with deflate parts and the format version the writer picks (2 when nothing
/// needs 3: no patch records, no xz, the 32 KiB window).
pub fn write_update_deflate(
    built: &Built,
    from: Option<ObjectId>,
    seed: Option<&[u8; 32]>,
    part_size: usize,
) -> Vec<u8> {
    write_update_with(built, from, seed, part_size, &|_, _| None, |w| {
        w.codec(Codec::Deflate)
    })
}

/// The source object of a patch and the patch, for a written object (its id and bytes).
pub use test_support::tree::PatchFor;

/// [`write_update`] writing each object that `patch` gives a patch for as a patch record.
pub fn write_update_patched(
    built: &Built,
    from: Option<ObjectId>,
    seed: Option<&[u8; 32]>,
    part_size: usize,
    patch: &PatchFor<'_>,
) -> Vec<u8> {
    write_update_with(built, from, seed, part_size, patch, |w| w)
}

/// Patches file objects from the file objects of `sources` (canonical bytes): the one with the
/// same content length first, else the longest, kept when the patch pays.
pub fn patch_from(
    sources: Vec<Vec<u8>>,
) -> impl Fn(&ObjectId, &[u8]) -> Option<(ObjectId, Vec<u8>)> {
    move |_, new| {
        let old = sources
            .iter()
            .find(|o| o.len() == new.len())
            .or_else(|| sources.iter().max_by_key(|o| o.len()))?;
        let p = agent_core::write::diff(old, new);
        agent_core::write::patch_pays(new, &p).then(|| (ObjectId::of(old), p))
    }
}

/// The writer over `built` (ref [`REF`], version "1.0", parts of `part_size`, tree locality),
/// turned by `knobs` (format version, codec, locality), each object `patch` patches as a patch
/// record; checks the size the writer reports against the bytes written.
pub fn write_update_with(
    built: &Built,
    from: Option<ObjectId>,
    seed: Option<&[u8; 32]>,
    part_size: usize,
    patch: &PatchFor<'_>,
    knobs: impl FnOnce(UpdateWriter) -> UpdateWriter,
) -> Vec<u8> {
    let w = UpdateWriter::new(
        REF,
        from,
        built.commit,
        built.timestamp,
        "1.0",
        "test commit",
    )
    .part_size(part_size)
    .locality(Locality::Tree);
    let mut w = knobs(w);
    // Objects over 4 KiB through the streaming path.
    test_support::tree::write_ops(&mut w, &built.ops, patch, 4096).unwrap();
    let mut out = Vec::new();
    let s = w.finish(seed, &mut out).unwrap();
    assert_eq!(s.bytes, out.len() as u64);
    out
}

/// A tree with small text files, a compressible 100 KB file, a symlink and a subdirectory.
pub fn sample_tree() -> Tree {
    let big: Vec<u8> = (0..100_000u32)
        .map(|i| (i % 251) as u8 ^ (i / 997) as u8)
        .collect();
    Tree::default()
        .file("a.txt", "hello\n")
        .file("big.bin", big)
        .link("link", "a.txt")
        .dir(
            "etc",
            Tree::default()
                .file("hostname", "ecu\n")
                .file("os-release", "ID=test\nVERSION=1\n"),
        )
        .dir("empty", Tree::default())
}

/// Feeds `file` in chunks of the given sizes (cycled), then finishes
/// ([`agent_core::io::install_chunks`]).
pub fn install_chunks(
    inst: &mut Installer<'_>,
    store: &mut MemStore,
    file: &[u8],
    sizes: &[usize],
) -> Result<Installed, InstallError<Infallible>> {
    agent_core::io::install_chunks(inst, store, file, sizes)
}

pub fn policy(keys: &[[u8; 32]]) -> Policy<'_> {
    Policy::require(keys)
}

/// Installs `file` (signed with [`SEED`]) over a clone of `store` in each chunking of
/// `chunkings`; it must fail with `want` (any error when `None`) and leave the store as it
/// was: nothing committed, staged or open, aborted once, its objects and refs unchanged.
pub fn refused_over(
    store: &MemStore,
    file: &[u8],
    want: Option<&InstallError<Infallible>>,
    chunkings: &[&[usize]],
) {
    let keys = [public_key(&SEED)];
    for &sizes in chunkings {
        let mut s = store.clone();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let e = install_chunks(&mut inst, &mut s, file, sizes).expect_err("installed");
        if let Some(w) = want {
            assert_eq!(&e, w, "chunks {sizes:?}");
        }
        assert_eq!(s.commit_calls, store.commit_calls);
        assert_eq!(s.abort_calls, store.abort_calls + 1);
        assert!(s.staged.is_empty() && s.current.is_none());
        assert_eq!(s.objects, store.objects, "the store changed");
        assert_eq!(s.refs, store.refs);
    }
}

/// Installs `file` (signed with [`SEED`]) over a clone of `store` in each chunking of
/// `chunkings`: it must install commit `to` every time, with the same store calls. Returns
/// the store after the first.
pub fn installs_alike(
    store: &MemStore,
    file: &[u8],
    to: ObjectId,
    chunkings: &[&[usize]],
) -> MemStore {
    let keys = [public_key(&SEED)];
    let mut reference: Option<MemStore> = None;
    for &sizes in chunkings {
        let mut s = store.clone();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let installed = install_chunks(&mut inst, &mut s, file, sizes).unwrap();
        assert_eq!(installed.commit, to);
        assert_eq!(s.commit_calls, store.commit_calls + 1);
        match &reference {
            Some(r) => assert_eq!(s.log, r.log, "chunks {sizes:?}"),
            None => reference = Some(s),
        }
    }
    reference.expect("a chunking")
}

/// A bit of every byte of `file` flipped (a different bit at each offset), each refused over
/// `store` ([`refused_over`]) whole and in chunks of 509 bytes.
pub fn every_flip_refused(store: &MemStore, file: &[u8]) {
    for at in 0..file.len() {
        let mut g = file.to_vec();
        g[at] ^= 1 << (at % 8);
        refused_over(store, &g, None, &[&[g.len()], &[509]]);
    }
}

/// `file` cut at every length is `Truncated` at that length over `store`, with nothing
/// committed and the store's objects unchanged.
pub fn every_cut_truncated(store: &MemStore, file: &[u8]) {
    let keys = [public_key(&SEED)];
    for len in 0..file.len() {
        let mut s = store.clone();
        lent!(win, xz);
        let mut inst = Installer::new(policy(&keys), win).with_xz(xz);
        let r = install_chunks(&mut inst, &mut s, &file[..len], &[len.max(1)]);
        assert!(
            matches!(r, Err(InstallError::Truncated { got, .. }) if got == len as u64),
            "at {len}: {r:?}"
        );
        assert_eq!(s.commit_calls, store.commit_calls);
        assert_eq!(s.objects, store.objects);
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made files, for what the writer refuses to produce.

use agent_core::wire::{
    Codec, Filter, Header, HeaderRepr, OpRepr, PartEntry, Superblock, TargetMeta, HEADER_LEN,
};
use sha2::{Digest, Sha256};

/// A `Write` record.
pub fn rec_write(kind: ObjectKind, id: ObjectId, bytes: &[u8]) -> Vec<u8> {
    let op = OpRepr::Write {
        kind,
        id,
        len: bytes.len() as u64,
    };
    let mut b = vec![0u8; op.buffer_len()];
    op.emit(&mut b);
    b.extend_from_slice(bytes);
    b
}

/// A `Write` record whose id is the hash of its bytes.
pub fn rec_obj(kind: ObjectKind, bytes: &[u8]) -> Vec<u8> {
    rec_write(kind, ObjectId::of(bytes), bytes)
}

/// A `Reuse` record.
pub fn rec_reuse(kind: ObjectKind, id: ObjectId) -> Vec<u8> {
    let op = OpRepr::Reuse { kind, id };
    let mut b = vec![0u8; op.buffer_len()];
    op.emit(&mut b);
    b
}

/// A part: its codec (and filter), decoded records and operation count.
pub struct RawPart {
    pub codec: Codec,
    pub filter: Filter,
    pub records: Vec<u8>,
    pub ops: u32,
}

/// The dictionary [`raw_update`] compresses xz parts with (and declares, unless tweaked).
pub const RAW_DICTIONARY: u32 = 64 * 1024;

impl RawPart {
    pub fn deflate(records: Vec<u8>, ops: u32) -> RawPart {
        RawPart {
            codec: Codec::Deflate,
            filter: Filter::None,
            records,
            ops,
        }
    }
    pub fn stored(records: Vec<u8>, ops: u32) -> RawPart {
        RawPart {
            codec: Codec::Stored,
            filter: Filter::None,
            records,
            ops,
        }
    }
    pub fn xz(records: Vec<u8>, ops: u32, filter: Filter) -> RawPart {
        RawPart {
            codec: Codec::Xz,
            filter,
            records,
            ops,
        }
    }
}

/// Assembles a file by hand: the parts are encoded, hashed and listed; `tweak` may then change
/// the superblock (and the part bytes) before it is signed with `seed`.
pub fn raw_update(
    from: Option<ObjectId>,
    to: ObjectId,
    timestamp: u64,
    objects: u32,
    parts: &[RawPart],
    seed: Option<&[u8; 32]>,
    tweak: impl FnOnce(&mut Superblock<'_>, &mut Vec<Vec<u8>>),
) -> Vec<u8> {
    // The lowest version that carries the file, as the writer chooses: 2 without patch
    // records, xz parts, filters or a window other than 32 KiB (0: decided after `tweak`).
    raw_update_version(0, from, to, timestamp, objects, parts, seed, tweak)
}

/// [`raw_update`] of a first install (no `from`) with the superblock as written: the
/// common case, one line at each caller.
pub fn fresh_update(
    to: ObjectId,
    timestamp: u64,
    objects: u32,
    parts: &[RawPart],
    seed: Option<&[u8; 32]>,
) -> Vec<u8> {
    raw_update(None, to, timestamp, objects, parts, seed, |_, _| {})
}

/// [`raw_update`] with format version `version` in the header (0: 3 when the superblock
/// needs it, else 2).
#[allow(clippy::too_many_arguments)]
pub fn raw_update_version(
    version: u16,
    from: Option<ObjectId>,
    to: ObjectId,
    timestamp: u64,
    objects: u32,
    parts: &[RawPart],
    seed: Option<&[u8; 32]>,
    tweak: impl FnOnce(&mut Superblock<'_>, &mut Vec<Vec<u8>>),
) -> Vec<u8> {
    let mut encoded = Vec::new();
    let mut entries = heapless::Vec::new();
    for p in parts {
        let bytes = match p.codec {
            Codec::Deflate => miniz_oxide::deflate::compress_to_vec(&p.records, 6),
            Codec::Xz => {
                agent_core::write::xz_raw(&p.records, p.filter, RAW_DICTIONARY, 6).unwrap()
            }
            _ => p.records.clone(),
        };
        let e = PartEntry {
            codec: p.codec,
            filter: p.filter,
            size: bytes.len() as u32,
            uncompressed_size: p.records.len() as u32,
            ops: p.ops,
            sha256: Sha256::digest(&bytes).into(),
        };
        entries.push(e).unwrap();
        encoded.push(bytes);
    }
    let mut sb = Superblock {
        ref_name: REF,
        from,
        to,
        meta: TargetMeta {
            timestamp,
            version: "1.0",
            subject: "test commit",
        },
        objects,
        parts: entries,
        security_version: 0,
        dictionary: if parts.iter().any(|p| p.codec == Codec::Xz) {
            RAW_DICTIONARY
        } else {
            agent_core::wire::DEFLATE_DICTIONARY
        },
    };
    tweak(&mut sb, &mut encoded);
    let needs_v3 = sb.dictionary != agent_core::wire::DEFLATE_DICTIONARY
        || sb
            .parts
            .iter()
            .any(|p| p.codec == Codec::Xz || p.filter != Filter::None);
    let version = match version {
        0 if needs_v3 => 3,
        0 => 2,
        v => v,
    };
    let mut head = vec![0u8; HEADER_LEN + 32 * 1024];
    let n = sb
        .emit_version(&mut head[HEADER_LEN..], version)
        .unwrap()
        .len();
    HeaderRepr {
        version,
        superblock_len: n as u32,
    }
    .emit(&mut Header::new_unchecked(&mut head[..HEADER_LEN]));
    head.truncate(HEADER_LEN + n);
    match seed {
        Some(seed) => {
            use ed25519_dalek::Signer;
            let sig = ed25519_dalek::SigningKey::from_bytes(seed).sign(&head);
            head.push(1);
            head.extend_from_slice(&sig.to_bytes());
        }
        None => head.push(0),
    }
    for e in encoded {
        head.extend_from_slice(&e);
    }
    head
}

/// The records of a minimal valid commit: one file, the root dirtree and dirmeta, the commit.
/// Returns (records, ops, commit id).
pub fn minimal_records(timestamp: u64) -> (Vec<u8>, u32, ObjectId) {
    let (r, id) = one_file_records(&file_object(b"x"), b"f", &dirmeta_object(), |t, m| {
        commit_object(None, timestamp, t, m, "1.0")
    });
    (r, 4, id)
}

/// The records of a one-file commit: the file object `file`, the root dirtree naming it
/// `name`, the dirmeta `meta` and the commit `commit(root tree id, root meta id)`; with the
/// commit's id.
pub fn one_file_records(
    file: &[u8],
    name: &[u8],
    meta: &[u8],
    commit: impl FnOnce(ObjectId, ObjectId) -> Vec<u8>,
) -> (Vec<u8>, ObjectId) {
    let tree = dirtree_object(&[DirEntry::File {
        name,
        id: ObjectId::of(file),
    }]);
    let commit = commit(ObjectId::of(&tree), ObjectId::of(meta));
    let mut r = rec_obj(ObjectKind::File, file);
    r.extend(rec_obj(ObjectKind::DirTree, &tree));
    r.extend(rec_obj(ObjectKind::DirMeta, meta));
    r.extend(rec_obj(ObjectKind::Commit, &commit));
    (r, ObjectId::of(&commit))
}

/// Installs a whole file at once into `store` under `policy`.
pub fn install_all(
    store: &mut MemStore,
    file: &[u8],
    policy: Policy<'_>,
) -> Result<Installed, InstallError<Infallible>> {
    lent!(win, xz);
    let mut inst = Installer::new(policy, win).with_xz(xz);
    install_chunks(&mut inst, store, file, &[file.len().max(1)])
}

/// `bytes` as docs/FORMAT.md shows its examples: each section's name and length in a `#` line,
/// then its bytes in hex, 16 to a line, each line led by its offset.
pub fn hex_dump(bytes: &[u8], sections: &[(&str, usize)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mut at = 0;
    for (name, len) in sections {
        writeln!(s, "# {name} ({len} bytes)").unwrap();
        for line in bytes[at..at + len].chunks(16) {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(s, "{at:04x}: {}", hex.join(" ")).unwrap();
            at += line.len();
        }
    }
    assert_eq!(at, bytes.len());
    s
}
