//! A 100 MiB file goes through build, generate, install and checkout in bounded memory:
//! nothing reads a file's content into memory whole. (Its own test binary, so that the
//! process's peak RSS is this test's alone.)

use std::fs::{self, File};
use std::io::{BufWriter, Write};

use agent_linux::checkout::{checkout, CheckoutMode};
use agent_linux::generate::{generate_file, GenerateOptions};
use agent_linux::repo::{CommitMeta, Repo};
use agent_linux::tree::{build_dir, BuildOptions};
use agent_linux::{apply, keys};
use tests::semi_random_text;

const MIB: u64 = 1024 * 1024;

/// Peak resident set size of this process so far (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_100_mib_file_streams_through_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    {
        let mut w = BufWriter::new(File::create(src.join("big.img")).unwrap());
        for i in 0..100 {
            w.write_all(&semi_random_text(i, MIB as usize)).unwrap();
        }
        w.flush().unwrap();
    }
    fs::write(src.join("small"), b"small\n").unwrap();
    let base = peak_rss();
    let budget = base + 48 * MIB;
    let check = |step: &str| {
        let now = peak_rss();
        assert!(
            now < budget,
            "{step}: peak RSS {} MiB, started at {} MiB",
            now / MIB,
            base / MIB
        );
    };

    let build = Repo::init(&tmp.path().join("build")).unwrap();
    let (root, stats) = build_dir(&build, &src, &BuildOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(stats.bytes, 100 * MIB + 6);
    let meta = CommitMeta {
        version: "1".into(),
        subject: "big".into(),
        body: String::new(),
        timestamp: 1,
    };
    let c = build.commit("big", root, &meta).unwrap();
    check("build");

    let seed = [3u8; 32];
    let update = tmp.path().join("big.update");
    let opts = GenerateOptions {
        sign_key: Some(seed),
        compression: Some(1),
        ..GenerateOptions::default()
    };
    let s = generate_file(&build, "big", None, &c, &opts, &update, &mut |_, _| {}).unwrap();
    assert_eq!(s.bytes, fs::metadata(&update).unwrap().len());
    check("generate");

    let dev = Repo::init(&tmp.path().join("dev")).unwrap();
    let applied = apply::apply(
        &dev,
        &mut File::open(&update).unwrap(),
        &apply::Trust {
            trusted_keys: vec![keys::public_key(&seed)],
            ..apply::Trust::default()
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(applied.commit, c.to_string());
    assert!(applied.verified);
    check("install");

    let co = tmp.path().join("co");
    let st = checkout(&dev, &c, &co, CheckoutMode::Copy).unwrap();
    assert_eq!(st.bytes, 100 * MIB + 6);
    check("checkout");
    eprintln!(
        "update {} MiB; peak RSS {} MiB (start {} MiB)",
        s.bytes / MIB,
        peak_rss() / MIB,
        base / MIB
    );

    // Same content, compared in pieces.
    use std::io::Read;
    let (mut a, mut b) = (
        File::open(src.join("big.img")).unwrap(),
        File::open(co.join("big.img")).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let n = a.read(&mut x).unwrap();
        b.read_exact(&mut y[..n]).unwrap();
        assert_eq!(x[..n], y[..n]);
        if n == 0 {
            break;
        }
    }
}
