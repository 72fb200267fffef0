//! The worked example of docs/FORMAT.md §6 ("Redeflate records"): the redeflate record of a
//! small gzip file, shown byte for byte there and kept true here. The record is built by hand
//! from the layout the spec gives, checked to be exactly what the writer makes of that file,
//! and installed (whole and in small chunks) to give back the object byte for byte.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::{Read, Write};

use agent_core::install::{InstallError, Installed, Installer, Zlib};
use agent_core::object::ObjectId;
use agent_core::wire::{
    Codec, DeflateParams, FormatError, OpRepr, REDEFLATE_FORMAT_VERSION, REDEFLATE_HEADER_LEN,
};
use agent_core::ObjectKind;
use common::*;

const TS: u64 = 1_700_000_000;

/// The text the gzip file holds.
const TEXT: &[u8] = b"hello, hello, hello, world\n";

/// `printf 'hello, hello, hello, world\n' | gzip -9n`, as GNU gzip 1.12 writes it: the member
/// header (no flags, mtime 0, XFL 2 for `-9`, OS 3 Unix), the raw deflate stream, CRC-32 and
/// ISIZE.
const GZIP: [u8; 35] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, // header
    0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xd7, 0x51, 0xc8, 0x40, 0xa1, 0xca, 0xf3, 0x8b, 0x72, 0x52, 0xb8,
    0x00, // stream
    0xc3, 0x70, 0xa3, 0xc2, 0x1b, 0x00, 0x00, 0x00, // trailer
];

/// zlib's raw deflate of `plain` at `level` (window 15, memLevel 8, default strategy), through
/// flate2's own encoder rather than the installer's.
fn zlib_raw(plain: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(plain).unwrap();
    e.finish().unwrap()
}

/// The example: the file object of `hello.gz` (mode 0644, owner 0:0, content [`GZIP`]) and
/// its redeflate record, built from the layout of docs/FORMAT.md.
struct Example {
    object: Vec<u8>,
    id: ObjectId,
    record: Vec<u8>,
}

fn example() -> Example {
    // The gzip file is zlib's level-9 stream between the member header and the trailer.
    let stream = zlib_raw(TEXT, 9);
    let gz = test_support::gzip::member(TEXT, 9, None);
    assert_eq!(gz[10..gz.len() - 8], stream);
    assert_eq!(gz, GZIP, "gzip -9n and zlib -9 agree on this text");
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&GZIP[..])
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated, TEXT);

    let object = file_object(&GZIP);
    let id = ObjectId::of(&object);
    let (head, tail) = (24 + 10, 8);
    let op = OpRepr::Redeflate {
        kind: ObjectKind::File,
        id,
        len: object.len() as u64,
        head: head as u32,
        plain: TEXT.len() as u64,
        tail: tail as u32,
        params: DeflateParams::BEST,
    };
    let mut record = vec![0u8; REDEFLATE_HEADER_LEN];
    op.emit(&mut record);
    record.extend_from_slice(&object[..head]);
    record.extend_from_slice(TEXT);
    record.extend_from_slice(&object[object.len() - tail..]);
    assert_eq!(OpRepr::parse(&record[..REDEFLATE_HEADER_LEN]), Ok(op));
    Example { object, id, record }
}

/// The tree of the example: `hello.gz` alone in the root.
fn built() -> Built {
    build(
        &Tree::default().file("hello.gz", GZIP.to_vec()),
        None,
        TS,
        &HashSet::new(),
    )
}

/// The decoded records of each part of `file` (xz or stored parts, as the writer makes them).
fn decoded_parts(file: &[u8]) -> Vec<Vec<u8>> {
    let (sb, end) = test_support::wire::superblock_at(file);
    let mut at = end + if file[end] == 1 { 65 } else { 1 };
    let mut parts = Vec::new();
    for p in &sb.parts {
        let bytes = &file[at..at + p.size as usize];
        at += p.size as usize;
        let records = match p.codec {
            Codec::Xz => {
                let mut opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
                opts.dict_size(sb.dictionary);
                let mut filters = liblzma::stream::Filters::new();
                filters.lzma2(&opts);
                let stream = liblzma::stream::Stream::new_raw_decoder(&filters).unwrap();
                let mut out = Vec::new();
                liblzma::read::XzDecoder::new_stream(bytes, stream)
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            Codec::Stored => bytes.to_vec(),
            c => panic!("unexpected codec {c:?}"),
        };
        assert_eq!(records.len(), p.uncompressed_size as usize);
        parts.push(records);
    }
    assert_eq!(at, file.len());
    parts
}

/// Installs `file` with zlib's encoder lent, in chunks of `sizes`.
fn install_redeflating(
    store: &mut MemStore,
    file: &[u8],
    sizes: &[usize],
) -> Result<Installed, InstallError<Infallible>> {
    let keys = [public_key(&SEED)];
    let mut zlib = Zlib::new();
    lent!(win, xz);
    let mut inst = Installer::new(policy(&keys), win)
        .with_xz(xz)
        .with_redeflate(&mut zlib);
    install_chunks(&mut inst, store, file, sizes)
}

/// docs/FORMAT.md shows the redeflate example byte for byte; this keeps it true, and checks
/// that the writer makes exactly that record of the file and that it installs.
#[test]
fn format_redeflate_example_matches_the_spec() {
    let ex = example();
    let record_dump = hex_dump(
        &ex.record,
        &[
            ("Redeflate record header", REDEFLATE_HEADER_LEN),
            ("head: the file object's header", 24),
            ("head: the gzip member header", 10),
            ("the plaintext", TEXT.len()),
            ("tail: the gzip trailer, CRC-32 and ISIZE", 8),
        ],
    );
    let object_dump = hex_dump(
        &ex.object,
        &[
            ("the file object's header", 24),
            ("the gzip member header", 10),
            (
                "the raw deflate stream the device rebuilds",
                GZIP.len() - 18,
            ),
            ("the gzip trailer", 8),
        ],
    );
    if std::env::var_os("PRINT_FORMAT_EXAMPLE").is_some() {
        println!(
            "object {} ({} bytes)\n{record_dump}\n{object_dump}",
            ex.id,
            ex.object.len()
        );
    }

    // The writer makes exactly this record of the file, in a file of format version 4: its
    // only part holds the root dirmeta (34 + 56 bytes), the record, the dirtree and the commit.
    let b = built();
    let file = write_update(&b, None, Some(&SEED), 1 << 20);
    assert_eq!(u16::from_le_bytes([file[8], file[9]]), 4);
    assert_eq!(REDEFLATE_FORMAT_VERSION, 4);
    let parts = decoded_parts(&file);
    assert_eq!(parts.len(), 1);
    let at = 42 + 14;
    assert_eq!(parts[0][at], 4, "the record follows the dirmeta's Write");
    assert_eq!(&parts[0][at..at + ex.record.len()], &ex.record[..]);

    // Installed, whole and in small chunks, the record gives back the object byte for byte.
    for sizes in [&[file.len()][..], &[1], &[7, 61]] {
        let mut store = MemStore::default();
        install_redeflating(&mut store, &file, sizes).unwrap();
        store.assert_committed(&b.commit);
        assert_eq!(store.objects[&(ObjectKind::File, ex.id)], ex.object);
    }

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md");
    let doc = std::fs::read_to_string(path).expect("docs/FORMAT.md");
    assert!(
        doc.contains(&record_dump) && doc.contains(&object_dump),
        "the redeflate example in docs/FORMAT.md is out of date; run with PRINT_FORMAT_EXAMPLE=1 and paste"
    );
}

/// What the spec says a device does with the example's record when it cannot rebuild it, or
/// when the file's version predates redeflate records.
#[test]
fn the_example_is_refused_without_an_encoder_or_before_version_4() {
    let ex = example();
    let b = built();
    let file = write_update(&b, None, Some(&SEED), 1 << 20);
    let keys = [public_key(&SEED)];

    // No encoder lent: refused at the record, before its object reaches the store.
    let mut store = MemStore::default();
    let e = install_all(&mut store, &file, policy(&keys)).unwrap_err();
    assert_eq!(
        e,
        InstallError::RedeflateUnsupported {
            id: ex.id,
            params: DeflateParams::BEST
        }
    );
    store.assert_failed_cleanly();
    assert!(
        !store.log.iter().any(|l| l.starts_with("begin file")),
        "{:?}",
        store.log
    );

    // The same records by hand, in a stored part: installed in version 4, refused as an
    // unknown operation in version 3.
    let records = decoded_parts(&file).remove(0);
    let ops = b.ops.len() as u32;
    let hand = |version| {
        raw_update_version(
            version,
            None,
            b.commit,
            TS,
            ops,
            &[RawPart::stored(records.clone(), ops)],
            Some(&SEED),
            |_, _| {},
        )
    };
    let mut store = MemStore::default();
    install_redeflating(&mut store, &hand(4), &[3]).unwrap();
    assert_eq!(store.objects[&(ObjectKind::File, ex.id)], ex.object);
    let mut store = MemStore::default();
    let e = install_redeflating(&mut store, &hand(3), &[3]).unwrap_err();
    assert_eq!(e, InstallError::Format(FormatError::UnknownOp(4)));
    store.assert_failed_cleanly();
}

/// The example's record with its header changed by `f` (the file header's content size
/// following its `L`) and its plaintext by `plain`, in the records of the example's update (by
/// hand, a stored part of format version 4).
fn hand_file(f: impl FnOnce(&mut OpRepr), plain: &[u8]) -> (Vec<u8>, usize) {
    let ex = example();
    let b = built();
    let file = write_update(&b, None, Some(&SEED), 1 << 20);
    let records = decoded_parts(&file).remove(0);
    let at = 42 + 14;
    let mut op = OpRepr::parse(&records[at..at + REDEFLATE_HEADER_LEN]).unwrap();
    f(&mut op);
    let mut rec = vec![0u8; REDEFLATE_HEADER_LEN];
    op.emit(&mut rec);
    rec.extend_from_slice(&ex.object[..34]);
    // The file header's content size follows `L`, so that only the stream can be wrong.
    if let OpRepr::Redeflate { len, .. } = op {
        let size = len.saturating_sub(24);
        rec[REDEFLATE_HEADER_LEN + 12..REDEFLATE_HEADER_LEN + 20]
            .copy_from_slice(&size.to_le_bytes());
    }
    rec.extend_from_slice(plain);
    rec.extend_from_slice(&ex.object[51..]);
    let mut all = records[..at].to_vec();
    all.extend_from_slice(&rec);
    all.extend_from_slice(&records[at + ex.record.len()..]);
    let ops = b.ops.len() as u32;
    let part_len = all.len();
    let f = raw_update_version(
        4,
        None,
        b.commit,
        TS,
        ops,
        &[RawPart::stored(all, ops)],
        Some(&SEED),
        |_, _| {},
    );
    (f, part_len)
}

/// Installs `file` with zlib's encoder lent, in several chunkings: each fails with `want`, the
/// file object never reaches the store when `before_store`, and nothing is committed.
fn refused(file: &[u8], want: &InstallError<Infallible>, before_store: bool) {
    for sizes in [&[file.len()][..], &[1], &[7]] {
        let mut store = MemStore::default();
        let e = install_redeflating(&mut store, file, sizes).unwrap_err();
        assert_eq!(&e, want, "chunks {sizes:?}");
        store.assert_failed_cleanly();
        let begun = store.log.iter().any(|l| l.starts_with("begin file"));
        assert_eq!(begun, !before_store, "{:?}", store.log);
    }
}

/// The reader's checks of docs/FORMAT.md §6 ("Redeflate records"), each on the example's
/// record made wrong in one way.
#[test]
fn the_readers_checks_on_the_example() {
    let ex = example();
    let set = |f: fn(&mut OpRepr)| hand_file(f, TEXT).0;
    let params = |p: [u8; 4]| DeflateParams::parse(p).unwrap();

    // Unchanged, the hand-made file installs.
    let mut store = MemStore::default();
    install_redeflating(&mut store, &set(|_| {}), &[5]).unwrap();
    assert_eq!(store.objects[&(ObjectKind::File, ex.id)], ex.object);

    // Parameters out of range: refused when the header is parsed.
    let (mut file, _) = hand_file(|_| {}, TEXT);
    let p = file
        .windows(4)
        .rposition(|w| w == [9, 15, 8, 0])
        .expect("the parameters");
    file[p] = 10;
    // The part's hash no longer matches, but the record is refused first (the part is checked
    // at its end).
    refused(
        &file,
        &InstallError::Format(FormatError::BadDeflateParams([10, 15, 8, 0])),
        true,
    );

    // Not a file.
    let f = set(|op| {
        if let OpRepr::Redeflate { kind, .. } = op {
            *kind = ObjectKind::DirMeta;
        }
    });
    refused(
        &f,
        &InstallError::RedeflateNotFile {
            kind: ObjectKind::DirMeta,
            id: ex.id,
        },
        true,
    );

    // More plaintext than the part holds.
    let (f, part_len) = hand_file(
        |op| {
            if let OpRepr::Redeflate { plain, .. } = op {
                *plain = 1 << 20;
            }
        },
        TEXT,
    );
    refused(
        &f,
        &InstallError::ObjectTooLong {
            kind: ObjectKind::File,
            id: ex.id,
            len: 34 + (1 << 20) + 8,
            room: (part_len - 56 - REDEFLATE_HEADER_LEN) as u64,
        },
        true,
    );

    // A length below head + tail, or over head + tail + deflate_bound(plain) = 42 + 46: refused
    // before the store. Then a stream that would run past L − tail, or ends short of it (the id
    // is then wrong too, but the length is checked first): refused after the object is begun.
    for (len, found, before_store) in [
        (41, 41, true),
        (89, 88, true),
        (58, 51, false),
        (60, 51, false),
    ] {
        let (f, _) = hand_file(
            |op| {
                if let OpRepr::Redeflate { len: l, .. } = op {
                    *l = len;
                }
            },
            TEXT,
        );
        refused(
            &f,
            &InstallError::RedeflateLength {
                id: ex.id,
                len,
                end: len - 8,
                found,
            },
            before_store,
        );
    }

    // Parameters zlib's encoder does not take (level 0, memory level 9, a strategy).
    for p in [[0, 15, 8, 0], [9, 15, 9, 0], [9, 15, 8, 1]] {
        let (f, _) = hand_file(
            |op| {
                if let OpRepr::Redeflate { params: q, .. } = op {
                    *q = DeflateParams::parse(p).unwrap();
                }
            },
            TEXT,
        );
        refused(
            &f,
            &InstallError::RedeflateUnsupported {
                id: ex.id,
                params: params(p),
            },
            true,
        );
    }

    // Another plaintext of the same length deflates to other bytes: the object's id catches it.
    let (f, _) = hand_file(|_| {}, b"hello, hello, hello, worle\n");
    let mut store = MemStore::default();
    let e = install_redeflating(&mut store, &f, &[f.len()]).unwrap_err();
    assert!(
        matches!(e, InstallError::ObjectHash { kind: ObjectKind::File, expected, .. } if expected == ex.id),
        "{e}"
    );
    store.assert_failed_cleanly();
}
