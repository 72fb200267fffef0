//! Patch records on Linux: the generator pairs each changed file with the source commit's file
//! at the same path or a renamed sibling (`libfoo.so.1.2` -> `libfoo.so.1.3`), keeps the patch
//! when it pays, and the device's repository store serves the sources; a damaged or missing
//! source is refused with nothing committed.

use std::fs;
use std::path::Path;

use agent_core::install::{InstallError, Policy};
use agent_core::object::{ObjectId, ObjectKind};
use agent_linux::checkout::{checkout, CheckoutMode};
use agent_linux::generate::{generate, GenerateOptions, UpdateSummary};
use agent_linux::keys;
use agent_linux::repo::Repo;
use tests::{
    assert_same_tree, commit_objects, commit_two, install_chunked, semi_random_text, staged_files,
    TwoVersions,
};

const REF: &str = "ecu/armv7/main";

/// Code-like bytes linked at 0x0040_0000 ([`test_support::image::code`]).
fn code(seed: u64, len: usize) -> Vec<u8> {
    test_support::image::code(seed, len, 0x0040_0000)
}

/// `old` after a small code change: `n` bytes inserted at `at`, the literals after it moved.
fn rebuilt(old: &[u8], at: usize, n: usize) -> Vec<u8> {
    let inserted: Vec<u8> = (0..n).map(|i| i as u8).collect();
    test_support::image::relinked(old, 0x0040_0000, at, &inserted)
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// The two versions of the test trees.
type Trees = TwoVersions;

/// v1 and v2 of a small system: v2 rebuilds the program (same path), bumps the library's
/// version (renamed), edits the text file and adds a file.
fn trees(tmp: &Path) -> Trees {
    let (src1, src2) = (tmp.join("src1"), tmp.join("src2"));
    let app = code(1, 120_000);
    let lib = code(2, 80_000);
    let text = semi_random_text(3, 20_000);
    write(&src1, "usr/bin/app", &app);
    write(&src1, "usr/lib/libfoo.so.1.2", &lib);
    write(&src1, "usr/share/doc/notes.txt", &text);
    write(&src1, "etc/hostname", b"ecu\n");
    write(&src2, "usr/bin/app", &rebuilt(&app, 50_000, 36));
    write(&src2, "usr/lib/libfoo.so.1.3", &rebuilt(&lib, 1_000, 8));
    let mut text2 = text.clone();
    text2.splice(10_000..10_000, b"a new paragraph\n".iter().copied());
    write(&src2, "usr/share/doc/notes.txt", &text2);
    write(&src2, "etc/hostname", b"ecu\n");
    write(&src2, "etc/new", &semi_random_text(4, 3000));
    commit_both(tmp, src1, src2)
}

/// Commits `src1` (version 1) and `src2` (version 2) into a new build repository.
fn commit_both(tmp: &Path, src1: std::path::PathBuf, src2: std::path::PathBuf) -> Trees {
    commit_two(tmp, REF, src1, src2)
}

fn update(t: &Trees, from: Option<ObjectId>, no_patches: bool) -> (Vec<u8>, UpdateSummary) {
    let opts = GenerateOptions {
        sign_key: Some([7; 32]),
        no_patches,
        ..GenerateOptions::default()
    };
    let mut out = Vec::new();
    let s = generate(&t.build, REF, from, &t.c2, &opts, &mut out, &mut |_, _| {}).unwrap();
    (out, s)
}

/// A device repository holding v1.
fn device(tmp: &Path, t: &Trees, name: &str) -> Repo {
    let public = keys::public_key(&[7; 32]);
    let dev = Repo::init(&tmp.join(name)).unwrap();
    let opts = GenerateOptions {
        sign_key: Some([7; 32]),
        ..GenerateOptions::default()
    };
    let mut full = Vec::new();
    generate(&t.build, REF, None, &t.c1, &opts, &mut full, &mut |_, _| {}).unwrap();
    install_chunked(&dev, &full, 64 * 1024, Policy::require(&[public])).unwrap();
    dev
}

#[test]
fn changed_and_renamed_files_become_patches_that_install_at_every_chunk_size() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trees(tmp.path());
    let (delta, s) = update(&t, Some(t.c1), false);
    let (plain, p) = update(&t, Some(t.c1), true);
    // The program (same path), the library (renamed sibling) and the text file are patched.
    assert_eq!((s.patched, p.patched), (3, 0), "{s:?}");
    assert_eq!(s.written, p.written);
    // Both reuse the unchanged entries of their changed directories by reuse-entries records
    // (format version 5); without them a patched delta is version 3, and so is one without
    // patches, whose parts are xz (the default codec).
    assert_eq!(delta[8..10], [5, 0]);
    assert_eq!(plain[8..10], [5, 0]);
    assert!(
        delta.len() * 10 < plain.len(),
        "patched {} vs whole {}",
        delta.len(),
        plain.len()
    );
    delta_installs_in_chunks(tmp.path(), &t, &delta, |dev, chunk| {
        let co1 = tmp.path().join(format!("co1-{chunk}"));
        checkout(dev, &t.c1, &co1, CheckoutMode::Copy).unwrap();
        assert_same_tree(&t.src1, &co1);
    });
}

/// On a fresh device per chunk size (1, 7, 512, 64 KiB, whole), after `before(device,
/// chunk)`: `delta` installs from c1 to c2, c2 checks out as src2, and nothing stays staged.
fn delta_installs_in_chunks(tmp: &Path, t: &Trees, delta: &[u8], before: impl Fn(&Repo, usize)) {
    let public = keys::public_key(&[7; 32]);
    for chunk in [1, 7, 512, 64 * 1024, usize::MAX] {
        let dev = device(tmp, t, &format!("dev-{chunk}"));
        before(&dev, chunk);
        let i = install_chunked(&dev, delta, chunk, Policy::require(&[public])).unwrap();
        assert_eq!((i.commit, i.from), (t.c2, Some(t.c1)));
        let co2 = tmp.join(format!("co2-{chunk}"));
        checkout(&dev, &t.c2, &co2, CheckoutMode::Copy).unwrap();
        assert_same_tree(&t.src2, &co2);
        assert!(staged_files(&dev).is_empty());
    }
}

/// The file object of `rel` in commit `c` of `repo`.
fn file_id(repo: &Repo, c: &ObjectId, rel: &str) -> ObjectId {
    let mut tree = repo.read_commit(c).unwrap().root_tree;
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, name) in parts.iter().enumerate() {
        for e in repo.read_dirtree(&tree).unwrap() {
            match e {
                agent_linux::repo::OwnedEntry::File { name: n, id } if n == name.as_bytes() => {
                    assert_eq!(i, parts.len() - 1);
                    return id;
                }
                agent_linux::repo::OwnedEntry::Dir {
                    name: n, tree: t, ..
                } if n == name.as_bytes() => {
                    tree = t;
                }
                _ => {}
            }
        }
    }
    panic!("{rel} not in {c}")
}

#[test]
fn a_changed_directory_is_patched_from_the_source_directory_at_every_chunk_size() {
    // A package database: 80 files in one directory; v2 adds one, so the directory's dirtree
    // (80 names and ids) changes by one entry.
    let tmp = tempfile::tempdir().unwrap();
    let (src1, src2) = (tmp.path().join("src1"), tmp.path().join("src2"));
    for src in [&src1, &src2] {
        for i in 0..80 {
            let list = format!("/usr/share/doc/package-{i}/copyright\n/usr/bin/tool-{i}\n");
            write(
                src,
                &format!("var/lib/dpkg/info/package-{i}.list"),
                list.as_bytes(),
            );
        }
        write(src, "etc/hostname", b"ecu\n");
    }
    write(&src2, "var/lib/dpkg/info/curl.list", b"/usr/bin/curl\n");
    let t = commit_both(tmp.path(), src1, src2);
    let (delta, s) = update(&t, Some(t.c1), false);
    let (plain, p) = update(&t, Some(t.c1), true);
    // No file is paired (the new one has no source); the info directory's dirtree is patched.
    assert!(s.patched_dirtrees >= 1, "{s:?}");
    assert_eq!(s.patched, s.patched_dirtrees, "{s:?}");
    assert_eq!((p.patched, p.patched_dirtrees), (0, 0), "{p:?}");
    assert!(
        delta.len() < plain.len(),
        "patched {} vs whole {}",
        delta.len(),
        plain.len()
    );
    delta_installs_in_chunks(tmp.path(), &t, &delta, |_, _| {});
}

#[test]
fn a_damaged_or_missing_source_is_refused_with_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trees(tmp.path());
    let (delta, _) = update(&t, Some(t.c1), false);
    let public = keys::public_key(&[7; 32]);
    let app1 = file_id(&t.build, &t.c1, "usr/bin/app");
    let app2 = file_id(&t.build, &t.c2, "usr/bin/app");

    let untouched = |dev: &Repo| {
        assert_eq!(dev.read_ref(REF).unwrap(), Some(t.c1));
        assert_eq!(commit_objects(dev), vec![t.c1]);
        assert!(staged_files(dev).is_empty(), "{:?}", staged_files(dev));
        assert!(!dev.has_object(ObjectKind::File, &app2).unwrap());
    };

    // Damaged: one byte of the program's content changed in place.
    let dev = device(tmp.path(), &t, "damaged");
    let path = dev.object_path(ObjectKind::File, &app1);
    let mut perms = fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&path, perms).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[70_000] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let e = install_chunked(&dev, &delta, 4096, Policy::require(&[public])).unwrap_err();
    assert!(
        matches!(e, InstallError::PatchSourceDamaged { source, .. } if source == app1),
        "{e}"
    );
    assert!(e.to_string().contains("damaged"), "{e}");
    untouched(&dev);

    // Missing: the program's object removed (content and any metadata beside it).
    let dev = device(tmp.path(), &t, "missing");
    let content = dev.object_path(ObjectKind::File, &app1);
    fs::remove_file(&content).unwrap();
    let meta = dev.filemeta_path(&app1);
    if meta.exists() {
        fs::remove_file(&meta).unwrap();
    }
    let e = install_chunked(&dev, &delta, 4096, Policy::require(&[public])).unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::PatchSourceMissing { kind: ObjectKind::File, id, source }
                if id == app2 && source == app1
        ),
        "{e}"
    );
    untouched(&dev);
}

/// A directory of many unchanged files beside one that changes: the delta reuses them by one
/// reuse-entries record per changed directory (format version 5), a few bytes against 34 for
/// each with `no_reuse_entries`, and installs at every chunk size to the same tree.
#[test]
fn unchanged_entries_are_reused_by_one_record_per_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (src1, src2) = (tmp.path().join("src1"), tmp.path().join("src2"));
    for src in [&src1, &src2] {
        for i in 0..60 {
            let text = semi_random_text(100 + i, 200);
            write(src, &format!("usr/share/doc/pkg{i}/copyright"), &text);
            write(src, &format!("usr/lib/lib{i}.so"), &code(200 + i, 700));
        }
    }
    write(&src1, "usr/lib/libnew.so", &code(7, 900));
    write(&src2, "usr/lib/libnew.so", &code(8, 900));
    write(&src2, "usr/share/doc/pkg60/copyright", b"new package\n");
    let t = commit_both(tmp.path(), src1, src2);
    let generate_with = |no_reuse_entries: bool| {
        let opts = GenerateOptions {
            sign_key: Some([7; 32]),
            no_reuse_entries,
            ..GenerateOptions::default()
        };
        let mut out = Vec::new();
        let s = generate(
            &t.build,
            REF,
            Some(t.c1),
            &t.c2,
            &opts,
            &mut out,
            &mut |_, _| {},
        );
        (out, s.unwrap())
    };
    let (grouped, g) = generate_with(false);
    let (plain, p) = generate_with(true);
    assert_eq!((&grouped[8..10], &plain[8..10]), (&[5, 0][..], &[3, 0][..]));
    // The same reuses (usr/lib's 60 libraries, usr/share/doc's 60 directories with their
    // dirmeta, ...), counted alike, in far fewer records and bytes.
    assert_eq!(g.reused, p.reused);
    assert!(g.reused > 120, "{g:?}");
    assert!(g.objects + 100 < p.objects, "{g:?} {p:?}");
    assert!(
        grouped.len() + 2000 < plain.len(),
        "{} against {}",
        grouped.len(),
        plain.len()
    );
    delta_installs_in_chunks(tmp.path(), &t, &grouped, |_, _| {});
}
