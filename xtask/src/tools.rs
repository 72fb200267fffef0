//! Finding and installing what the suite needs: rustup targets, Debian packages, cargo tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Cortex-M targets the `no_std` crates and the firmware are built for.
pub const TARGETS: &[&str] = &[
    "thumbv7em-none-eabihf",
    "thumbv6m-none-eabi",
    "thumbv7m-none-eabi",
];

/// Debian packages the real-tool tests use, with a command each one provides.
pub const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-arm", "qemu-system-arm"),
    ("binutils-arm-none-eabi", "arm-none-eabi-size"),
    // The C firmware (tests/c-firmware): the compiler and newlib's libc (memcpy, strlen).
    ("gcc-arm-none-eabi", "arm-none-eabi-gcc"),
    (
        "libnewlib-arm-none-eabi",
        "/usr/lib/arm-none-eabi/newlib/nano.specs",
    ),
    ("libubootenv-tool", "fw_printenv"),
    ("u-boot-tools", "mkenvimage"),
    ("u-boot-qemu", "/usr/lib/u-boot/qemu_arm/u-boot.bin"),
    ("grub-common", "grub-editenv"),
    // agent-linux/tests/health_check.rs verifies the shipped units with systemd's verifier.
    ("systemd", "systemd-analyze"),
    // agent-linux/tests/upgrade_http.rs and `cargo xtask demo` serve a published folder.
    ("nginx", "/usr/sbin/nginx"),
    // upgrade_http.rs makes a fleet CA and a server certificate for nginx's HTTPS.
    ("openssl", "openssl"),
    ("grub-emu", "grub-emu"),
    // agent-linux/tests/import_ostree.rs: repositories made and checked out by the real ostree.
    ("ostree", "ostree"),
    ("dosfstools", "mkfs.vfat"),
    ("mtools", "mcopy"),
    // bootloader-hooks/tests/common/upstream.rs fetches upstream tarballs (RAUC) and unpacks them
    ("curl", "curl"),
    ("xz-utils", "xz"),
    // `cargo xtask uboot`: U-Boot built from Debian's source for the Mender and RAUC tests.
    ("gcc-arm-linux-gnueabihf", "arm-linux-gnueabihf-gcc"),
    ("make", "make"),
    ("bison", "bison"),
    ("flex", "flex"),
    ("bc", "bc"),
    ("patch", "patch"),
];

/// True when running under CI (`CI=true`): a missing tool is then an error, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The workspace root (the parent of this crate's directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Whether `cmd` (a name on PATH or an absolute path) exists.
pub fn have(cmd: &str) -> bool {
    if cmd.starts_with('/') {
        return Path::new(cmd).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(cmd).is_file()))
        .unwrap_or(false)
}

/// Whether xtask runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Runs a command, inheriting stdio; fails with the command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Installs the rustup targets and components the suite uses.
pub fn ensure_rust() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let installed = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing rustup targets {}", missing.join(" "));
        run(Command::new("rustup")
            .arg("target")
            .arg("add")
            .args(&missing))?;
    }
    for component in ["rustfmt", "clippy"] {
        let ok = Command::new("cargo")
            .arg(if component == "rustfmt" {
                "fmt"
            } else {
                "clippy"
            })
            .arg("--version")
            .output();
        if !ok.map(|o| o.status.success()).unwrap_or(false) {
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// Installs the Debian packages the real-tool tests use when running as root; otherwise says
/// which command installs them. Under CI a package that cannot be installed is an error.
pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, cmd)| !have(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if is_root() && have("apt-get") {
        eprintln!("xtask: installing Debian packages {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        return Ok(());
    }
    let hint = format!("sudo apt-get install -y {}", missing.join(" "));
    if in_ci() {
        bail!("missing Debian packages under CI; install them with: {hint}");
    }
    eprintln!(
        "xtask: WARNING: tests that need {} will be skipped; install them with: {hint}",
        missing.join(", ")
    );
    Ok(())
}

/// Installs a cargo-installed tool when missing (`cargo install --locked`).
pub fn ensure_cargo_tool(bin: &str, krate: &str) -> Result<()> {
    if have(bin) {
        return Ok(());
    }
    eprintln!("xtask: installing {krate} (cargo install --locked {krate}); this takes a minute or two once");
    run(Command::new("cargo").args(["install", "--locked", krate]))
}

/// Makes sure the Debian package `pkg`, which provides `cmd`, is installed: installs it when
/// running as root, otherwise fails with the command that installs it.
pub fn ensure_package(pkg: &str, cmd: &str) -> Result<()> {
    if have(cmd) {
        return Ok(());
    }
    if !(is_root() && have("apt-get")) {
        bail!("`{cmd}` is missing; install it with: sudo apt-get install -y {pkg}");
    }
    eprintln!("xtask: installing the Debian package {pkg}");
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if !have(cmd) {
        bail!("installed {pkg} but `{cmd}` is still missing");
    }
    Ok(())
}
