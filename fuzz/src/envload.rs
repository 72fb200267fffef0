//! `env_load`: the agent's own loading of its boot environment (`agent_linux::deploy::env`),
//! configured through `agent.conf` with arbitrary sizes and offsets, on real files.
//!
//! Input: byte 0 the backend (`% 3`: uboot, uboot-redundant, grub), byte 1 the scheme (`% 3`:
//! native, rauc, mender), bytes 2..6 `env-size` (LE `u32`), 6..10 and 10..14 the two offsets
//! (LE `u32`), byte 14 flags (bit 0: both copies in one file; bit 1: the first copy is
//! `/dev/zero`, a device that never ends), then the file contents (for two
//! files, split in the middle). What one load allocates is bounded ([`ALLOC_FACTOR`]).

use std::fs;
use std::path::Path;

use agent_linux::bootcfg::BootConfig;
use agent_linux::deploy::env::{self, EnvContent};

/// What loading may allocate at most, beyond a fixed 1 MiB: this many times the configured
/// size of a copy plus the bytes of the files (two copies read, their variables, the image
/// and its decoded twin).
pub const ALLOC_FACTOR: usize = 6;

/// What a load did (for the seed test).
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// `agent.conf` was refused.
    ConfigRefused,
    /// Reading failed with an error.
    Failed,
    /// No environment.
    Missing,
    /// A valid environment without boot state.
    NoBootState,
    /// A boot state, which was written back and read again to the same state.
    RoundTripped,
    /// A boot state the writer refused (with an error, not a panic).
    WriteRefused,
}

/// Runs one input. Asserts: no panic; an error has a message; the variables read fit in what
/// was read; a boot state written back (to the other copy for a redundant environment) reads
/// back as the same state with the same other variables.
pub fn check(data: &[u8]) -> Loaded {
    if data.len() < 15 {
        return Loaded::ConfigRefused;
    }
    let backend = ["uboot", "uboot-redundant", "grub"][data[0] as usize % 3];
    let scheme = ["native", "rauc", "mender"][data[1] as usize % 3];
    let u32_at = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let (size, off1, off2, flags) = (u32_at(2), u32_at(6), u32_at(10), data[14]);
    let body = &data[15..];
    let dir = crate::scratch_dir();
    let root = dir.path();
    let one_file = flags & 1 != 0;
    let zero = flags & 2 != 0;
    let (a, b) = if one_file {
        (body, &body[..0])
    } else {
        body.split_at(body.len() / 2)
    };
    fs::write(root.join("env1"), a).unwrap();
    let first = if zero {
        "/dev/zero".to_string()
    } else {
        root.join("env1").display().to_string()
    };
    let second = if one_file {
        first.clone()
    } else {
        fs::write(root.join("env2"), b).unwrap();
        root.join("env2").display().to_string()
    };
    let mut conf = format!(
        "backend = {backend}\nscheme = {scheme}\nenv = {first}\nenv-size = {size}\nenv-offset = {off1}\n"
    );
    if backend == "uboot-redundant" {
        conf.push_str(&format!(
            "env-redundant = {second}\nenv-redundant-offset = {off2}\n"
        ));
    }
    let cfg = match BootConfig::parse(root, &root.join("agent.conf"), &conf) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return Loaded::ConfigRefused;
        }
    };
    let read_len = |p: &Path| fs::metadata(p).map(|m| m.len() as usize).unwrap_or(0);
    let limit = cfg.env_size.saturating_mul(2)
        + read_len(&root.join("env1"))
        + read_len(&root.join("env2"));
    let (read, peak) = crate::peak_during(|| env::read(&cfg));
    let bound = ALLOC_FACTOR * (cfg.env_size + body.len()) + (1 << 20);
    assert!(
        peak <= bound,
        "loading a {} environment of env-size {} from {} bytes allocated {peak} bytes at once (bound {bound})",
        backend,
        cfg.env_size,
        body.len()
    );
    let (img, state) = match read {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return Loaded::Failed;
        }
        Ok(EnvContent::Missing) => return Loaded::Missing,
        Ok(EnvContent::NoBootState(img)) => {
            let total: usize = img.raw_vars.iter().map(|(k, v)| k.len() + v.len()).sum();
            assert!(
                total <= limit,
                "{total} bytes of variables from {limit} read"
            );
            return Loaded::NoBootState;
        }
        Ok(EnvContent::Ready(img, st)) => (img, *st),
    };
    let total: usize = img.raw_vars.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(
        total <= limit,
        "{total} bytes of variables from {limit} read"
    );
    // /dev/zero reads as blank: it can never hold a boot state. Only a redundant environment
    // whose second copy is a real file may (the bootloader takes the valid copy).
    let only_zero = backend != "uboot-redundant" || one_file;
    if zero && only_zero {
        panic!("a boot state was decoded from /dev/zero alone: {state:?}");
    }
    if let Err(e) = env::write(&cfg, Some(&img), &state, &[]) {
        assert!(!e.to_string().is_empty());
        return Loaded::WriteRefused;
    }
    match env::read(&cfg) {
        Ok(EnvContent::Ready(_, st2)) => {
            assert_eq!(*st2, state, "written back, the state reads differently");
            Loaded::RoundTripped
        }
        other => panic!("a boot state written back reads as {other:?}"),
    }
}
