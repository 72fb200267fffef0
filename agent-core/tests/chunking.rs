//! Property tests: chunking never matters, and no input panics the installer.

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;

use agent_core::install::{InstallError, Installed, Installer, Policy};
use agent_core::object::ObjectKind;
use agent_core::wire::Codec;
use common::*;
use proptest::prelude::*;

const TS: u64 = 1_700_000_000;

/// A signed update of the sample tree with several parts, some deflated, some stored.
fn signed_file() -> &'static [u8] {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        write_update(
            &build(&sample_tree(), None, TS, &HashSet::new()),
            None,
            Some(&SEED),
            2048,
        )
    })
}

/// The same, unsigned, so that mutations reach the parser.
fn unsigned_file() -> &'static [u8] {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        let mut t = sample_tree();
        // Random bytes do not deflate: this part is stored.
        let noise: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        t = t.file("noise", noise);
        write_update(&build(&t, None, TS, &HashSet::new()), None, None, 2048)
    })
}

fn keys() -> &'static [[u8; 32]] {
    static K: OnceLock<[[u8; 32]; 1]> = OnceLock::new();
    K.get_or_init(|| [public_key(&SEED)])
}

/// Splits `file` at the given cut points (taken modulo its length, sorted) and installs it.
fn install_split(
    file: &[u8],
    cuts: &[usize],
    policy: Policy<'_>,
) -> (Result<Installed, InstallError<()>>, MemStore) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (file.len() + 1)).collect();
    cuts.push(0);
    cuts.push(file.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut store = MemStore::default();
    let mut inst = Installer::new(policy);
    for w in cuts.windows(2) {
        if let Err(e) = inst.feed(&mut store, &file[w[0]..w[1]]) {
            return (Err(e), store);
        }
    }
    let r = inst.finish(&mut store);
    (r, store)
}

fn whole(file: &[u8], policy: Policy<'_>) -> (Result<Installed, InstallError<()>>, MemStore) {
    install_split(file, &[], policy)
}

#[test]
fn files_have_both_codecs_and_several_parts() {
    for f in [signed_file(), unsigned_file()] {
        let mut inst = Installer::new(Policy::require(keys()).allow_unsigned());
        let _ = inst
            .feed(&mut MemStore::default(), &f[..f.len() - 1])
            .unwrap();
        let info = inst.superblock_info().unwrap();
        assert!(info.parts >= 3, "{} parts", info.parts);
    }
    // Parse the superblock to check the codecs.
    let f = unsigned_file();
    let n = u32::from_le_bytes(f[12..16].try_into().unwrap()) as usize;
    let sb = agent_core::wire::Superblock::parse(&f[16..16 + n]).unwrap();
    assert!(sb.parts.iter().any(|p| p.codec == Codec::Deflate));
    assert!(sb.parts.iter().any(|p| p.codec == Codec::Stored));
}

#[test]
fn fixed_chunk_sizes_agree() {
    let f = signed_file();
    let (r0, s0) = whole(f, Policy::require(keys()));
    assert!(r0.is_ok());
    for size in [1usize, 7, 512, 64 * 1024] {
        let cuts: Vec<usize> = (size..f.len()).step_by(size).collect();
        let (r, s) = install_split(f, &cuts, Policy::require(keys()));
        assert_eq!(r, r0, "chunk size {size}");
        assert_eq!(s.log, s0.log, "chunk size {size}");
        assert_eq!(s.objects, s0.objects);
    }
}

proptest! {
    // 128 cases by default; PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        .. ProptestConfig::default()
    })]

    /// Random splits of a valid file: the same result and the same store calls as whole.
    #[test]
    fn random_splits_of_a_valid_file(cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let f = signed_file();
        let (r0, s0) = whole(f, Policy::require(keys()));
        let (r, s) = install_split(f, &cuts, Policy::require(keys()));
        prop_assert!(r.is_ok());
        prop_assert_eq!(r, r0);
        prop_assert_eq!(&s.log, &s0.log);
    }

    /// Random splits of a damaged file: the same error and the same store calls as whole.
    #[test]
    fn random_splits_of_a_damaged_file(
        at in any::<usize>(),
        xor in 1u8..,
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut f = unsigned_file().to_vec();
        let at = at % f.len();
        f[at] ^= xor;
        let p = Policy::require(&[]).allow_unsigned();
        let (r0, s0) = whole(&f, p);
        let (r, s) = install_split(&f, &cuts, p);
        prop_assert_eq!(&r, &r0);
        prop_assert_eq!(&s.log, &s0.log);
        if r.is_err() {
            prop_assert_eq!(s.commit_calls, 0);
        }
    }

    /// Arbitrary bytes, in arbitrary chunks: an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let (r, s) = install_split(&bytes, &cuts, Policy::require(&[]).allow_unsigned());
        prop_assert!(r.is_err());
        prop_assert_eq!(s.commit_calls, 0);
    }

    /// Arbitrary bytes after a valid header: the superblock parser and beyond never panic.
    #[test]
    fn arbitrary_bytes_after_a_header(
        tail in prop::collection::vec(any::<u8>(), 0..4096),
        sb_len in 1u32..4096,
    ) {
        let mut f = b"ECUPDATE\x01\x00\x00\x00".to_vec();
        f.extend_from_slice(&sb_len.to_le_bytes());
        f.extend_from_slice(&tail);
        let (r, _) = whole(&f, Policy::require(&[]).allow_unsigned());
        prop_assert!(r.is_err());
    }

    /// Several mutations of a valid unsigned file (the parts' hashes are only checked at their
    /// ends, so the record and object parsers see the damage): never a panic.
    #[test]
    fn mutations_never_panic(
        muts in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut f = unsigned_file().to_vec();
        for (at, b) in muts {
            let at = at % f.len();
            f[at] = b;
        }
        let cut = cut % (f.len() + 1);
        let f = if cut.is_multiple_of(3) { &f[..cut] } else { &f[..] };
        let _ = install_split(f, &cuts, Policy::require(&[]).allow_unsigned());
    }

    /// Mutated records, re-encoded with correct part hashes: deep into the object checks, the
    /// same error for any chunking, and never a panic.
    #[test]
    fn mutated_records_with_valid_framing(
        muts in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        deflate in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let (mut records, ops, to) = minimal_records(TS);
        for (at, b) in muts {
            let at = at % records.len();
            records[at] = b;
        }
        let part = if deflate { RawPart::deflate(records, ops) } else { RawPart::stored(records, ops) };
        let f = raw_update(None, to, TS, ops, &[part], None, |_, _| {});
        let p = Policy::require(&[]).allow_unsigned();
        let (r0, s0) = whole(&f, p);
        let (r, s) = install_split(&f, &cuts, p);
        prop_assert_eq!(&r, &r0);
        prop_assert_eq!(&s.log, &s0.log);
        if let Ok(i) = r {
            // Only a mutation that left the records as they were can install.
            prop_assert_eq!(i.commit, to);
            prop_assert!(s.objects.keys().any(|(k, id)| *k == ObjectKind::Commit && *id == to));
        }
    }
}

/// Every byte of the records of a minimal commit damaged in turn (with valid framing): each
/// damage is refused, and the damage reaches every layer of checks.
#[test]
fn damaged_records_reach_every_check() {
    let (records, ops, to) = minimal_records(TS);
    let mut kinds = std::collections::BTreeSet::new();
    for at in 0..records.len() {
        for xor in [0x01u8, 0x80, 0xff] {
            let mut r = records.clone();
            r[at] ^= xor;
            let f = raw_update(
                None,
                to,
                TS,
                ops,
                &[RawPart::deflate(r, ops)],
                None,
                |_, _| {},
            );
            let (res, s) = install_split(&f, &[at, at + 50], Policy::require(&[]).allow_unsigned());
            let e = res.expect_err("damaged records installed");
            assert_eq!(s.commit_calls, 0);
            let d = format!("{e:?}");
            kinds.insert(d.split([' ', '(', '{']).next().unwrap().to_string());
        }
    }
    for k in [
        "Format",
        "Object",
        "ObjectHash",
        "MissingObject",
        "CommitNotTarget",
        "ObjectTooLong",
    ] {
        assert!(kinds.contains(k), "no {k} among {kinds:?}");
    }
}

/// A dense sample of bit flips over the multi-part signed file (deflated parts, a 100 KB
/// object): every one is refused, in any chunking, and nothing is committed.
#[test]
fn dense_bit_flips_over_a_large_file() {
    let f = signed_file();
    let step = (f.len() / 400).max(1);
    let mut at = 0;
    while at < f.len() {
        let mut g = f.to_vec();
        g[at] ^= 1 << (at % 8);
        let (r, s) = install_split(&g, &[at, at + 1, at + 4000], Policy::require(keys()));
        assert!(r.is_err(), "flip at {at} installed");
        assert_eq!(s.commit_calls, 0);
        assert!(s.refs.is_empty());
        at += step;
    }
}
