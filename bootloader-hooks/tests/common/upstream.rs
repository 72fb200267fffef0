//! Upstream files that tests run verbatim, fetched from Debian's archive at test time into a
//! cache outside the clone (`$ECU_AGENT_UPSTREAM_CACHE`, else `$XDG_CACHE_HOME/ecu-agent/upstream`,
//! else `~/.cache/ecu-agent/upstream`), one folder per source and version. The tarball is
//! checked against its pinned SHA-256 on every use (a cached copy that does not match is
//! fetched again; a fresh download that does not match fails the test). Provenance and
//! licences: `tests/upstream/README.md`.
//!
//! A download failure prints `SKIP` and returns `None`, except under `CI=true`, where it fails
//! the test.

use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

/// A source tarball pinned by version and hash.
pub struct Tarball {
    /// Cache folder name, e.g. `rauc-1.8`.
    pub key: &'static str,
    /// Where Debian's archive serves it.
    pub url: &'static str,
    /// Its SHA-256 (lowercase hex), as the `.dsc` of the Debian source package lists it.
    pub sha256: &'static str,
}

/// RAUC 1.8, the upstream tarball of Debian's `rauc` 1.8-2 (hash from `rauc_1.8-2.dsc`).
pub const RAUC_1_8: Tarball = Tarball {
    key: "rauc-1.8",
    url: "http://deb.debian.org/debian/pool/main/r/rauc/rauc_1.8.orig.tar.xz",
    sha256: "d233247c1763b1c56c851d0adef2094b7aa2fcd72decf524a8ac0419188e0978",
};

/// The cache root.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("ECU_AGENT_UPSTREAM_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("ecu-agent").join("upstream")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn skip_or_fail(test: &str, why: String) -> Option<PathBuf> {
    test_support::tool::skip(test, &why);
    None
}

/// The verified tarball in the cache, downloaded (with `curl`) if it is missing or does not
/// match its hash.
pub fn tarball(t: &Tarball, test: &str) -> Option<PathBuf> {
    let dir = cache_root().join(t.key);
    let name = t.url.rsplit('/').next().expect("a file name");
    let path = dir.join(name);
    if let Ok(data) = std::fs::read(&path) {
        if sha256_hex(&data) == t.sha256 {
            return Some(path);
        }
        eprintln!("{}: hash mismatch, fetching it again", path.display());
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return skip_or_fail(test, format!("cannot create {}: {e}", dir.display()));
    }
    let tmp = dir.join(format!("{name}.{}.part", std::process::id()));
    let out = Command::new("curl")
        .args(["-fsSL", "--retry", "2", "--connect-timeout", "20", "-o"])
        .arg(&tmp)
        .arg(t.url)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::remove_file(&tmp);
            return skip_or_fail(
                test,
                format!(
                    "downloading {} failed: {}",
                    t.url,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            );
        }
        Err(e) => return skip_or_fail(test, format!("cannot run curl for {}: {e}", t.url)),
    }
    let data = std::fs::read(&tmp).expect("the downloaded file");
    let got = sha256_hex(&data);
    if got != t.sha256 {
        let _ = std::fs::remove_file(&tmp);
        panic!(
            "{} has SHA-256 {got}, not the pinned {}: refusing to use it",
            t.url, t.sha256
        );
    }
    std::fs::rename(&tmp, &path).expect("rename into the cache");
    Some(path)
}

/// The text of `member` (a path inside the tarball), read from the verified tarball.
pub fn file(t: &Tarball, member: &str, test: &str) -> Option<String> {
    let tar = tarball(t, test)?;
    let out = Command::new("tar")
        .arg("-xJOf")
        .arg(&tar)
        .arg(member)
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert!(
        out.status.success(),
        "tar -xJOf {} {member}: {}",
        tar.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("a text file"))
}

/// `text` with each `(from, to)` replaced; every `from` must occur exactly once (a changed
/// upstream file fails here instead of running unmodified).
pub fn substitute(text: &str, subs: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in subs {
        assert_eq!(
            out.matches(from).count(),
            1,
            "{from:?} must occur exactly once in the upstream file"
        );
        out = out.replace(from, to);
    }
    out
}

/// RAUC's `contrib/uboot.sh` with the kernel boot (lines 37 and 39: `run load_kernel`,
/// `bootm ${loadaddr_kernel}`) replaced by echoes of what it would load and boot; nothing
/// else changed.
pub fn rauc_uboot_sh(test: &str) -> Option<String> {
    let text = file(&RAUC_1_8, "rauc-1.8/contrib/uboot.sh", test)?;
    Some(substitute(&text, RAUC_UBOOT_SUBS))
}

/// The one change made to `contrib/uboot.sh`.
pub const RAUC_UBOOT_SUBS: &[(&str, &str)] = &[
    ("run load_kernel\n", "echo \"RAUC-LOAD: ${load_kernel}\"\n"),
    (
        "bootm ${loadaddr_kernel}\n",
        "echo \"RAUC-BOOT: ${bootargs}\"\n",
    ),
];

/// RAUC's `contrib/grub.conf` with the kernel boot of each entry (lines 46-47, 51-52, 56-57:
/// `linux …`, `initrd …`) replaced by an echo of the entry's command line and `halt`; nothing
/// else changed.
pub fn rauc_grub_conf(test: &str) -> Option<String> {
    let text = file(&RAUC_1_8, "rauc-1.8/contrib/grub.conf", test)?;
    Some(substitute(&text, RAUC_GRUB_SUBS))
}

/// The one change made to `contrib/grub.conf`.
pub const RAUC_GRUB_SUBS: &[(&str, &str)] = &[
    (
        "linux (hd0,1)/kernel root=/dev/sda1 $CMDLINE rauc.slot=R",
        "echo \"RAUC-BOOT: root=/dev/sda1 $CMDLINE rauc.slot=R\"",
    ),
    ("initrd (hd0,1)/initramfs", "halt"),
    (
        "linux (hd0,2)/kernel root=/dev/sda2 $CMDLINE rauc.slot=A",
        "echo \"RAUC-BOOT: root=/dev/sda2 $CMDLINE rauc.slot=A\"",
    ),
    ("initrd (hd0,2)/initramfs", "halt"),
    (
        "linux (hd0,3)/kernel root=/dev/sda3 $CMDLINE rauc.slot=B",
        "echo \"RAUC-BOOT: root=/dev/sda3 $CMDLINE rauc.slot=B\"",
    ),
    ("initrd (hd0,3)/initramfs", "halt"),
];
