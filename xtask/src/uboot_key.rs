//! Where the U-Boot builds are cached. Shared (through `#[path]`) by `cargo xtask uboot`, which
//! builds them, and by the tests that boot them, which only look them up: std only.

use std::path::PathBuf;

/// The Debian source package version built.
pub const DEBIAN_VERSION: &str = "2023.01+dfsg-2+deb12u3";

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

/// One U-Boot build from the same Debian source: a board, the Kconfig lines added to its
/// defconfig, and the file the tests boot.
pub struct Variant {
    /// Names the cache folder.
    pub name: &'static str,
    /// The board (`<board>_defconfig`).
    pub board: &'static str,
    /// The Kconfig lines added to the defconfig.
    pub fragment: &'static str,
    /// The file kept: `u-boot.bin` (QEMU `-bios`) or the ELF `u-boot` (QEMU `-kernel`).
    pub artifact: &'static str,
}

/// QEMU `vexpress-a9` with a redundant environment on the SD card that `saveenv` writes, a
/// `bootcmd` sourcing `boot.scr` from it (RAUC's `contrib/uboot.sh`,
/// `bootloader-hooks/tests/rauc_uboot.rs`), and U-Boot's environment boot counter
/// (`CONFIG_BOOTCOUNT_ENV`: Mender, `bootloader-hooks/tests/mender_uboot.rs`).
pub const VEXPRESS: Variant = Variant {
    name: "vexpress",
    board: "vexpress_ca9x4",
    fragment: include_str!("../uboot/vexpress.config"),
    artifact: "u-boot",
};

/// Every variant `cargo xtask uboot` builds.
pub const VARIANTS: [&Variant; 1] = [&VEXPRESS];

impl Variant {
    /// `<cache>/u-boot-<version>-<name>-<16 hex digits of version, board and fragment>`.
    pub fn build_dir(&self) -> PathBuf {
        let key =
            fnv1a64(format!("{DEBIAN_VERSION}\n{}\n{}", self.board, self.fragment).as_bytes());
        cache_root().join(format!("u-boot-{DEBIAN_VERSION}-{}-{key:016x}", self.name))
    }

    /// The cached artifact (it may not exist yet).
    pub fn path(&self) -> PathBuf {
        self.build_dir().join(self.artifact)
    }
}
