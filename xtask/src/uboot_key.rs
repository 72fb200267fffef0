//! Where the bootcount U-Boot build is cached. Shared (through `#[path]`) by `cargo xtask
//! uboot`, which builds it, and by the tests that boot it, which only look it up: std only.

use std::path::PathBuf;

/// The Debian source package version built.
pub const DEBIAN_VERSION: &str = "2023.01+dfsg-2+deb12u3";

/// The Kconfig lines added to `qemu_arm_defconfig`.
pub const CONFIG_FRAGMENT: &str = include_str!("../uboot/bootcount.config");

/// FNV-1a, 64 bits: a stable key for the cache directory (not a security hash; the sources
/// themselves are pinned by SHA-256 in `uboot.rs`).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `$ECU_AGENT_CACHE`, else `$XDG_CACHE_HOME/ecu-agent`, else `$HOME/.cache/ecu-agent`.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("ECU_AGENT_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("ecu-agent");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("ecu-agent")
}

/// The directory holding `u-boot.bin` for this version and configuration:
/// `<cache>/u-boot-<version>-bootcount-<16 hex digits>`.
pub fn build_dir() -> PathBuf {
    let key = fnv1a64(format!("{DEBIAN_VERSION}\nqemu_arm\n{CONFIG_FRAGMENT}").as_bytes());
    cache_root().join(format!("u-boot-{DEBIAN_VERSION}-bootcount-{key:016x}"))
}

/// The cached `u-boot.bin` (it may not exist yet).
pub fn uboot_bin() -> PathBuf {
    build_dir().join("u-boot.bin")
}
