//! Redeflate records (`docs/FORMAT.md` §6): gzip files carried as the text they inflate to and
//! deflated again by the encoder the installer is lent. Round trips in any chunk size, what
//! the writer redeflates and what it leaves alone, and the refusals: no encoder, an encoder
//! that deflates differently, a stream that ends early or late, records that lie, bit flips
//! and truncations. Nothing is committed after any refusal.

mod common;

use std::convert::Infallible;

use agent_core::install::{
    InstallError, Installed, Installer, Policy, Redeflate, RedeflateError, Zlib,
};
use agent_core::object::{ObjectId, ObjectKind};
use agent_core::wire::{
    DeflateParams, Filter, FormatError, OpRepr, REDEFLATE_FORMAT_VERSION, REDEFLATE_HEADER_LEN,
};
use agent_core::write::UpdateWriter;
use common::*;
use test_support::gzip::member as gzip;

const TS: u64 = 1_700_000_000;

fn unsigned() -> Policy<'static> {
    Policy::require(&[]).allow_unsigned()
}

/// Text that compresses as manuals and changelogs do: words repeated with variations.
fn text(len: usize, seed: u32) -> Vec<u8> {
    let words = [
        "the ",
        "device ",
        "installs ",
        "update ",
        "file ",
        "slot ",
        "boot ",
        "counter ",
        "rollback ",
        "changelog ",
        "version ",
        "fixed ",
        "\n",
        "security ",
        "package ",
    ];
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(words[(x % words.len() as u32) as usize].as_bytes());
        if x.is_multiple_of(7) {
            out.extend_from_slice(format!("{} ", x % 1000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// A tree with gzip files zlib rebuilds (level 9, level 6, one with a name, one of 300 KiB
/// whose object goes through the writer's streaming path) and some it does not (level 1, a
/// gzip header over junk, a stream that does not shrink).
fn gz_tree() -> Tree {
    Tree::default()
        .file("README", "not compressed\n")
        .dir(
            "man",
            Tree::default()
                .file("a.1.gz", gzip(&text(3000, 1), 9, None))
                .file("b.1.gz", gzip(&text(40_000, 2), 9, None))
                .file("c.1.gz", gzip(&text(5000, 3), 6, None))
                .file("named.gz", gzip(&text(2000, 4), 9, Some("named"))),
        )
        .dir(
            "doc",
            Tree::default()
                .file("big.gz", gzip(&text(300_000, 5), 9, None))
                .file("fast.gz", gzip(&text(20_000, 6), 1, None))
                .file(
                    "junk.gz",
                    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03junk".to_vec(),
                )
                .file("tiny.gz", gzip(b"", 9, None)),
        )
}

/// The gzip files of [`gz_tree`] the writer carries in redeflate records.
const REDEFLATED: usize = 5;

fn built() -> Built {
    build(&gz_tree(), None, TS, &Default::default())
}

/// The update of `built` as the writer makes it; objects over 64 KiB through its streaming
/// path.
fn write(built: &Built, tweak: impl FnOnce(UpdateWriter) -> UpdateWriter) -> Vec<u8> {
    write_update_with(built, None, None, 1 << 20, &|_, _| None, tweak)
}

fn version(file: &[u8]) -> u16 {
    u16::from_le_bytes([file[8], file[9]])
}

/// Installs `file` into a new store in chunks of `sizes`, lending `deflater` (none: the
/// installer has no encoder).
fn install(
    file: &[u8],
    sizes: &[usize],
    deflater: Option<&mut dyn Redeflate>,
) -> (Result<Installed, InstallError<Infallible>>, MemStore) {
    let mut store = MemStore::default();
    lent!(win, xz);
    let inst = Installer::new(unsigned(), win).with_xz(xz);
    let mut inst = match deflater {
        Some(d) => inst.with_redeflate(d),
        None => inst,
    };
    let r = install_chunks(&mut inst, &mut store, file, sizes);
    (r, store)
}

/// Every object of `built` is in `store`, byte for byte.
fn assert_holds(store: &MemStore, built: &Built) {
    store.assert_committed(&built.commit);
    for op in &built.ops {
        if let Op::Write(kind, id, bytes) = op {
            assert_eq!(
                store.objects.get(&(*kind, *id)).map(Vec::as_slice),
                Some(&bytes[..]),
                "{kind} {id}"
            );
        }
    }
}

/// The records of the one part of `file` (an xz file written with one part).
fn records(file: &[u8]) -> Vec<u8> {
    let n = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let sb = agent_core::wire::Superblock::parse_version(&file[16..16 + n], version(file)).unwrap();
    assert_eq!(sb.parts.len(), 1);
    let p = &sb.parts[0];
    let start = file.len() - p.size as usize;
    let mut dec =
        liblzma::stream::Stream::new_raw_decoder(&raw_filters(p.filter, sb.dictionary)).unwrap();
    let mut out = Vec::with_capacity(p.uncompressed_size as usize);
    dec.process_vec(&file[start..], &mut out, liblzma::stream::Action::Finish)
        .unwrap();
    out
}

fn raw_filters(filter: Filter, dictionary: u32) -> liblzma::stream::Filters {
    let mut f = liblzma::stream::Filters::new();
    if filter == Filter::X86 {
        f.x86();
    }
    let mut o = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
    o.dict_size(dictionary);
    f.lzma2(&o);
    f
}

/// The redeflate records of `records` (walking every record header).
fn redeflate_records(records: &[u8]) -> Vec<OpRepr> {
    let mut at = 0;
    let mut found = Vec::new();
    while at < records.len() {
        let n = OpRepr::header_len(records[at]).unwrap();
        let op = OpRepr::parse(&records[at..at + n]).unwrap();
        at += n;
        at += match op {
            OpRepr::Write { len, .. } => len as usize,
            OpRepr::Reuse { .. } => 0,
            OpRepr::Redeflate {
                head, plain, tail, ..
            } => {
                found.push(op);
                head as usize + plain as usize + tail as usize
            }
            OpRepr::Patch { .. } | OpRepr::ReuseEntries { .. } => {
                unreachable!("no patches and no reuses in a from-scratch file")
            }
        };
    }
    found
}

#[test]
fn the_writer_redeflates_what_zlib_rebuilds_and_nothing_else() {
    let b = built();
    let file = write(&b, |w| w);
    let plain = write(&b, |w| w.redeflate(false));
    assert_eq!(version(&file), REDEFLATE_FORMAT_VERSION);
    assert_eq!(
        version(&plain),
        3,
        "without redeflate records the file stays version 3"
    );
    let found = redeflate_records(&records(&file));
    assert_eq!(found.len(), REDEFLATED, "{found:?}");
    for op in &found {
        let OpRepr::Redeflate {
            kind,
            len,
            head,
            plain,
            tail,
            params,
            ..
        } = *op
        else {
            unreachable!()
        };
        assert_eq!(kind, ObjectKind::File);
        assert!(
            params == DeflateParams::BEST || params.level == 6,
            "{params:?}"
        );
        assert_eq!(tail, 8, "the gzip trailer");
        assert!(head >= 24 + 10);
        assert!(
            plain > len - u64::from(head + tail),
            "the plaintext is longer than its stream"
        );
    }
    assert!(redeflate_records(&records(&plain)).is_empty());
    // The text compresses better than its gzip streams do.
    assert!(
        file.len() * 10 < plain.len() * 9,
        "{} bytes with redeflate records, {} without",
        file.len(),
        plain.len()
    );
    // A version asked for below 4, or deflate parts: no redeflate records.
    let v3 = write(&b, |w| w.format_version(3));
    assert_eq!(version(&v3), 3);
    assert!(redeflate_records(&records(&v3)).is_empty());
    let deflated = write(&b, |w| w.codec(agent_core::wire::Codec::Deflate));
    assert!(version(&deflated) < REDEFLATE_FORMAT_VERSION);
}

#[test]
fn installs_byte_for_byte_in_any_chunk_size() {
    let b = built();
    let file = write(&b, |w| w);
    for sizes in [
        &[1][..],
        &[7],
        &[512],
        &[64 * 1024],
        &[file.len()],
        &[3, 1000, 1, 70_000],
    ] {
        let mut zlib = Zlib::new();
        let (r, store) = install(&file, sizes, Some(&mut zlib));
        r.unwrap_or_else(|e| panic!("chunks {sizes:?}: {e}"));
        assert_holds(&store, &b);
    }
}

#[test]
fn without_an_encoder_the_install_is_refused_before_the_object_reaches_the_store() {
    let b = built();
    let file = write(&b, |w| w);
    let (r, store) = install(&file, &[4096], None);
    let Err(InstallError::RedeflateUnsupported { id, params }) = r else {
        panic!("{r:?}")
    };
    assert!(params.level == 9 || params.level == 6);
    let begun = format!("begin file {id}");
    assert!(
        !store.log.iter().any(|l| l.starts_with(&begun)),
        "{:?}",
        store.log
    );
    store.assert_failed_cleanly();
    // The message names the way out.
    let msg = InstallError::<Infallible>::RedeflateUnsupported { id, params }.to_string();
    assert!(msg.contains("--no-redeflate"), "{msg}");
    // A file written without redeflate records installs without an encoder.
    let plain = write(&b, |w| w.redeflate(false));
    let (r, store) = install(&plain, &[4096], None);
    r.unwrap();
    assert_holds(&store, &b);
}

/// zlib, with its stream changed as `change` says at the end of each stream.
struct Crooked {
    zlib: Zlib,
    change: fn(&mut Vec<u8>),
}

impl Redeflate for Crooked {
    fn start(&mut self, params: DeflateParams) -> Result<(), RedeflateError> {
        self.zlib.start(params)
    }
    fn deflate(
        &mut self,
        plain: &[u8],
        finish: bool,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), RedeflateError> {
        let mut all = Vec::new();
        self.zlib.deflate(plain, finish, &mut |b| {
            all.extend_from_slice(b);
            true
        })?;
        if finish {
            (self.change)(&mut all);
        }
        out(&all);
        Ok(())
    }
}

#[test]
fn an_encoder_that_deflates_differently_is_caught_and_nothing_is_committed() {
    let b = built();
    let file = write(&b, |w| w);
    let flip: fn(&mut Vec<u8>) = |s| {
        let last = s.len() - 1;
        s[last] ^= 0x10;
    };
    let longer: fn(&mut Vec<u8>) = |s| s.push(0);
    let shorter: fn(&mut Vec<u8>) = |s| {
        s.pop();
    };
    for (change, what) in [(flip, "flip"), (longer, "longer"), (shorter, "shorter")] {
        for sizes in [&[1][..], &[4096], &[file.len()]] {
            let mut crooked = Crooked {
                zlib: Zlib::new(),
                change,
            };
            let (r, store) = install(&file, sizes, Some(&mut crooked));
            match (what, &r) {
                ("flip", Err(InstallError::ObjectHash { kind, .. })) => {
                    assert_eq!(*kind, ObjectKind::File)
                }
                (
                    "longer" | "shorter",
                    Err(InstallError::RedeflateLength {
                        len, end, found, ..
                    }),
                ) => {
                    assert_eq!(*end, len - 8);
                    assert_eq!(*found, if what == "longer" { end + 1 } else { end - 1 });
                }
                _ => panic!("{what} {sizes:?}: {r:?}"),
            }
            store.assert_failed_cleanly();
        }
    }
}

/// A one-file commit whose file is carried by `record` (its head, plaintext and tail
/// following), written by hand as version `version`.
fn hand_made(version: u16, file: &[u8], record: &[u8]) -> Vec<u8> {
    let (records, commit) = one_file_records(file, b"f.gz", &dirmeta_object(), |t, m| {
        commit_object(None, TS, t, m, "1.0")
    });
    // Replace the file's Write record (the first) with `record`.
    let write_len = agent_core::wire::WRITE_HEADER_LEN + file.len();
    let mut r = record.to_vec();
    r.extend_from_slice(&records[write_len..]);
    raw_update_version(
        version,
        None,
        commit,
        TS,
        4,
        &[RawPart::xz(r, 4, Filter::None)],
        None,
        |_, _| {},
    )
}

/// The redeflate record of file object `obj` (a gzip file of `plain`) with its fields as
/// `tweak` changes them.
fn record_of(obj: &[u8], plain: &[u8], tweak: impl FnOnce(&mut OpRepr)) -> Vec<u8> {
    let tail = 8u32;
    let stream_len = {
        let mut z = Zlib::new();
        z.deflate_all(DeflateParams::BEST, plain).unwrap().len()
    };
    let head = (obj.len() - stream_len - 8) as u32;
    let mut op = OpRepr::Redeflate {
        kind: ObjectKind::File,
        id: ObjectId::of(obj),
        len: obj.len() as u64,
        head,
        plain: plain.len() as u64,
        tail,
        params: DeflateParams::BEST,
    };
    tweak(&mut op);
    let mut r = vec![0u8; REDEFLATE_HEADER_LEN];
    op.emit(&mut r);
    r.extend_from_slice(&obj[..head as usize]);
    r.extend_from_slice(plain);
    r.extend_from_slice(&obj[obj.len() - tail as usize..]);
    r
}

#[test]
fn hand_made_records_are_checked() {
    let plain = text(1000, 9);
    let obj = file_object(&gzip(&plain, 9, None));
    let good = record_of(&obj, &plain, |_| {});
    let ok = |f: &[u8]| {
        let mut z = Zlib::new();
        let (r, store) = install(f, &[333], Some(&mut z));
        (r, store)
    };
    // As written: installs.
    let (r, store) = ok(&hand_made(4, &obj, &good));
    r.unwrap();
    assert_eq!(
        store.objects.get(&(ObjectKind::File, ObjectId::of(&obj))),
        Some(&obj)
    );

    // An empty plaintext (which the writer never carries: its stream is longer): the stream
    // ends without input.
    let empty = file_object(&gzip(b"", 9, None));
    let (r, _) = ok(&hand_made(4, &empty, &record_of(&empty, b"", |_| {})));
    r.unwrap();

    // In a version 3 file the code is unknown.
    let (r, store) = ok(&hand_made(3, &obj, &good));
    assert!(
        matches!(r, Err(InstallError::Format(FormatError::UnknownOp(4)))),
        "{r:?}"
    );
    store.assert_failed_cleanly();

    let refused = |tweak: fn(&mut OpRepr)| {
        let (r, store) = ok(&hand_made(4, &obj, &record_of(&obj, &plain, tweak)));
        store.assert_failed_cleanly();
        r.unwrap_err()
    };
    // Not a file.
    let e = refused(|op| {
        if let OpRepr::Redeflate { kind, .. } = op {
            *kind = ObjectKind::DirMeta
        }
    });
    assert!(matches!(e, InstallError::RedeflateNotFile { .. }), "{e:?}");
    // Longer than head, tail and the most deflate can make of the plaintext.
    let e = refused(|op| {
        if let OpRepr::Redeflate { len, plain, .. } = op {
            *len = 24 + 10 + 8 + agent_core::wire::deflate_bound(*plain) + 1
        }
    });
    assert!(matches!(e, InstallError::RedeflateLength { .. }), "{e:?}");
    // Shorter than head and tail.
    let e = refused(|op| {
        if let OpRepr::Redeflate { len, .. } = op {
            *len = 24 + 10 + 7
        }
    });
    assert!(matches!(e, InstallError::RedeflateLength { .. }), "{e:?}");
    // One byte more declared than the object's header says: the file check finds it before
    // the stream ends early (an encoder that ends early is the crooked "shorter" above).
    let e = refused(|op| {
        if let OpRepr::Redeflate { len, .. } = op {
            *len += 1
        }
    });
    assert!(
        matches!(
            e,
            InstallError::Object {
                error: agent_core::object::ObjectError::TrailingBytes(1),
                ..
            }
        ),
        "{e:?}"
    );
    // Parameters this encoder does not do (memory level 9).
    let e = refused(|op| {
        if let OpRepr::Redeflate { params, .. } = op {
            params.mem_level = 9
        }
    });
    assert!(
        matches!(e, InstallError::RedeflateUnsupported { .. }),
        "{e:?}"
    );
    // Level 6 instead of 9: another stream, caught by the object's id.
    let e = refused(|op| {
        if let OpRepr::Redeflate { params, .. } = op {
            params.level = 1
        }
    });
    assert!(
        matches!(
            e,
            InstallError::ObjectHash { .. } | InstallError::RedeflateLength { .. }
        ),
        "{e:?}"
    );
    // More plaintext than the part holds.
    let e = refused(|op| {
        if let OpRepr::Redeflate { plain, .. } = op {
            *plain = 1 << 40
        }
    });
    assert!(matches!(e, InstallError::ObjectTooLong { .. }), "{e:?}");
    // Parameters out of range.
    let mut bad = good.clone();
    bad[REDEFLATE_HEADER_LEN - 4] = 10;
    let (r, store) = ok(&hand_made(4, &obj, &bad));
    assert!(
        matches!(
            r,
            Err(InstallError::Format(FormatError::BadDeflateParams([
                10, 15, 8, 0
            ])))
        ),
        "{r:?}"
    );
    store.assert_failed_cleanly();
}

#[test]
fn bit_flips_and_truncations_are_refused_and_nothing_is_committed() {
    let b = built();
    let file = write(&b, |w| w.format_version(REDEFLATE_FORMAT_VERSION));
    let mut flips = 0;
    for at in (0..file.len()).step_by(file.len() / 97 + 1) {
        for bit in [0x01u8, 0x80] {
            let mut f = file.clone();
            f[at] ^= bit;
            let mut z = Zlib::new();
            let (r, store) = install(&f, &[4096], Some(&mut z));
            if r.is_ok() {
                // Only a flip that changes nothing the installer reads may install, and then
                // it installs the same objects.
                assert_holds(&store, &b);
            } else {
                store.assert_failed_cleanly();
                flips += 1;
            }
        }
    }
    assert!(flips > 150, "{flips} flips refused");
    for cut in [1, 17, 100, file.len() / 3, file.len() / 2, file.len() - 1] {
        let mut z = Zlib::new();
        let (r, store) = install(&file[..cut], &[4096], Some(&mut z));
        assert!(r.is_err(), "cut at {cut}");
        assert!(store.commits.is_empty());
        assert_eq!(store.commit_calls, 0);
    }
}
