//! `cargo xtask demo`: the offline-update story, end to end, printed as a person would type it.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use test_support::rng::XorShift64;

use crate::tools;

/// The `ecu-agent` binary, built once.
pub fn build_agent(release: bool) -> Result<PathBuf> {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(tools::root()).args([
        "build",
        "--quiet",
        "-p",
        "agent-linux",
        "--bin",
        "ecu-agent",
    ]);
    if release {
        c.arg("--release");
    }
    tools::run(&mut c)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools::root().join("target"));
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("ecu-agent");
    ensure!(
        bin.is_file(),
        "built ecu-agent but cannot find it at {}",
        bin.display()
    );
    Ok(bin)
}

struct Agent {
    bin: PathBuf,
    dir: PathBuf,
}

impl Agent {
    /// Runs `ecu-agent args`, printing the command line and its output; fails when it fails.
    fn ok(&self, args: &[&str]) -> Result<String> {
        let (ok, out) = self.show(args)?;
        ensure!(ok, "ecu-agent {} failed", args.join(" "));
        Ok(out)
    }

    /// Runs `ecu-agent args` and expects it to fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> Result<String> {
        let (ok, out) = self.show(args)?;
        ensure!(
            !ok,
            "ecu-agent {} succeeded but should have been refused",
            args.join(" ")
        );
        Ok(out)
    }

    fn show(&self, args: &[&str]) -> Result<(bool, String)> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("\"{a}\"")
                } else {
                    a.to_string()
                }
            })
            .collect();
        println!("$ ecu-agent {}", shown.join(" "));
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .context("running ecu-agent")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for line in stdout.lines().chain(stderr.lines()) {
            println!("  {line}");
        }
        Ok((out.status.success(), stdout + &stderr))
    }
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fs::create_dir_all(path.parent().expect("a file has a parent"))?;
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Builds the three versions of the demo image: v2 adds a program, v3 adds another and changes
/// a config file.
fn make_images(base: &Path) -> Result<[PathBuf; 3]> {
    let v1 = base.join("image-1.0");
    write(
        &v1.join("usr/bin/ecu-main"),
        &program("ecu-main", 1, 96 * 1024),
        0o755,
    )?;
    write(
        &v1.join("usr/lib/libcan.so.1.0"),
        &program("libcan", 1, 48 * 1024),
        0o644,
    )?;
    symlink("libcan.so.1.0", v1.join("usr/lib/libcan.so.1"))?;
    write(
        &v1.join("etc/ecu/config.toml"),
        b"[can]\nbitrate = 500000\n[diag]\nenabled = false\n",
        0o644,
    )?;
    write(&v1.join("etc/ecu/empty.conf"), b"", 0o600)?;
    fs::create_dir_all(v1.join("var/log/ecu"))?;

    let v2 = base.join("image-1.1");
    copy_tree(&v1, &v2)?;
    write(
        &v2.join("usr/bin/ecu-diag"),
        &program("ecu-diag", 2, 64 * 1024),
        0o755,
    )?;

    let v3 = base.join("image-1.2");
    copy_tree(&v2, &v3)?;
    write(
        &v3.join("usr/bin/ecu-telemetry"),
        &program("ecu-telemetry", 3, 80 * 1024),
        0o755,
    )?;
    write(
        &v3.join("etc/ecu/config.toml"),
        b"[can]\nbitrate = 500000\n[diag]\nenabled = true\n[telemetry]\nperiod_ms = 100\n",
        0o644,
    )?;
    Ok([v1, v2, v3])
}

/// Deterministic bytes that compress like a real binary (partly): a header, text, tables.
fn program(name: &str, seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"\x7fELF\x01\x01\x01\0");
    let mut rng = XorShift64::new(seed);
    while out.len() < len {
        let x = rng.next_u64();
        if x.is_multiple_of(4) {
            out.extend_from_slice(format!("{name}: message {} ", x % 1000).as_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes()[..(x % 8) as usize]);
        }
    }
    out.truncate(len);
    out
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    tools::run(Command::new("cp").arg("-a").arg(from).arg(to))
}

/// The commit id (64 hex characters) that `ecu-agent commit` printed.
pub fn commit_id(out: &str) -> Result<String> {
    out.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .context("ecu-agent commit printed no commit id")
}

pub fn run(_args: &[String]) -> Result<()> {
    let bin = build_agent(false)?;
    let tmp = std::env::temp_dir().join(format!("ecu-agent-demo-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let result = story(
        &Agent {
            bin,
            dir: tmp.clone(),
        },
        &tmp,
    );
    match &result {
        Ok(()) => {
            fs::remove_dir_all(&tmp).ok();
        }
        Err(_) => eprintln!("demo: left its files in {} for a look", tmp.display()),
    }
    result
}

fn story(a: &Agent, tmp: &Path) -> Result<()> {
    println!("# The offline-update story, in {}\n", tmp.display());
    let [v1, v2, v3] = make_images(tmp)?;
    println!("# Three versions of an image: 1.1 adds ecu-diag, 1.2 adds ecu-telemetry and changes config.toml.\n");

    println!("## Build side: a signing key, a repository, three commits on one ref");
    a.ok(&["keygen", "--out", "release.key"])?;
    a.ok(&["init", "--repo", "repo"])?;
    let mut ids = Vec::new();
    // 1.2 fixes a vulnerability: its security version rises, so that once a vehicle has
    // confirmed 1.2, an old signed file can no longer take it back (anti-rollback).
    for (tree, version, security) in [(&v1, "1.0", "1"), (&v2, "1.1", "1"), (&v3, "1.2", "2")] {
        let subject = format!("ECU image {version}");
        let out = a.ok(&[
            "commit",
            "--repo",
            "repo",
            "--branch",
            "ecu/armv7/main",
            "--tree",
            path(tree)?,
            "--version",
            version,
            "--subject",
            &subject,
            "--security-version",
            security,
        ])?;
        ids.push(commit_id(&out)?);
    }
    a.ok(&["refs", "--repo", "repo"])?;
    a.ok(&["log", "--repo", "repo", "ecu/armv7/main"])?;

    println!("\n## Offline update files for the newest commit: from scratch, and deltas from the previous ones");
    a.ok(&[
        "generate-deltas",
        "--repo",
        "repo",
        "--out",
        "updates",
        "--depth",
        "2",
        "--sign-key",
        "release.key",
    ])?;
    let file = |from: Option<&str>, to: &str| match from {
        Some(f) => format!("updates/ecu-armv7-main-{f}-{to}.update"),
        None => format!("updates/ecu-armv7-main-{to}.update"),
    };
    let full_v3 = file(None, &ids[2]);
    let delta_23 = file(Some(&ids[1]), &ids[2]);
    for f in [&full_v3, &delta_23] {
        ensure!(tmp.join(f).is_file(), "generate-deltas did not write {f}");
    }
    // The device that holds 1.1 got it from a from-scratch file of that commit.
    a.ok(&[
        "delta",
        "generate",
        "--repo",
        "repo",
        "--empty",
        "--to",
        &ids[1],
        "--out",
        "updates/v1.1-full.update",
        "--sign-key",
        "release.key",
    ])?;
    let full_size = fs::metadata(tmp.join(&full_v3))?.len();
    let delta_size = fs::metadata(tmp.join(&delta_23))?.len();
    println!("# from-scratch 1.2: {full_size} bytes; delta 1.1 -> 1.2: {delta_size} bytes");
    ensure!(
        delta_size < full_size,
        "the delta is not smaller than the from-scratch file"
    );

    println!("\n## What the delta holds, before anything is installed (no store is touched)");
    let shown = a.ok(&[
        "delta",
        "show",
        &delta_23,
        "--trusted-key",
        "release.key.pub",
    ])?;
    ensure!(
        shown.contains("verified by key") && shown.contains("version:          1.2"),
        "delta show did not report the signed 1.2 delta: {shown}"
    );

    println!("\n## Device 1 holds 1.1 and applies the small delta to 1.2");
    a.ok(&[
        "apply-offline",
        "--sysroot",
        "device1",
        "--trusted-key",
        "release.key.pub",
        "updates/v1.1-full.update",
    ])?;
    a.ok(&[
        "apply-offline",
        "--sysroot",
        "device1",
        "--trusted-key",
        "release.key.pub",
        &delta_23,
    ])?;
    a.ok(&[
        "checkout",
        "--sysroot",
        "device1",
        &ids[2],
        "device1-checkout",
    ])?;
    compare(&v3, &tmp.join("device1-checkout"))?;
    println!("# device1's checkout of 1.2 equals the source tree byte for byte (contents, modes, symlinks, empty dirs)");

    println!("\n## Device 2 is empty and takes the from-scratch file of 1.2");
    a.ok(&[
        "apply-offline",
        "--sysroot",
        "device2",
        "--trusted-key",
        "release.key.pub",
        &full_v3,
    ])?;
    a.ok(&[
        "checkout",
        "--sysroot",
        "device2",
        &ids[2],
        "device2-checkout",
    ])?;
    compare(&v3, &tmp.join("device2-checkout"))?;
    println!("# device2's checkout of 1.2 equals the source tree");

    println!(
        "\n## Device 3 holds only 1.0: the 1.1 -> 1.2 delta is refused before anything is written"
    );
    a.ok(&[
        "delta",
        "generate",
        "--repo",
        "repo",
        "--empty",
        "--to",
        &ids[0],
        "--out",
        "updates/v1.0-full.update",
        "--sign-key",
        "release.key",
    ])?;
    // The same, unsigned: what a device must refuse (the A/B part shows it).
    a.ok(&[
        "delta",
        "generate",
        "--repo",
        "repo",
        "--empty",
        "--to",
        &ids[0],
        "--out",
        "updates/v1.0-unsigned.update",
    ])?;
    a.ok(&[
        "apply-offline",
        "--sysroot",
        "device3",
        "--trusted-key",
        "release.key.pub",
        "updates/v1.0-full.update",
    ])?;
    let err = a.fails(&[
        "apply-offline",
        "--sysroot",
        "device3",
        "--trusted-key",
        "release.key.pub",
        &delta_23,
    ])?;
    let expected = format!(
        "commit {}, the source of this delta, is not in the store",
        ids[1]
    );
    ensure!(
        err.contains(&expected),
        "the refusal does not say `{expected}`"
    );

    crate::demo_ab::story(&|args| a.ok(args), &|args| a.fails(args), tmp, &ids)?;
    crate::demo_publish::story(&|args| a.ok(args), &|args| a.fails(args), tmp, &ids)?;

    println!("\n# demo: all steps behaved as expected");
    Ok(())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 temporary path")
}

/// Compares two trees: names, types, modes, contents, symlink targets.
fn compare(a: &Path, b: &Path) -> Result<()> {
    let out = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()?;
    if !out.status.success() {
        bail!("trees differ:\n{}", String::from_utf8_lossy(&out.stdout));
    }
    let modes = |root: &Path| -> Result<String> {
        let o = Command::new("find")
            .arg(".")
            .arg("-printf")
            .arg("%p %y %m\n")
            .current_dir(root)
            .output()?;
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        Ok(lines.join("\n"))
    };
    let (ma, mb) = (modes(a)?, modes(b)?);
    ensure!(ma == mb, "types or modes differ:\n{ma}\n---\n{mb}");
    Ok(())
}
