//! GNU gzip's deflate (`install::GnuGzip`, for redeflate records whose parameters name it:
//! `docs/FORMAT.md` §6) against the real `gzip -<level>n`: the same raw deflate stream, byte
//! for byte, at levels 4 to 9, for empty, tiny, incompressible (stored blocks), repetitive and
//! text-like inputs larger than the window (so the window slides and gzip's block cutting
//! decides), whatever the pieces the plaintext comes in.

use agent_core::install::{deflate_all, Deflaters, GnuGzip, Redeflate, RedeflateError};
use agent_core::wire::DeflateParams;
use proptest::prelude::*;
use test_support::gzip::gzip_level;
use test_support::rng::XorShift64;

/// The raw deflate stream of a `gzip -n` member (no optional header fields).
fn stream_of(member: &[u8]) -> &[u8] {
    assert_eq!(
        member[..4],
        [0x1f, 0x8b, 8, 0],
        "gzip -n writes no optional fields"
    );
    &member[10..member.len() - 8]
}

/// GnuGzip's stream of `plain` at `level`, fed in pieces of `chunk` bytes.
fn ours(g: &mut GnuGzip, level: u8, plain: &[u8], chunk: usize) -> Vec<u8> {
    g.start(DeflateParams::gzip(level)).unwrap();
    let mut out = Vec::new();
    let mut pieces = plain.chunks(chunk.max(1)).peekable();
    if pieces.peek().is_none() {
        g.deflate(&[], true, &mut |b| {
            out.extend_from_slice(b);
            true
        })
        .unwrap();
    }
    while let Some(p) = pieces.next() {
        let last = pieces.peek().is_none();
        g.deflate(p, last, &mut |b| {
            out.extend_from_slice(b);
            true
        })
        .unwrap();
    }
    out
}

/// Words, numbers and line breaks, like a changelog.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "update",
        "ecu",
        "slot",
        "commit",
        "boot",
        "delta",
        "object",
        "flash",
        "-- Maintainer",
        "fix",
        "release",
        "upload",
        "urgency=medium",
        "0x1f",
        "42",
        "  * ",
    ];
    let mut rng = XorShift64::new(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let x = rng.next_u64();
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(if x.is_multiple_of(9) { b'\n' } else { b' ' });
        if x.is_multiple_of(5) {
            out.extend_from_slice(format!("{}", x % 10_000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = XorShift64::new(3);
    vec![
        ("empty", Vec::new()),
        ("one byte", b"a".to_vec()),
        ("two bytes", b"ab".to_vec()),
        ("three bytes", b"abc".to_vec()),
        ("zeros", vec![0; 100_000]),
        ("random: stored blocks", rng.bytes(200_000)),
        ("random under the window", rng.bytes(40_000)),
        ("text over the window", text(1, 150_000)),
        (
            "text of 1 MiB: many slides and block cuts",
            text(2, 1 << 20),
        ),
        (
            "repetitive lines",
            (0..4000)
                .flat_map(|i| format!("line {i} of a list {}\n", i % 13).into_bytes())
                .collect(),
        ),
        ("code", test_support::image::code(5, 300_000, 0x40_0000)),
    ]
}

#[test]
fn every_level_makes_what_gzip_makes_at_every_chunk_size() {
    let mut g = GnuGzip::new();
    for (name, plain) in inputs() {
        for level in 4..=9u8 {
            let want = gzip_level(&plain, level);
            let want = stream_of(&want);
            let chunks: &[usize] = if plain.len() <= 200_000 && level == 9 {
                &[1, 7, 512, 64 * 1024, usize::MAX]
            } else {
                &[7, 64 * 1024, usize::MAX]
            };
            for &chunk in chunks {
                let got = ours(&mut g, level, &plain, chunk);
                assert!(
                    got == want,
                    "{name} at -{level}, pieces of {chunk}: {} bytes against gzip's {}, first \
                     difference at {:?}",
                    got.len(),
                    want.len(),
                    got.iter().zip(want).position(|(a, b)| a != b)
                );
            }
        }
    }
}

#[test]
fn deflaters_dispatch_on_the_parameters_and_refuse_the_rest() {
    let plain = text(9, 300_000);
    let mut d = Deflaters::new();
    let gnu = deflate_all(&mut d, DeflateParams::gzip(9), &plain).unwrap();
    assert_eq!(gnu, stream_of(&gzip_level(&plain, 9)));
    let zlib = deflate_all(&mut d, DeflateParams::BEST, &plain).unwrap();
    assert_ne!(zlib, gnu, "zlib cuts 300 KB of text into other blocks");
    assert_eq!(
        zlib,
        agent_core::install::Zlib::new()
            .deflate_all(DeflateParams::BEST, &plain)
            .unwrap()
    );
    // GNU gzip's fast levels (1 to 3) are another matcher: not supported.
    for level in [1, 2, 3] {
        assert_eq!(
            d.start(DeflateParams::gzip(level)),
            Err(RedeflateError::Unsupported)
        );
    }
    assert!(Deflaters::supports(DeflateParams::gzip(4)));
    assert!(!Deflaters::supports(DeflateParams::gzip(3)));
}

#[test]
fn gzip_parameters_parse_only_as_gzip_takes_them() {
    let ok = DeflateParams::parse([9, 15, 8, DeflateParams::GZIP]).unwrap();
    assert_eq!(ok, DeflateParams::gzip(9));
    assert!(ok.is_gzip() && !DeflateParams::BEST.is_gzip());
    assert_eq!(ok.bytes(), [9, 15, 8, 0x80]);
    for bad in [
        [3, 15, 8, 0x80],
        [10, 15, 8, 0x80],
        [9, 14, 8, 0x80],
        [9, 15, 9, 0x80],
        [9, 15, 8, 5],
        [9, 15, 8, 0x81],
    ] {
        assert!(DeflateParams::parse(bad).is_err(), "{bad:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any bytes (a mix of runs, text and noise, up to 3 windows), any level, any pieces.
    #[test]
    fn any_input_makes_what_gzip_makes(
        seed in any::<u64>(),
        len in 0usize..200_000,
        level in 4u8..=9,
        chunk in 1usize..100_000,
    ) {
        let mut rng = XorShift64::new(seed | 1);
        let mut plain = Vec::with_capacity(len);
        while plain.len() < len {
            let (kind, n) = (rng.below(3), rng.below(5000) as usize);
            match kind {
                0 => plain.extend(std::iter::repeat_n(rng.below(4) as u8, n / 8)),
                1 => plain.extend(text(rng.next_u64(), n)),
                _ => plain.extend(rng.bytes(n / 16)),
            }
        }
        plain.truncate(len);
        let want = gzip_level(&plain, level);
        let got = ours(&mut GnuGzip::new(), level, &plain, chunk);
        prop_assert!(got == stream_of(&want), "{} bytes against gzip's {}", got.len(), want.len() - 18);
    }
}

/// Inflates a raw deflate stream.
fn inflate(stream: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(stream)
        .read_to_end(&mut out)
        .expect("a valid deflate stream");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The device runs this encoder on plaintext of a part not yet verified: whatever it is
    /// (runs, periods about the window's 32 and 64 KiB, noise), the encoder neither panics
    /// nor loses a byte.
    #[test]
    fn any_input_deflates_to_a_stream_of_it(
        seed in any::<u64>(),
        len in 0usize..300_000,
        level in 4u8..=9,
        chunk in 1usize..70_000,
    ) {
        let mut rng = XorShift64::new(seed | 1);
        let mut plain = Vec::with_capacity(len);
        while plain.len() < len {
            let (kind, pick) = (rng.below(4), rng.below(70_000) as usize);
            match kind {
                0 => plain.extend(std::iter::repeat_n(pick as u8, pick)),
                1 => {
                    // A period near the window's size, repeated.
                    let period = [32_506, 32_768, 32_769, 65_274, 65_536, 258, 259][pick % 7];
                    let unit = rng.bytes(period.min(len.saturating_sub(plain.len()).max(1)));
                    for _ in 0..pick % 3 + 1 {
                        plain.extend_from_slice(&unit);
                    }
                }
                2 => plain.extend(text(rng.next_u64(), pick / 4)),
                _ => plain.extend(rng.bytes(pick / 32)),
            }
        }
        plain.truncate(len);
        let stream = ours(&mut GnuGzip::new(), level, &plain, chunk);
        prop_assert!(inflate(&stream) == plain);
    }
}
