//! Redeflate records on Linux (`docs/FORMAT.md` §6): the manuals and changelogs of a system,
//! gzip'd by the real `gzip -9n` as Debian's packaging does, are carried as the text they
//! inflate to when zlib's deflate rebuilds their stream (the small ones) or, with
//! `RedeflateMode::All`, GNU gzip's (the large ones too); the device's repository gets every
//! file back byte for byte, from scratch and in a delta, at every chunk size.

use std::fs;
use std::path::Path;

use agent_core::install::Policy;
use agent_core::object::ObjectId;
use agent_core::write::RedeflateMode;
use agent_linux::checkout::{checkout, CheckoutMode};
use agent_linux::generate::{generate, GenerateOptions, UpdateSummary};
use agent_linux::keys;
use agent_linux::repo::Repo;
use test_support::gzip::gzip_n;
use tests::{
    assert_same_tree, commit_two, install_chunked, semi_random_text, staged_files, TwoVersions,
};

const REF: &str = "ecu/x86_64/main";

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// Version `v` of a small system: manuals (gzip'd, two of them change in version 2, one is
/// new), a changelog of 400 KB that changes too (gzip'd: over 64 KiB, GNU gzip cuts its
/// blocks where zlib does not), a binary and a text file.
fn tree(root: &Path, v: u64) {
    for (i, name) in ["ls", "cp", "mv", "cat", "tar", "sed"].iter().enumerate() {
        let i = i as u64;
        let changed = if v == 2 && i < 2 { 100 } else { 0 };
        let page = semi_random_text(10 + i + changed, 3000 + 1000 * i as usize);
        write(
            root,
            &format!("usr/share/man/man1/{name}.1.gz"),
            &gzip_n(&page),
        );
    }
    if v == 2 {
        write(
            root,
            "usr/share/man/man1/curl.1.gz",
            &gzip_n(&semi_random_text(77, 9000)),
        );
    }
    write(
        root,
        "usr/share/doc/base/changelog.gz",
        &gzip_n(&semi_random_text(5 + v, 400_000)),
    );
    write(
        root,
        "usr/bin/tool",
        &test_support::image::code(3, 60_000, 0x40_0000),
    );
    write(root, "etc/motd", format!("version {v}\n").as_bytes());
}

/// The two versions of the test trees.
type Trees = TwoVersions;

fn trees(tmp: &Path) -> Trees {
    let (src1, src2) = (tmp.join("src1"), tmp.join("src2"));
    tree(&src1, 1);
    tree(&src2, 2);
    commit_two(tmp, REF, src1, src2)
}

fn update(
    t: &Trees,
    from: Option<ObjectId>,
    to: &ObjectId,
    redeflate: RedeflateMode,
) -> (Vec<u8>, UpdateSummary) {
    let opts = GenerateOptions {
        sign_key: Some([7; 32]),
        redeflate,
        ..GenerateOptions::default()
    };
    let mut out = Vec::new();
    let s = generate(&t.build, REF, from, to, &opts, &mut out, &mut |_, _| {}).unwrap();
    (out, s)
}

fn policy() -> Policy<'static> {
    let key: &'static [[u8; 32]] = Box::leak(Box::new([keys::public_key(&[7; 32])]));
    Policy::require(key)
}

#[test]
fn gzip_files_come_back_byte_for_byte_from_scratch_at_every_chunk_size() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trees(tmp.path());
    let (full, s) = update(&t, None, &t.c2, RedeflateMode::Zlib);
    let (all, a) = update(&t, None, &t.c2, RedeflateMode::All);
    let (plain, p) = update(&t, None, &t.c2, RedeflateMode::Off);
    // By default the seven manuals (under 64 KiB: zlib rebuilds what gzip -9n wrote), not
    // the changelog; with All, the changelog too, through GNU gzip's deflate.
    assert_eq!(
        (s.redeflated, a.redeflated, p.redeflated),
        (7, 8, 0),
        "{s:?}"
    );
    assert_eq!(full[8..10], [4, 0], "the manuals make it format version 4");
    assert_eq!(plain[8..10], [3, 0], "--no-redeflate keeps version 3");
    assert!(
        all.len() < full.len() && full.len() < plain.len(),
        "with GNU gzip's redeflate records {} bytes, zlib's only {}, without {}",
        all.len(),
        full.len(),
        plain.len()
    );
    for (name, file) in [("zlib", &full), ("all", &all)] {
        for chunk in [1, 7, 512, 64 * 1024, usize::MAX] {
            let dev = Repo::init(&tmp.path().join(format!("dev-{name}-{chunk}"))).unwrap();
            let i = install_chunked(&dev, file, chunk, policy()).unwrap();
            assert_eq!(i.commit, t.c2);
            let co = tmp.path().join(format!("co-{name}-{chunk}"));
            checkout(&dev, &t.c2, &co, CheckoutMode::Copy).unwrap();
            assert_same_tree(&t.src2, &co);
            assert!(staged_files(&dev).is_empty());
        }
    }
}

#[test]
fn a_delta_with_changed_and_new_manuals_installs_at_every_chunk_size() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trees(tmp.path());
    let (full1, _) = update(&t, None, &t.c1, RedeflateMode::Zlib);
    let (zlib, z) = update(&t, Some(t.c1), &t.c2, RedeflateMode::Zlib);
    let (delta, s) = update(&t, Some(t.c1), &t.c2, RedeflateMode::All);
    let (plain, _) = update(&t, Some(t.c1), &t.c2, RedeflateMode::Off);
    // Redeflate records (version 4) and reuse-entries records (version 5).
    assert_eq!((&delta[8..10], &zlib[8..10]), (&[5, 0][..], &[5, 0][..]));
    // The two changed manuals and the new one (zlib's), and with All the changed changelog
    // too (GNU gzip's).
    assert_eq!((z.redeflated, s.redeflated), (3, 4), "{z:?} {s:?}");
    assert!(
        delta.len() < zlib.len(),
        "{} vs {}",
        delta.len(),
        zlib.len()
    );
    assert!(
        delta.len() < plain.len(),
        "{} vs {}",
        delta.len(),
        plain.len()
    );
    assert!(s.written >= 3, "{s:?}");
    for (name, file) in [("zlib", &zlib), ("all", &delta)] {
        for chunk in [1, 7, 512, 64 * 1024, usize::MAX] {
            let dev = Repo::init(&tmp.path().join(format!("dev-{name}-{chunk}"))).unwrap();
            install_chunked(&dev, &full1, 64 * 1024, policy()).unwrap();
            let i = install_chunked(&dev, file, chunk, policy()).unwrap();
            assert_eq!((i.commit, i.from), (t.c2, Some(t.c1)));
            let co = tmp.path().join(format!("co-{name}-{chunk}"));
            checkout(&dev, &t.c2, &co, CheckoutMode::Copy).unwrap();
            assert_same_tree(&t.src2, &co);
            let co1 = tmp.path().join(format!("co1-{name}-{chunk}"));
            checkout(&dev, &t.c1, &co1, CheckoutMode::Copy).unwrap();
            assert_same_tree(&t.src1, &co1);
        }
    }
}
