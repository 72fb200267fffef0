//! `ecu-agent delta show`: a file described without installing it.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_ecu-agent");

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new(EXE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ecu-agent");
    let mut i = c.stdin.take().unwrap();
    if let Some(b) = stdin {
        i.write_all(b).unwrap();
    }
    drop(i);
    c.wait_with_output().unwrap()
}

fn ok(args: &[&str]) -> String {
    ok_in(args, None)
}

fn ok_in(args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = run(args, stdin);
    assert!(
        o.status.success(),
        "ecu-agent {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let o = run(args, None);
    assert!(!o.status.success(), "ecu-agent {args:?} succeeded");
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(e.starts_with("error: "), "{e}");
    e
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

struct Setup {
    _t: tempfile::TempDir,
    dir: std::path::PathBuf,
    ids: Vec<String>,
}

/// A repository with two commits, a key pair, a signed delta (`signed.update`), a signed
/// from-scratch file (`full.update`) and an unsigned one (`unsigned.update`).
fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let (repo, src, key) = (dir.join("repo"), dir.join("src"), dir.join("key"));
    ok(&["init", "--repo", p(&repo)]);
    ok(&["keygen", "--out", p(&key)]);
    let mut ids = Vec::new();
    for v in 1..=2u32 {
        fs::create_dir_all(src.join("usr/bin")).unwrap();
        fs::write(src.join("version"), format!("{v}\n")).unwrap();
        fs::write(src.join("usr/bin/big"), vec![v as u8; 300_000]).unwrap();
        let id = ok(&[
            "commit",
            "--repo",
            p(&repo),
            "--branch",
            "ecu/main",
            "--tree",
            p(&src),
            "--version",
            &format!("1.{v}"),
            "--subject",
            &format!("release {v}"),
            "--timestamp",
            &(1_700_000_000 + v).to_string(),
            "--security-version",
            &(v + 4).to_string(),
        ]);
        ids.push(id.trim().to_string());
    }
    let gen = |out: &str, extra: &[&str]| {
        let out = dir.join(out);
        let mut args = vec![
            "delta",
            "generate",
            "--repo",
            p(&repo),
            "--to",
            "ecu/main",
            "--out",
            p(&out),
            "--part-size",
            "100000",
        ];
        args.extend_from_slice(extra);
        ok(&args);
    };
    gen("signed.update", &["--from", &ids[0], "--sign-key", p(&key)]);
    gen("full.update", &["--empty", "--sign-key", p(&key)]);
    gen("unsigned.update", &["--empty"]);
    Setup { _t: t, dir, ids }
}

#[test]
fn shows_a_signed_delta_and_which_key_verifies_it() {
    let s = setup();
    let f = s.dir.join("signed.update");
    let public = fs::read_to_string(s.dir.join("key.pub")).unwrap();
    let j = json(&ok(&[
        "delta",
        "show",
        p(&f),
        "--trusted-key",
        p(&s.dir.join("key.pub")),
        "--json",
    ]));
    assert_eq!(j["ref"], "ecu/main");
    assert_eq!(j["from"], s.ids[0].as_str());
    assert_eq!(j["to"], s.ids[1].as_str());
    assert_eq!(j["version"], "1.2");
    assert_eq!(j["subject"], "release 2");
    assert_eq!(j["timestamp"], 1_700_000_002u64);
    assert_eq!(j["security_version"], 6);
    let bytes = fs::read(&f).unwrap();
    assert_eq!(
        j["format_version"],
        u16::from_le_bytes([bytes[8], bytes[9]])
    );
    assert!(j["format_version"].as_u64().unwrap() >= 2);
    assert_eq!(j["size"], fs::metadata(&f).unwrap().len());
    assert!(j["objects"].as_u64().unwrap() >= 3, "{j}");
    // xz's dictionary: no larger than the default a device lends (8 MiB), nor than a small
    // update needs (its parts decode to far less than that).
    let dictionary = j["dictionary"].as_u64().unwrap();
    assert!((4096..=8 << 20).contains(&dictionary), "{j}");
    let parts = j["parts"].as_array().unwrap();
    assert!(!parts.is_empty());
    let decoded: u64 = parts
        .iter()
        .map(|p| p["uncompressed_size"].as_u64().unwrap())
        .sum();
    assert!(dictionary < 2 * decoded.max(4096), "{j}");
    for part in parts {
        // `delta generate` writes xz parts by default (codec code 2).
        assert_eq!(part["codec"], "xz", "{j}");
        assert_eq!(part["codec_code"], 2);
        assert!(
            ["none", "x86", "arm", "arm-thumb", "arm64"]
                .contains(&part["filter"].as_str().unwrap()),
            "{j}"
        );
        assert!(part["size"].as_u64().unwrap() > 0);
        assert_eq!(part["sha256"].as_str().unwrap().len(), 64);
    }
    let sig = &j["signature"];
    assert_eq!(sig["algorithm"], "ed25519");
    assert_eq!(sig["verified"], true);
    assert_eq!(sig["key"], public.trim());
    assert_eq!(sig["revoked"], false);

    // The same under a sysroot's agent.conf; the human form says the key.
    let sysroot = s.dir.join("sysroot");
    fs::create_dir_all(&sysroot).unwrap();
    fs::write(
        sysroot.join("agent.conf"),
        format!("trusted-key = {}", public.trim()),
    )
    .unwrap();
    let text = ok(&["delta", "show", p(&f), "--sysroot", p(&sysroot)]);
    assert!(
        text.contains(&format!("verified by key {}", public.trim())),
        "{text}"
    );
    assert!(text.contains("ref:              ecu/main"), "{text}");
    assert!(text.contains("security version: 6"), "{text}");
    assert!(text.contains("xz"), "{text}");
    assert!(
        text.contains(&format!("dictionary:       8.0 MiB ({dictionary} bytes)"))
            || text.contains(&format!("({dictionary} bytes)\nparts:")),
        "{text}"
    );
    // Nothing was created in the sysroot.
    let entries: Vec<_> = fs::read_dir(&sysroot).unwrap().collect();
    assert_eq!(entries.len(), 1, "delta show touched the sysroot");

    // Revoked: reported, not verified.
    fs::write(
        sysroot.join("agent.conf"),
        format!(
            "trusted-key = {}\nrevoked-key = {}\n",
            public.trim(),
            public.trim()
        ),
    )
    .unwrap();
    let j = json(&ok(&[
        "delta",
        "show",
        p(&f),
        "--sysroot",
        p(&sysroot),
        "--json",
    ]));
    assert_eq!(j["signature"]["verified"], false);
    assert_eq!(j["signature"]["revoked"], true);

    // Another key: does not verify.
    ok(&["keygen", "--out", p(&s.dir.join("other"))]);
    let j = json(&ok(&[
        "delta",
        "show",
        p(&f),
        "--trusted-key",
        p(&s.dir.join("other.pub")),
        "--json",
    ]));
    assert_eq!(j["signature"]["verified"], false);
    assert_eq!(j["signature"]["key"], serde_json::Value::Null);
    assert_eq!(j["signature"]["keys_checked"], 1);
    let text = ok(&[
        "delta",
        "show",
        p(&f),
        "--trusted-key",
        p(&s.dir.join("other.pub")),
    ]);
    assert!(text.contains("DOES NOT VERIFY"), "{text}");
}

#[test]
fn shows_unsigned_and_from_scratch_files_and_standard_input() {
    let s = setup();
    let j = json(&ok(&[
        "delta",
        "show",
        p(&s.dir.join("unsigned.update")),
        "--json",
    ]));
    assert_eq!(j["from"], serde_json::Value::Null);
    assert_eq!(j["to"], s.ids[1].as_str());
    assert_eq!(j["signature"]["algorithm"], "none");
    assert_eq!(j["signature"]["verified"], false);
    let text = ok(&["delta", "show", p(&s.dir.join("unsigned.update"))]);
    assert!(text.contains("(unsigned)"), "{text}");
    assert!(text.contains("from scratch"), "{text}");

    let bytes = fs::read(s.dir.join("full.update")).unwrap();
    let from_file = ok(&["delta", "show", p(&s.dir.join("full.update")), "--json"]);
    let from_stdin = ok_in(&["delta", "show", "-", "--json"], Some(&bytes));
    assert_eq!(from_file, from_stdin);
    let j = json(&from_stdin);
    assert_eq!(j["signature"]["algorithm"], "ed25519");
    assert_eq!(j["size"], bytes.len() as u64);
    assert_eq!(j["signature"]["keys_checked"], 0);
}

#[test]
fn damaged_files_are_clear_errors() {
    let s = setup();
    let good = fs::read(s.dir.join("signed.update")).unwrap();
    let bad = s.dir.join("bad.update");
    let key = s.dir.join("key.pub");
    let show = |bytes: &[u8]| {
        fs::write(&bad, bytes).unwrap();
        fails(&["delta", "show", p(&bad), "--trusted-key", p(&key)])
    };
    // A byte of the last part flipped.
    let mut b = good.clone();
    let n = b.len();
    b[n - 10] ^= 0x40;
    let e = show(&b);
    assert!(e.contains("is damaged: its SHA-256 differs"), "{e}");
    // Truncated in the parts.
    let e = show(&good[..good.len() - 5]);
    assert!(e.contains("truncated") && e.contains("part"), "{e}");
    // Trailing bytes.
    let mut b = good.clone();
    b.push(0);
    let e = show(&b);
    assert!(e.contains("bytes after its last part"), "{e}");
    // Bad magic.
    let mut b = good.clone();
    b[0] = b'X';
    let e = show(&b);
    assert!(e.contains("not an update file"), "{e}");
    // Shorter than a header.
    let e = show(&good[..7]);
    assert!(
        e.contains("the header at byte 0 needs 16 bytes, only 7"),
        "{e}"
    );
    // The signed subject altered (the superblock still decodes): shown, does not verify.
    let pos = good
        .windows(9)
        .position(|w| w == b"release 2")
        .expect("subject in the superblock");
    let mut b = good.clone();
    b[pos + 8] = b'3';
    fs::write(&bad, &b).unwrap();
    let j = json(&ok(&[
        "delta",
        "show",
        p(&bad),
        "--trusted-key",
        p(&key),
        "--json",
    ]));
    assert_eq!(j["subject"], "release 3");
    assert_eq!(j["signature"]["verified"], false);
}

#[test]
fn unknown_codec_is_named_not_refused() {
    let s = setup();
    let good = fs::read(s.dir.join("unsigned.update")).unwrap();
    // The first part's codec rewritten to a code no agent knows (as a newer writer's
    // codec would be), through the library's own encoder.
    let sb_len = u32::from_le_bytes(good[12..16].try_into().unwrap()) as usize;
    let sb = &good[16..16 + sb_len];
    let parsed = agent_core::wire::Superblock::parse(sb).unwrap();
    let mut changed = parsed.clone();
    changed.parts[0].codec = agent_core::wire::Codec::Unknown(9);
    let mut out = vec![0u8; sb_len + 16];
    let new_sb = changed.emit(&mut out).unwrap().to_vec();
    assert_eq!(new_sb.len(), sb_len);
    let mut b = good.clone();
    b[16..16 + sb_len].copy_from_slice(&new_sb);
    let f = s.dir.join("unknown.update");
    fs::write(&f, &b).unwrap();
    let j = json(&ok(&["delta", "show", p(&f), "--json"]));
    assert_eq!(j["parts"][0]["codec"], "unknown(9)");
    assert_eq!(j["parts"][0]["codec_code"], 9);
}
