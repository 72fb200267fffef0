//! Property tests: chunking never matters, and no input panics the installer.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::OnceLock;

use agent_core::install::{InstallError, Installed, Installer, Policy};
use agent_core::object::ObjectKind;
use agent_core::wire::Codec;
use common::*;
use proptest::prelude::*;
use test_support::rng::{XorShift64Star, GOLDEN};

const TS: u64 = 1_700_000_000;

/// The codecs every property here holds for.
const CODECS: [Codec; 2] = [Codec::Deflate, Codec::Xz];

/// A signed update of the sample tree with several parts, some compressed (deflate or xz),
/// some stored.
fn signed_file_of(codec: Codec) -> &'static [u8] {
    static F: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    let files = F.get_or_init(|| {
        CODECS.map(|c| {
            write_update_codec(
                &build(&sample_tree(), None, TS, &HashSet::new()),
                None,
                Some(&SEED),
                2048,
                c,
            )
        })
    });
    &files[usize::from(codec == Codec::Xz)]
}

/// The commit of [`unsigned_file_of`]: the sample tree and a file of noise.
fn unsigned_commit() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        // Random bytes do not compress: this part is stored.
        // xorshift64*: neither deflate nor LZMA2 finds anything in it.
        let noise = XorShift64Star::from_state(GOLDEN).bytes(3000);
        build(
            &sample_tree().file("noise", noise),
            None,
            TS,
            &HashSet::new(),
        )
    })
}

/// The same, unsigned, so that mutations reach the parser.
fn unsigned_file_of(codec: Codec) -> &'static [u8] {
    static F: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    let files = F
        .get_or_init(|| CODECS.map(|c| write_update_codec(unsigned_commit(), None, None, 2048, c)));
    &files[usize::from(codec == Codec::Xz)]
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
) -> (Result<Installed, InstallError<Infallible>>, MemStore) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (file.len() + 1)).collect();
    cuts.push(0);
    cuts.push(file.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut store = MemStore::default();
    lent!(win, xz);
    let mut inst = Installer::new(policy, win).with_xz(xz);
    let pieces = cuts.windows(2).map(|w| &file[w[0]..w[1]]);
    let r = agent_core::io::install_pieces(&mut inst, &mut store, pieces);
    (r, store)
}

fn whole(
    file: &[u8],
    policy: Policy<'_>,
) -> (Result<Installed, InstallError<Infallible>>, MemStore) {
    install_split(file, &[], policy)
}

#[test]
fn files_have_both_codecs_and_several_parts() {
    for codec in CODECS {
        for f in [signed_file_of(codec), unsigned_file_of(codec)] {
            lent!(win, xz);
            let mut inst =
                Installer::new(Policy::require(keys()).allow_unsigned(), win).with_xz(xz);
            let _ = inst
                .feed(&mut MemStore::default(), &f[..f.len() - 1])
                .unwrap();
            let info = inst.superblock_info().unwrap();
            assert!(info.parts >= 3, "{} parts", info.parts);
        }
        // Parse the superblock to check the codecs.
        let f = unsigned_file_of(codec);
        let n = u32::from_le_bytes(f[12..16].try_into().unwrap()) as usize;
        let sb = agent_core::wire::Superblock::parse_version(
            &f[16..16 + n],
            u16::from_le_bytes([f[8], f[9]]),
        )
        .unwrap();
        assert!(sb.parts.iter().any(|p| p.codec == codec));
        assert!(sb.parts.iter().any(|p| p.codec == Codec::Stored));
    }
}

#[test]
fn fixed_chunk_sizes_agree() {
    for codec in CODECS {
        let f = signed_file_of(codec);
        let (r0, s0) = whole(f, Policy::require(keys()));
        assert!(r0.is_ok());
        for size in [1usize, 7, 512, 64 * 1024] {
            let cuts: Vec<usize> = (size..f.len()).step_by(size).collect();
            let (r, s) = install_split(f, &cuts, Policy::require(keys()));
            assert_eq!(r, r0, "{codec:?} chunk size {size}");
            assert_eq!(s.log, s0.log, "{codec:?} chunk size {size}");
            assert_eq!(s.objects, s0.objects);
        }
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
    fn random_splits_of_a_valid_file(
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        xz in any::<bool>(),
    ) {
        let f = signed_file_of(if xz { Codec::Xz } else { Codec::Deflate });
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
        xz in any::<bool>(),
    ) {
        let mut f = unsigned_file_of(if xz { Codec::Xz } else { Codec::Deflate }).to_vec();
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
    /// ends, so the record and object parsers see the damage): never a panic, the same result
    /// and store calls for any chunking, and either the sample's commit installed (a mutation
    /// that changed nothing the installer checks) or a failure that left the store clean.
    #[test]
    fn mutations_never_panic(
        muts in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        xz in any::<bool>(),
    ) {
        let mut f = unsigned_file_of(if xz { Codec::Xz } else { Codec::Deflate }).to_vec();
        for (at, b) in muts {
            let at = at % f.len();
            f[at] = b;
        }
        let cut = cut % (f.len() + 1);
        let f = if cut.is_multiple_of(3) { &f[..cut] } else { &f[..] };
        let p = Policy::require(&[]).allow_unsigned();
        let (r, s) = install_split(f, &cuts, p);
        let (r0, s0) = whole(f, p);
        prop_assert_eq!(&r, &r0);
        prop_assert_eq!(&s.log, &s0.log);
        match &r {
            Ok(i) => {
                prop_assert_eq!(i.commit, unsigned_commit().commit);
                s.assert_committed(&i.commit);
            }
            Err(_) => s.assert_failed_cleanly(),
        }
    }

    /// Mutated records, re-encoded with correct part hashes: deep into the object checks, the
    /// same error for any chunking, and never a panic.
    #[test]
    fn mutated_records_with_valid_framing(
        muts in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        codec in 0u8..3,
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let (mut records, ops, to) = minimal_records(TS);
        for (at, b) in muts {
            let at = at % records.len();
            records[at] = b;
        }
        let part = match codec {
            0 => RawPart::deflate(records, ops),
            1 => RawPart::xz(records, ops, agent_core::wire::Filter::X86),
            _ => RawPart::stored(records, ops),
        };
        let f = fresh_update(to, TS, ops, &[part], None);
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
            let f = fresh_update(to, TS, ops, &[RawPart::deflate(r, ops)], None);
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
    for codec in CODECS {
        let f = signed_file_of(codec);
        let step = (f.len() / 400).max(1);
        let mut at = 0;
        while at < f.len() {
            let mut g = f.to_vec();
            g[at] ^= 1 << (at % 8);
            let (r, s) = install_split(&g, &[at, at + 1, at + 4000], Policy::require(keys()));
            assert!(r.is_err(), "{codec:?}: flip at {at} installed");
            assert_eq!(s.commit_calls, 0);
            assert!(s.refs.is_empty());
            at += step;
        }
    }
}

/// Every truncation of the xz file (at a dense sample of lengths): refused as truncated, in
/// any chunking, nothing committed.
#[test]
fn truncations_of_an_xz_file() {
    let f = signed_file_of(Codec::Xz);
    let step = (f.len() / 300).max(1);
    for len in (0..f.len()).step_by(step) {
        let (r, s) = install_split(&f[..len], &[len / 2, len / 3], Policy::require(keys()));
        let e = r.unwrap_err();
        assert!(matches!(e, InstallError::Truncated { .. }), "{len}: {e:?}");
        assert_eq!(s.commit_calls, 0);
    }
}
