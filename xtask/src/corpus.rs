//! The default corpus of `cargo xtask bench --vs-ostree`: three versions of a small Debian
//! system that differ as real releases do, built from real packages with `debootstrap` and
//! cached outside the clone, keyed by their definition.
//!
//! | tree | what |
//! | --- | --- |
//! | `v1` | `debootstrap --variant=minbase bookworm` |
//! | `v2` | the same with `--include=curl` (curl, libcurl and their libraries) |
//! | `v3` | the same with `--include=curl,less` |
//!
//! Each tree is then trimmed as an image build would trim it (the downloaded `.deb` files and
//! the apt lists go, so do the device nodes in `/dev`, and FIFOs or sockets anywhere, which
//! neither tool commits). Never random bytes: they neither compress nor diff like a real
//! system. The trees are owned by root (setuid programs, `/etc/shadow` 0640) and are read as
//! root.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tools;

/// The corpus's cache key: a new definition gets a new directory.
const KEY: &str = "bench-corpus-v1";
/// The Debian release the trees are built from.
const SUITE: &str = "bookworm";
/// Where the packages come from.
const MIRROR: &str = "http://deb.debian.org/debian";
/// The three trees: name, packages added to minbase, description.
const VERSIONS: &[(&str, &str, &str)] = &[
    ("v1", "", "minbase"),
    ("v2", "curl", "minbase + curl"),
    ("v3", "curl,less", "minbase + curl + less"),
];

/// What the cached trees are: written last into the cache, compared on every use.
fn definition() -> String {
    let mut d = format!(
        "debootstrap --variant=minbase {SUITE} {MIRROR}; trimmed: dev/*, \
         var/cache/apt/archives/*.deb, var/lib/apt/lists/*, device nodes, FIFOs, sockets\n"
    );
    for (name, include, what) in VERSIONS {
        d.push_str(&format!("{name}: {what} (--include={include})\n"));
    }
    d
}

/// `$XDG_CACHE_HOME/ecu-agent/<KEY>` or `~/.cache/ecu-agent/<KEY>`.
fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("ecu-agent").join(KEY))
}

/// The three trees of the default corpus, built (as root, with `debootstrap`, a few minutes
/// once) when the cache does not hold them for the current definition.
pub fn trees() -> Result<[PathBuf; 3]> {
    let dir = cache_dir()?;
    let out = [dir.join("v1"), dir.join("v2"), dir.join("v3")];
    let def_file = dir.join("definition");
    if fs::read_to_string(&def_file).is_ok_and(|d| d == definition()) {
        println!("corpus: cached in {}", dir.display());
        return Ok(out);
    }
    if !tools::is_root() {
        bail!(
            "the default corpus is built with debootstrap, which needs root; run as root once \
             (it is cached in {}) or give --trees V1 V2 V3",
            dir.display()
        );
    }
    tools::ensure_package("debootstrap", "debootstrap")?;
    fs::create_dir_all(dir.join("debs"))?;
    let _ = fs::remove_file(&def_file);
    for (i, (name, include, what)) in VERSIONS.iter().enumerate() {
        let tmp = dir.join(format!("{name}.tmp"));
        for d in [&tmp, &out[i]] {
            if d.exists() {
                fs::remove_dir_all(d).with_context(|| format!("remove {}", d.display()))?;
            }
        }
        println!("corpus: building {name} ({what}) with debootstrap from {MIRROR} ...");
        let t = std::time::Instant::now();
        let mut c = Command::new("debootstrap");
        c.arg("--variant=minbase");
        if !include.is_empty() {
            c.arg(format!("--include={include}"));
        }
        c.arg(format!("--cache-dir={}", dir.join("debs").display()))
            .arg(SUITE)
            .arg(&tmp)
            .arg(MIRROR)
            .stdout(std::process::Stdio::null());
        tools::run(&mut c)?;
        trim(&tmp)?;
        fs::rename(&tmp, &out[i])?;
        println!("corpus: {name} done in {:.0} s", t.elapsed().as_secs_f64());
    }
    fs::write(&def_file, definition())?;
    Ok(out)
}

/// Trims a fresh debootstrap tree as an image build does.
fn trim(root: &Path) -> Result<()> {
    let empty_dir = |d: &Path, only: Option<&str>| -> Result<()> {
        let Ok(rd) = fs::read_dir(d) else {
            return Ok(());
        };
        for e in rd {
            let e = e?;
            let p = e.path();
            if only.is_some_and(|ext| p.extension().is_none_or(|x| x != ext)) {
                continue;
            }
            if e.file_type()?.is_dir() {
                if only.is_none() && p.file_name().is_some_and(|n| n == "partial") {
                    continue;
                }
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        Ok(())
    };
    empty_dir(&root.join("dev"), None)?;
    empty_dir(&root.join("var/cache/apt/archives"), Some("deb"))?;
    empty_dir(&root.join("var/lib/apt/lists"), None)?;
    // Anything else neither tool can commit.
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket() {
                fs::remove_file(e.path())?;
            }
        }
    }
    Ok(())
}
