//! The xz codec and the lent window: round trips through every BCJ filter, the writer's
//! filter choice, dictionaries a device cannot lend and unknown filters refused before
//! anything reaches the store, deflate written for a small window.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;

use agent_core::install::{
    InstallError, Installer, Policy, XzDecode, XzDecodeError, XzDecoder, XzStep, INFLATE_WINDOW,
};
use agent_core::object::ObjectId;
use agent_core::wire::{Codec, Filter, FormatError, Superblock};
use agent_core::write::{Locality, UpdateWriter};
use common::*;

const TS: u64 = 1_700_000_000;

fn unsigned() -> Policy<'static> {
    Policy::require(&[]).allow_unsigned()
}

fn superblock(f: &[u8]) -> Superblock<'_> {
    let n = u32::from_le_bytes(f[12..16].try_into().unwrap()) as usize;
    let version = u16::from_le_bytes([f[8], f[9]]);
    Superblock::parse_version(&f[16..16 + n], version).unwrap()
}

/// Installs `file` through a window of `window` bytes, in chunks of `chunk`.
fn install_with(
    file: &[u8],
    window: usize,
    chunk: usize,
) -> (Result<ObjectId, InstallError<Infallible>>, MemStore) {
    let mut store = MemStore::default();
    // The first 32 KiB (at most) are the installer's window, the rest the xz decoder's
    // dictionary.
    let ring = window.min(INFLATE_WINDOW);
    let mut win = vec![0u8; ring];
    let mut dict = vec![0u8; window - ring];
    let mut xz = XzDecoder::new(&mut dict);
    let mut inst = Installer::new(unsigned(), &mut win).with_xz(&mut xz);
    let r = install_chunks(&mut inst, &mut store, file, &[chunk]).map(|i| i.commit);
    (r, store)
}

/// An x86-64 ELF header (enough for the writer's `e_machine` sniffing) and code-like bytes
/// with relative calls (`e8` + offset), which the x86 BCJ filter turns absolute.
fn elf(machine: u16, entry: u32, len: usize) -> Vec<u8> {
    let mut e = vec![0u8; 64];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2;
    e[5] = 1;
    e[18..20].copy_from_slice(&machine.to_le_bytes());
    e[24..28].copy_from_slice(&entry.to_le_bytes());
    let mut i = 0u32;
    while e.len() < len {
        e.extend_from_slice(&[0x48, 0x89, 0xe5, 0xe8]);
        e.extend_from_slice(&(0x1000u32.wrapping_sub(i * 9)).to_le_bytes());
        e.extend_from_slice(&[0x5d, 0xc3, 0x90]);
        i += 1;
    }
    e.truncate(len);
    e
}

#[test]
fn xz_parts_round_trip_through_every_filter_in_any_chunking() {
    let (records, ops, to) = minimal_records(TS);
    for filter in [
        Filter::None,
        Filter::X86,
        Filter::Arm,
        Filter::ArmThumb,
        Filter::Arm64,
    ] {
        let f = fresh_update(
            to,
            TS,
            ops,
            &[RawPart::xz(records.clone(), ops, filter)],
            None,
        );
        let sb = superblock(&f);
        assert_eq!((sb.parts[0].codec, sb.parts[0].filter), (Codec::Xz, filter));
        let mut logs = Vec::new();
        for chunk in [1, 7, 512, 64 * 1024, f.len()] {
            let (r, s) = install_with(&f, INFLATE_WINDOW + RAW_DICTIONARY as usize, chunk);
            assert_eq!(r, Ok(to), "{filter:?} in chunks of {chunk}");
            s.assert_committed(&to);
            logs.push(s.log);
        }
        assert!(logs.windows(2).all(|w| w[0] == w[1]), "{filter:?}");
    }
}

/// A decoder that holds back everything it decodes until a call without input, as a decoder
/// on another core may (the installer's codec interface allows it): the installer must take
/// the held output at the end of each part, in order.
struct Lagging<'d> {
    inner: XzDecoder<'d>,
    held: Vec<u8>,
    at: usize,
    ended: bool,
}

impl XzDecode for Lagging<'_> {
    fn dictionary_len(&self) -> usize {
        XzDecode::dictionary_len(&self.inner)
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.held.clear();
        self.at = 0;
        self.ended = false;
    }

    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<XzStep, XzDecodeError> {
        if !input.is_empty() {
            let mut tmp = vec![0u8; 4096];
            let mut consumed = 0;
            loop {
                let r = self.inner.decode(&input[consumed..], &mut tmp)?;
                consumed += r.consumed;
                self.held.extend_from_slice(&tmp[..r.produced]);
                self.ended |= r.end;
                if r.end || (consumed == input.len() && r.produced < tmp.len()) {
                    break;
                }
            }
            return Ok(XzStep {
                consumed,
                produced: 0,
                end: false,
            });
        }
        let n = (self.held.len() - self.at).min(output.len()).min(1000);
        output[..n].copy_from_slice(&self.held[self.at..self.at + n]);
        self.at += n;
        Ok(XzStep {
            consumed: 0,
            produced: n,
            end: n == 0 && self.ended,
        })
    }
}

#[test]
fn a_decoder_that_holds_output_back_installs_the_same() {
    let (records, ops, to) = minimal_records(TS);
    let f = fresh_update(
        to,
        TS,
        ops,
        &[RawPart::xz(records.clone(), ops, Filter::None)],
        None,
    );
    let (direct, s) = install_with(&f, INFLATE_WINDOW + RAW_DICTIONARY as usize, 4096);
    assert_eq!(direct, Ok(to));
    for chunk in [1, 7, 512, f.len()] {
        let mut store = MemStore::default();
        let mut win = vec![0u8; INFLATE_WINDOW];
        let mut dict = vec![0u8; RAW_DICTIONARY as usize];
        let mut lagging = Lagging {
            inner: XzDecoder::new(&mut dict),
            held: Vec::new(),
            at: 0,
            ended: false,
        };
        let mut xz = XzDecoder::with_decoder(&mut lagging);
        let mut inst = Installer::new(unsigned(), &mut win).with_xz(&mut xz);
        let r = install_chunks(&mut inst, &mut store, &f, &[chunk]).map(|i| i.commit);
        assert_eq!(r, Ok(to), "in chunks of {chunk}");
        store.assert_committed(&to);
        assert_eq!(store.log, s.log, "in chunks of {chunk}");
    }
}

/// A tree of a text file `readme`, the executables `code` (name, bytes) and twenty notes.
fn code_tree(readme: &str, code: &[(&str, Vec<u8>)]) -> Tree {
    let mut t = Tree::default().file(readme, "some text\n".repeat(300));
    for (name, bytes) in code {
        t = t.file(name, bytes.clone());
    }
    for i in 0..20 {
        t = t.file(&format!("note{i}.txt"), format!("note {i}\n"));
    }
    t
}

/// `f` installs `commit` fed in chunks of 1, 7 and 4096 bytes with `window` bytes lent.
fn installs_in_chunks(f: &[u8], window: usize, commit: &ObjectId) {
    for chunk in [1, 7, 4096] {
        let (r, s) = install_with(f, window, chunk);
        assert_eq!(r.as_ref(), Ok(commit), "in chunks of {chunk}");
        s.assert_committed(commit);
    }
}

#[test]
fn the_writer_picks_the_filter_of_each_executable() {
    let t = code_tree(
        "readme.txt",
        &[
            ("x86", elf(62, 0x1000, 20_000)),
            ("arm", elf(40, 0x1001, 20_000)),
            ("arm64", elf(183, 0x1000, 20_000)),
        ],
    );
    let built = build(&t, None, TS, &HashSet::new());
    // Grouped by name: each instruction set in parts of its own (by tree, the default, a
    // part takes the filter of most of its code: `parts_in_tree_order_take_the_filter_of_most_of_their_code`).
    let f = write_update_xz(&built, 1 << 20, Locality::Name);
    let sb = superblock(&f);
    let filters: Vec<Filter> = sb.parts.iter().map(|p| p.filter).collect();
    for want in [Filter::X86, Filter::ArmThumb, Filter::Arm64, Filter::None] {
        assert!(filters.contains(&want), "{want:?} not among {filters:?}");
    }
    // Executables first, each kind in a part of its own; every part compressed.
    assert_eq!(
        &filters[..3],
        &[Filter::X86, Filter::ArmThumb, Filter::Arm64]
    );
    assert!(
        sb.parts.iter().all(|p| p.codec == Codec::Xz),
        "{:?}",
        sb.parts
    );
    // The dictionary fits the largest part, not the 8 MiB allowed.
    assert!(sb.dictionary <= 128 * 1024, "{}", sb.dictionary);
    installs_in_chunks(&f, INFLATE_WINDOW + sb.dictionary as usize, &built.commit);
    // The same tree in deflate installs the same objects.
    let d = write_update_codec(&built, None, None, 1 << 20, Codec::Deflate);
    let (r, s) = install_with(&d, INFLATE_WINDOW, d.len());
    assert_eq!(r, Ok(built.commit));
    let (_, sx) = install_with(&f, INFLATE_WINDOW + sb.dictionary as usize, f.len());
    assert_eq!(s.objects, sx.objects);
}

#[test]
fn parts_in_tree_order_take_the_filter_of_most_of_their_code() {
    // An x86 system with one ARM helper and text: in tree order, parts of equal size (no
    // part size asked for), each through the filter of most of its ELF bytes.
    let t = code_tree(
        "a-readme.txt",
        &[
            ("b-x86", elf(62, 0x1000, 60_000)),
            ("c-arm", elf(40, 0x1001, 20_000)),
            ("d-x86", elf(62, 0x1000, 30_000)),
        ],
    );
    let built = build(&t, None, TS, &HashSet::new());
    let mut w = UpdateWriter::new(
        REF,
        None,
        built.commit,
        built.timestamp,
        "1.0",
        "test commit",
    )
    .codec(Codec::Xz);
    for op in &built.ops {
        if let Op::Write(k, id, b) = op {
            w.write_object(*k, *id, b).unwrap();
        }
    }
    let mut f = Vec::new();
    w.finish(None, &mut f).unwrap();
    let sb = superblock(&f);
    // 115 KB, far below the 8 MiB dictionary allowed: one part, x86 (90 KB of code) rather
    // than ARM (20 KB).
    let filters: Vec<Filter> = sb.parts.iter().map(|p| p.filter).collect();
    assert_eq!(filters, vec![Filter::X86]);
    installs_in_chunks(&f, INFLATE_WINDOW + sb.dictionary as usize, &built.commit);
}

/// A window too small for the file: refused at the superblock, naming both sizes, and the
/// store sees nothing but the abort.
fn refused_for_the_window(
    file: &[u8],
    window: usize,
    want: InstallError<Infallible>,
    words: &[&str],
) {
    for chunk in [1, 7, 512, file.len()] {
        let (r, s) = install_with(file, window, chunk);
        assert_eq!(r.as_ref(), Err(&want), "chunks of {chunk}");
        assert_eq!(s.log, vec!["abort".to_string()], "chunks of {chunk}");
        s.assert_failed_cleanly();
    }
    let msg = want.to_string();
    for w in words {
        assert!(msg.contains(w), "{w:?} not in {msg:?}");
    }
}

#[test]
fn a_dictionary_larger_than_lent_is_refused_before_the_store() {
    let (records, ops, to) = minimal_records(TS);
    let xz = fresh_update(
        to,
        TS,
        ops,
        &[RawPart::xz(records.clone(), ops, Filter::X86)],
        None,
    );
    // 32 KiB ring + 16 KiB of dictionary, the file needs 64 KiB.
    refused_for_the_window(
        &xz,
        INFLATE_WINDOW + 16 * 1024,
        InstallError::DictionaryTooLarge {
            needed: 65536,
            lent: 16384,
        },
        &["65536", "16384", "--max-dictionary 16384"],
    );
    // Exactly enough installs.
    let (r, _) = install_with(&xz, INFLATE_WINDOW + RAW_DICTIONARY as usize, 7);
    assert_eq!(r, Ok(to));
    // Deflate: the file's 32 KiB window against an MCU's 8 KiB.
    let deflate = fresh_update(to, TS, ops, &[RawPart::deflate(records, ops)], None);
    refused_for_the_window(
        &deflate,
        8 * 1024,
        InstallError::DictionaryTooLarge {
            needed: 32768,
            lent: 8192,
        },
        &["32768", "8192", "--max-dictionary 8192"],
    );
    // A lent window that is not a power of two: its largest power of two counts.
    refused_for_the_window(
        &deflate,
        30_000,
        InstallError::DictionaryTooLarge {
            needed: 32768,
            lent: 16384,
        },
        &["32768", "16384"],
    );
}

#[test]
fn a_superblock_larger_than_the_window_is_refused() {
    let (records, ops, to) = minimal_records(TS);
    let f = fresh_update(to, TS, ops, &[RawPart::stored(records, ops)], None);
    let n = u32::from_le_bytes(f[12..16].try_into().unwrap());
    // A 64-byte window holds the header but not the superblock.
    refused_for_the_window(
        &f,
        64,
        InstallError::WindowTooSmall {
            needed: 16 + n,
            lent: 64,
        },
        &[&format!("{}", 16 + n), "64-byte window"],
    );
    let (r, _) = install_with(&f, 8, 1);
    assert_eq!(
        r,
        Err(InstallError::WindowTooSmall {
            needed: 16,
            lent: 8
        })
    );
    // A stored file needs no more than its superblock: 4 KiB is plenty.
    let (r, _) = install_with(&f, 4096, 1);
    assert_eq!(r, Ok(to));
}

#[test]
fn an_unknown_filter_is_refused_before_the_store() {
    let (records, ops, to) = minimal_records(TS);
    let f = raw_update(
        None,
        to,
        TS,
        ops,
        &[RawPart::xz(records.clone(), ops, Filter::X86)],
        None,
        |sb, _| sb.parts[0].filter = Filter::Unknown(9),
    );
    let want = InstallError::Format(FormatError::UnknownFilter { part: 0, filter: 9 });
    refused_for_the_window(
        &f,
        INFLATE_WINDOW + RAW_DICTIONARY as usize,
        want,
        &["part 0", "filter 9", "upgrade the agent"],
    );
    // A filter on a deflate part is malformed too.
    let f = raw_update(
        None,
        to,
        TS,
        ops,
        &[RawPart::deflate(records.clone(), ops)],
        None,
        |sb, _| sb.parts[0].filter = Filter::Arm,
    );
    refused_for_the_window(
        &f,
        INFLATE_WINDOW,
        InstallError::Format(FormatError::FilterWithoutXz { part: 0, codec: 1 }),
        &["part 0", "codec 1"],
    );
    // The wrong (known) filter decodes x86 code to other bytes: refused, nothing committed.
    let t = Tree::default().file("prog", elf(62, 0x1000, 8000));
    let built = build(&t, None, TS, &HashSet::new());
    let mut records = Vec::new();
    for op in &built.ops {
        if let Op::Write(k, id, b) = op {
            records.extend(rec_write(*k, *id, b));
        }
    }
    let n = built.ops.len() as u32;
    for (filter, installs) in [(Filter::X86, true), (Filter::Arm64, false)] {
        let f = raw_update(
            None,
            built.commit,
            TS,
            n,
            &[RawPart::xz(records.clone(), n, Filter::X86)],
            None,
            |sb, _| sb.parts[0].filter = filter,
        );
        let (r, s) = install_with(&f, INFLATE_WINDOW + RAW_DICTIONARY as usize, 7);
        assert_eq!(r.is_ok(), installs, "{filter:?}: {r:?}");
        if !installs {
            s.assert_failed_cleanly();
        }
    }
}

#[test]
fn damaged_and_cut_xz_parts_are_refused_in_any_chunking() {
    let (records, ops, to) = minimal_records(TS);
    let f = fresh_update(
        to,
        TS,
        ops,
        &[RawPart::xz(records, ops, Filter::None)],
        None,
    );
    let window = INFLATE_WINDOW + RAW_DICTIONARY as usize;
    let start = f.len() - superblock(&f).parts[0].size as usize;
    // Every byte of the part flipped: an error (LZMA2, a record check or the part's hash),
    // the same in every chunking, nothing committed.
    for at in start..f.len() {
        let mut g = f.clone();
        g[at] ^= 0x10;
        let (r0, s0) = install_with(&g, window, g.len());
        assert!(r0.is_err(), "flip at {at} installed");
        s0.assert_failed_cleanly();
        for chunk in [1, 7, 512] {
            let (r, s) = install_with(&g, window, chunk);
            assert_eq!(r, r0, "flip at {at}, chunks of {chunk}");
            assert_eq!(s.log, s0.log, "flip at {at}, chunks of {chunk}");
        }
    }
    // A part whose LZMA2 stream is cut short (the superblock says so, the hash matches):
    // the stream does not end with the part.
    let cut = raw_update(
        None,
        to,
        TS,
        ops,
        &[RawPart::xz(minimal_records(TS).0, ops, Filter::None)],
        None,
        |sb, parts| {
            let n = parts[0].len() - 1;
            parts[0].truncate(n);
            sb.parts[0].size -= 1;
            use sha2::Digest;
            sb.parts[0].sha256 = sha2::Sha256::digest(&parts[0]).into();
        },
    );
    let (r, s) = install_with(&cut, window, 7);
    assert_eq!(r, Err(InstallError::Lzma { part: 0 }));
    s.assert_failed_cleanly();
    // Bytes after the stream's end marker, inside the part.
    let long = raw_update(
        None,
        to,
        TS,
        ops,
        &[RawPart::xz(minimal_records(TS).0, ops, Filter::None)],
        None,
        |sb, parts| {
            parts[0].extend_from_slice(&[0; 8]);
            sb.parts[0].size += 8;
            use sha2::Digest;
            sb.parts[0].sha256 = sha2::Sha256::digest(&parts[0]).into();
        },
    );
    let (r, s) = install_with(&long, window, 7);
    assert!(
        matches!(
            r,
            Err(InstallError::Lzma { part: 0 } | InstallError::PartTrailing { part: 0 })
        ),
        "{r:?}"
    );
    s.assert_failed_cleanly();
}

#[test]
fn deflate_written_for_a_small_window_installs_through_it() {
    // Well compressible content larger than the window, so that deflate would reach back
    // further than 8 KiB if it could.
    let text: Vec<u8> = (0..60_000u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz"[(i * 7 % 26) as usize] ^ (i / 9000) as u8)
        .collect();
    let mut t = Tree::default().file("text", text.clone());
    t = t.file("again", [text.clone(), text].concat());
    let built = build(&t, None, TS, &HashSet::new());
    let write = |max: u64| {
        let mut w = UpdateWriter::new(REF, None, built.commit, built.timestamp, "1.0", "s")
            .codec(Codec::Deflate)
            .max_dictionary(max);
        for op in &built.ops {
            match op {
                Op::Write(k, id, b) => w.write_object(*k, *id, b).unwrap(),
                Op::Reuse(k, id) => w.reuse_object(*k, *id),
            }
        }
        let mut out = Vec::new();
        w.finish(None, &mut out).unwrap();
        out
    };
    let small = write(8192);
    let sb = superblock(&small);
    assert_eq!(sb.dictionary, 8192);
    assert!(sb.parts.iter().any(|p| p.codec == Codec::Deflate));
    for chunk in [1, 7, 512, small.len()] {
        let (r, s) = install_with(&small, 8192, chunk);
        assert_eq!(r, Ok(built.commit), "chunks of {chunk}");
        s.assert_committed(&built.commit);
    }
    // The default window (32 KiB) needs 32 KiB, and is smaller.
    let full = write(u64::from(agent_core::write::DEFAULT_MAX_DICTIONARY));
    assert_eq!(superblock(&full).dictionary, 32768);
    assert!(
        full.len() < small.len(),
        "{} vs {}",
        full.len(),
        small.len()
    );
    let (r, _) = install_with(&full, 8192, 512);
    assert_eq!(
        r,
        Err(InstallError::DictionaryTooLarge {
            needed: 32768,
            lent: 8192
        })
    );
    // Below 4 KiB nothing can be written.
    let mut w = UpdateWriter::new(REF, None, built.commit, built.timestamp, "1.0", "s")
        .max_dictionary(4095);
    for op in &built.ops {
        if let Op::Write(k, id, b) = op {
            w.write_object(*k, *id, b).unwrap();
        }
    }
    assert!(matches!(
        w.finish(None, &mut Vec::new()),
        Err(agent_core::write::WriteError::DictionaryTooSmall(4095))
    ));
}
