//! Helpers shared by the integration tests that run real tools.
#![allow(dead_code)]

pub mod host;
pub mod upstream;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether `tool` is on PATH, whether a file exists: missing, a failure under CI
/// (`CI=true`), else a `SKIP` line and false so the test returns early.
#[allow(unused_imports)]
pub use test_support::tool::{have, have_file};

/// Runs a command, panics with its output unless it exits 0.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Makes `image` a FAT file system of `kib` KiB labelled `label` (`mkfs.vfat -C`).
pub fn fat_image(image: &Path, label: &str, kib: u32) {
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", label])
        .arg(image)
        .arg(kib.to_string()));
}

/// Copies `from` to `to` with mtools, overwriting; `::path` names a file in the FAT image
/// `image` (a file, or `file@@offset` for a partition in it).
pub fn mcopy(image: impl AsRef<OsStr>, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) {
    run(Command::new("mcopy")
        .args(["-o", "-i"])
        .arg(image)
        .arg(from)
        .arg(to));
}

/// `dir/device.map` mapping the disk image `disk` as grub-emu's (hd0).
pub fn grub_device_map(dir: &Path, disk: &Path) {
    std::fs::write(
        dir.join("device.map"),
        format!("(hd0) {}\n", disk.display()),
    )
    .unwrap();
}

/// One grub-emu run (at most `seconds`) with `dir/device.map` and `args`: what it printed,
/// without the terminal's escape sequences.
pub fn grub_emu(dir: &Path, seconds: &str, args: &[&OsStr]) -> String {
    let out = run(Command::new("timeout")
        .args([seconds, "grub-emu", "-m"])
        .arg(dir.join("device.map"))
        .args(args)
        .stdin(std::process::Stdio::null()));
    strip_ansi(&String::from_utf8_lossy(&out.stdout))
}

/// `fw_env.config` lines for a single env at offset 0 of `img`.
pub fn fw_config_single(dir: &Path, img: &Path, size: usize) -> PathBuf {
    let cfg = dir.join("fw_env.config");
    std::fs::write(&cfg, format!("{} 0x0 {:#x}\n", img.display(), size)).unwrap();
    cfg
}

/// `fw_env.config` for a redundant env with one copy in each of two files.
pub fn fw_config_redundant(dir: &Path, a: &Path, b: &Path, size: usize) -> PathBuf {
    let cfg = dir.join("fw_env_red.config");
    std::fs::write(
        &cfg,
        format!(
            "{} 0x0 {:#x}\n{} 0x0 {:#x}\n",
            a.display(),
            size,
            b.display(),
            size
        ),
    )
    .unwrap();
    cfg
}

/// `fw_printenv -c cfg` as sorted `(name, value)` pairs.
pub fn fw_printenv(cfg: &Path) -> Vec<(String, String)> {
    let out = run(Command::new("fw_printenv").arg("-c").arg(cfg));
    let mut v: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("name=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    v.sort();
    v
}

/// `fw_setenv -c cfg k1 v1 k2 v2 ...` (an empty value deletes).
pub fn fw_setenv(cfg: &Path, pairs: &[(&str, &str)]) {
    let mut c = Command::new("fw_setenv");
    c.arg("-c").arg(cfg);
    for (k, v) in pairs {
        c.arg(k);
        if !v.is_empty() {
            c.arg(v);
        }
    }
    run(&mut c);
}

/// `mkenvimage -s size [-r] [-p pad] -o out` from `key=value` lines.
pub fn mkenvimage(
    dir: &Path,
    out: &Path,
    size: usize,
    redundant: bool,
    pad: Option<u8>,
    vars: &[(&str, &str)],
) {
    let txt = dir.join("vars.txt");
    let body: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&txt, body).unwrap();
    let mut c = Command::new("mkenvimage");
    c.arg("-s").arg(format!("{size:#x}"));
    if redundant {
        c.arg("-r");
    }
    if let Some(p) = pad {
        c.arg("-p").arg(format!("{p:#x}"));
    }
    c.arg("-o").arg(out).arg(&txt);
    run(&mut c);
}

/// `grub-editenv file list` as `(name, value)` pairs in stored order (a line without `=`
/// continues the previous value: grub-editenv prints newlines in values as they are).
pub fn grub_list(file: &Path) -> Vec<(String, String)> {
    let out = run(Command::new("grub-editenv").arg(file).arg("list"));
    let mut v: Vec<(String, String)> = Vec::new();
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        match l.split_once('=') {
            Some((k, val)) => v.push((k.to_string(), val.to_string())),
            None => {
                let last = v.last_mut().expect("continuation line after a variable");
                last.1.push('\n');
                last.1.push_str(l);
            }
        }
    }
    v
}

/// Strips ANSI escapes (grub-emu output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&n) = chars.peek() {
                    chars.next();
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// xorshift64*, seeded: reproducible random sequences.
#[allow(unused_imports)]
pub use test_support::rng::XorShift64Star as Rng;
