//! Test data for the firmware: two commits sharing most objects, the updates between them
//! and the images the slots must hold, written to `tests/firmware/target/fw-data`.

use std::fs;

use agent_core::object::ObjectId;
use agent_core::wire::Codec;
use agent_core::write::UpdateWriter;
use anyhow::{ensure, Context, Result};
use test_support::rng::XorShift64;
use test_support::tree::{dir, patch_from_one, write_ops, Built, CommitInfo, Node};

use super::{data_dir, fw_dir, REF};

/// Flash address the test images are linked at (literal words point into it).
const LINK_BASE: u32 = 0x0800_0000;

/// A deterministic firmware-like image: Thumb-ish code words, string tables, and literal
/// words (4-byte aligned) holding addresses inside the image, as a linker lays them out.
fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift64::new(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let x = rng.next_u64();
        if x.is_multiple_of(5) {
            out.extend_from_slice(b"ECU diagnostic string table entry ");
        } else if x.is_multiple_of(7) {
            out.resize(out.len().next_multiple_of(4), 0);
            let target = LINK_BASE + (x >> 24) as u32 % len as u32;
            out.extend_from_slice(&target.to_le_bytes());
        } else {
            out.extend_from_slice(&((x as u16 & 0x0fff) | 0x4600).to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The next build of `old` after a small code change: `code` inserted at `at` (4-byte
/// aligned), and every literal word that pointed at or past `at` moved by its length, as a
/// relink moves them. Everything after the change shifts; few bytes really differ.
fn rebuilt(old: &[u8], at: usize, code: &[u8]) -> Vec<u8> {
    test_support::image::relinked(old, LINK_BASE, at, code)
}

/// A commit of `tree` (test-support's builder: the same objects as the flash tests build).
fn build_commit(
    tree: &Node,
    parent: Option<ObjectId>,
    version: &str,
    security_version: u64,
) -> Result<Built> {
    let Node::Dir(root) = tree else {
        unreachable!("the root is a directory")
    };
    let info = CommitInfo::new(parent, 1_760_000_000, version)
        .subject("ECU firmware")
        .security_version(security_version);
    Ok(test_support::tree::build(root, &info))
}

/// An update file to `to` (from scratch, or a delta reusing what `from` has and patching
/// each new file from the source's `firmware.bin` when the patch pays).
fn update_file(to: &Built, from: Option<&Built>, seed: &[u8; 32]) -> Result<Vec<u8>> {
    let mut w = UpdateWriter::new(
        REF,
        from.map(|f| f.commit),
        to.commit,
        to.timestamp,
        &to.version,
        "ECU firmware",
    )
    .part_size(32 * 1024)
    // The firmware's agent is built without xz, and lends deflate's 32 KiB window.
    .codec(Codec::Deflate)
    .max_dictionary(32 * 1024);
    let source = from.and_then(|f| f.root_file("firmware.bin"));
    let patch = |id: &ObjectId, b: &[u8]| source.and_then(|s| patch_from_one(s)(id, b));
    write_ops(&mut w, &to.ops(from), &patch, usize::MAX)?;
    let mut out = Vec::new();
    w.finish(Some(seed), &mut out)
        .map_err(|e| anyhow::anyhow!("writing the update: {e}"))?;
    Ok(out)
}

fn hex_bytes<const N: usize>(s: &str) -> Result<[u8; N]> {
    let s = s.trim();
    ensure!(
        s.len() == 2 * N,
        "expected {} hex digits, found {}",
        2 * N,
        s.len()
    );
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

/// Writes the scenario files into `tests/firmware/target/fw-data`: `v1.update` (from scratch,
/// security version 1), `v1-v2.update` (delta, security version 2), `v2-flipped.update` (v2
/// from scratch, one byte flipped in the middle), `v1.bin` and `v2.bin` (the images the slots
/// must hold). The firmware replays `v1.update` after v2 is marked good: below the floor.
/// The delta patches `firmware.bin` (a small code change, relinked) from v1's.
pub(crate) fn gen_data() -> Result<Sizes> {
    let fw = fw_dir();
    let seed: [u8; 32] =
        hex_bytes(&fs::read_to_string(fw.join("test-key")).context("tests/firmware/test-key")?)?;
    let public: [u8; 32] = hex_bytes(&fs::read_to_string(fw.join("test-key.pub"))?)?;
    let derived = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    ensure!(
        derived == public,
        "tests/firmware/test-key.pub is not the public key of tests/firmware/test-key"
    );

    let fw1 = image(1, 72 * 1024 + 13);
    // The next build: 40 bytes of new code a third of the way in, everything after it
    // relinked.
    let fw2 = rebuilt(&fw1, 24 * 1024, &image(9, 40));
    let cal = image(3, 2048);
    let tree = |fw: Vec<u8>, extra: bool| {
        let mut lib = vec![
            ("crypto.bin", Node::File(image(4, 6000))),
            (
                "deep",
                dir(vec![(
                    "a",
                    dir(vec![(
                        "b",
                        dir(vec![("c.txt", Node::File(b"c\n".to_vec()))]),
                    )]),
                )]),
            ),
        ];
        if extra {
            lib.push(("uds.bin", Node::File(image(5, 900))));
        }
        dir(vec![
            (
                "config",
                dir(vec![
                    ("app.cfg", Node::File(b"can.bitrate=500000\n".to_vec())),
                    ("cal.bin", Node::File(cal.clone())),
                ]),
            ),
            ("firmware.bin", Node::File(fw)),
            ("lib", dir(lib)),
        ])
    };
    // v2 at a higher security version: once it is marked good, v1.update is below the floor.
    let v1 = build_commit(&tree(fw1.clone(), false), None, "1.0.0", 1)?;
    let v2 = build_commit(&tree(fw2.clone(), true), Some(v1.commit), "1.1.0", 2)?;
    let full1 = update_file(&v1, None, &seed)?;
    let delta = update_file(&v2, Some(&v1), &seed)?;
    let full2 = update_file(&v2, None, &seed)?;
    let mut flipped = full2.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let data = data_dir();
    fs::create_dir_all(&data)?;
    for (name, bytes) in [
        ("v1.update", &full1),
        ("v1-v2.update", &delta),
        ("v2-flipped.update", &flipped),
        ("v1.bin", &fw1),
        ("v2.bin", &fw2),
    ] {
        fs::write(data.join(name), bytes)?;
    }
    eprintln!(
        "xtask: firmware data: v1.update {} B, v1-v2.update {} B (delta), v2-flipped.update {} B (byte {mid} flipped), images {} and {} B",
        full1.len(),
        delta.len(),
        flipped.len(),
        fw1.len(),
        fw2.len()
    );
    Ok(Sizes {
        full: full2.len() as u64,
        delta: delta.len() as u64,
    })
}

/// Bytes of the update files to the second build: from scratch and as a delta from the first.
pub(crate) struct Sizes {
    pub(crate) full: u64,
    pub(crate) delta: u64,
}
