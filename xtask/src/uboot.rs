//! `cargo xtask uboot`: U-Boot built from Debian's source package, one build per
//! [`Variant`](uboot_key::Variant); the one there is: QEMU's `vexpress-a9` with a redundant
//! environment on the SD card that `saveenv` writes and U-Boot's environment boot counter
//! (`CONFIG_BOOTCOUNT_LIMIT`, `CONFIG_BOOTCOUNT_ENV`; `xtask/uboot/vexpress.config`), which
//! runs RAUC's `contrib/uboot.sh` (`bootloader-hooks/tests/rauc_uboot.rs`) and counts Mender's
//! trial boots (`bootloader-hooks/tests/mender_uboot.rs`).
//!
//! The three files of the source package are downloaded from deb.debian.org and checked
//! against the SHA-256 sums below (those of the package's `.dsc`); Debian's patches are
//! applied in `debian/patches/series` order; the build runs with Debian's
//! `gcc-arm-linux-gnueabihf`. The result is cached outside the clone, keyed by the version and
//! the configuration ([`Variant::build_dir`](uboot_key::Variant::build_dir)), so a machine builds it once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::tools::{have, run};
use crate::uboot_key::{self, Variant, DEBIAN_VERSION};

const POOL: &str = "http://deb.debian.org/debian/pool/main/u/u-boot";

/// The source package's files and their SHA-256 (from the `.dsc`, itself pinned here).
const FILES: [(&str, &str); 3] = [
    (
        "u-boot_2023.01+dfsg-2+deb12u3.dsc",
        "baf9a1492456920ff66b00fdd19ce8c588261bc2698b4875c9f5fdcfb1332aae",
    ),
    (
        "u-boot_2023.01+dfsg.orig.tar.xz",
        "e75da6f089d063aaef39a1c17f1631791d87700662624e18de2121fa39a1ed44",
    ),
    (
        "u-boot_2023.01+dfsg-2+deb12u3.debian.tar.xz",
        "f9d96a5095d542d8732eccdabcd1d1e7eaaa832311ce395f78b8ead1fad9845e",
    ),
];

/// Commands the build needs, with the Debian package providing each.
const BUILD_TOOLS: [(&str, &str); 7] = [
    ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
    ("make", "make"),
    ("bison", "bison"),
    ("flex", "flex"),
    ("patch", "patch"),
    ("curl", "curl"),
    ("bc", "bc"),
];

fn progress(msg: &str) {
    eprintln!("xtask uboot: {msg}");
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .with_context(|| format!("could not run sha256sum on {}", path.display()))?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Downloads `name` into `dir` unless a copy with the right SHA-256 is there.
fn fetch(dir: &Path, name: &str, want: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() && sha256(&path)? == want {
        progress(&format!("{name}: cached, SHA-256 ok"));
        return Ok(path);
    }
    let tmp = dir.join(format!("{name}.part"));
    let url = format!("{POOL}/{name}");
    progress(&format!("downloading {url}"));
    run(Command::new("curl")
        .args(["-fSL", "--retry", "3", "-o"])
        .arg(&tmp)
        .arg(&url))?;
    let got = sha256(&tmp)?;
    if got != want {
        let _ = fs::remove_file(&tmp);
        bail!("{url} has SHA-256 {got}, expected {want}; the mirror serves a different file, refusing to build from it");
    }
    fs::rename(&tmp, &path)?;
    progress(&format!("{name}: SHA-256 ok"));
    Ok(path)
}

/// Builds (once) every variant; returns their paths.
pub fn ensure() -> Result<Vec<PathBuf>> {
    uboot_key::VARIANTS
        .iter()
        .map(|v| ensure_variant(v))
        .collect()
}

/// Builds (once) and returns the path of `v`'s artifact.
pub fn ensure_variant(v: &Variant) -> Result<PathBuf> {
    let bin = v.path();
    if bin.is_file() {
        progress(&format!("cached: {}", bin.display()));
        return Ok(bin);
    }
    let missing: Vec<&str> = BUILD_TOOLS
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        bail!(
            "building U-Boot needs {}; install with: apt-get install -y {}",
            missing.join(", "),
            missing.join(" ")
        );
    }
    let start = Instant::now();
    let out_dir = v.build_dir();
    let downloads = uboot_key::cache_root().join("downloads");
    fs::create_dir_all(&downloads)
        .with_context(|| format!("cannot create {}", downloads.display()))?;
    let mut paths = Vec::new();
    for (name, sum) in FILES {
        paths.push(fetch(&downloads, name, sum)?);
    }
    let work = out_dir.with_extension("work");
    if work.exists() {
        fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove the stale {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;
    progress("unpacking the source package");
    run(Command::new("tar")
        .arg("xf")
        .arg(&paths[1])
        .arg("-C")
        .arg(&work))?;
    let src = work.join("u-boot-2023.01");
    if !src.is_dir() {
        bail!(
            "{} did not unpack into {}",
            paths[1].display(),
            src.display()
        );
    }
    run(Command::new("tar")
        .arg("xf")
        .arg(&paths[2])
        .arg("-C")
        .arg(&src))?;
    let series = fs::read_to_string(src.join("debian/patches/series"))
        .context("the Debian tarball has no debian/patches/series")?;
    let patches: Vec<&str> = series
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    progress(&format!(
        "applying Debian's {} patches (debian/patches/series)",
        patches.len()
    ));
    for p in &patches {
        run(Command::new("patch")
            .args(["-p1", "-s", "-N", "-i"])
            .arg(src.join("debian/patches").join(p))
            .current_dir(&src))
        .with_context(|| format!("Debian patch {p} does not apply"))?;
    }
    let build = work.join("build");
    let make = |args: &[&str]| -> Result<()> {
        run(Command::new("make")
            .arg("-s")
            .arg(format!("O={}", build.display()))
            .arg("CROSS_COMPILE=arm-linux-gnueabihf-")
            .args(args)
            .current_dir(&src))
    };
    let defconfig = format!("{}_defconfig", v.board);
    progress(&format!(
        "configuring {defconfig} + the {} fragment",
        v.name
    ));
    make(&[&defconfig])?;
    let config = build.join(".config");
    let mut text = fs::read_to_string(&config)?;
    text.push_str(v.fragment);
    fs::write(&config, text)?;
    make(&["olddefconfig"])?;
    let merged = fs::read_to_string(&config)?;
    for line in v.fragment.lines() {
        let l = line.trim();
        let wanted = l.starts_with("CONFIG_") || l.ends_with("is not set");
        if wanted && !merged.lines().any(|m| m.trim() == l) {
            bail!(
                "Kconfig dropped `{l}` (a missing dependency?); fix the {} fragment in xtask/uboot/",
                v.name
            );
        }
    }
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    progress(&format!(
        "building {} with {jobs} jobs (about a minute on two cores)",
        v.artifact
    ));
    make(&[&format!("-j{jobs}"), v.artifact])?;
    fs::create_dir_all(&out_dir)?;
    let tmp = out_dir.join(format!("{}.part", v.artifact));
    fs::copy(build.join(v.artifact), &tmp)?;
    fs::write(
        out_dir.join("BUILD-INFO"),
        format!(
            "Debian u-boot {DEBIAN_VERSION}, {defconfig} plus:\n{}\nsources ({POOL}):\n{}\n",
            v.fragment,
            FILES
                .iter()
                .map(|(n, s)| format!("{s}  {n}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    )?;
    fs::rename(&tmp, &bin)?;
    fs::remove_dir_all(&work).ok();
    progress(&format!(
        "built {} in {:.0} s",
        bin.display(),
        start.elapsed().as_secs_f64()
    ));
    Ok(bin)
}

/// `cargo xtask uboot`: builds (once) every variant and prints their paths.
pub fn run_task(_args: &[String]) -> Result<()> {
    for bin in ensure()? {
        println!("{}", bin.display());
    }
    Ok(())
}
