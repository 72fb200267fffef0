//! The C test firmware (`tests/c-firmware`): C code built with `arm-none-eabi-gcc` that links
//! `libecu_update.a` (agent-core/capi, built for `thumbv7em-none-eabihf` with the `firmware`
//! profile) and runs the Rust firmware's scenarios on the same board under
//! `qemu-system-arm -machine mps2-an386`, with its own C flash driver.
//!
//! - [`c_firmware`]: builds it (with error texts) and runs the scenarios for transport blocks
//!   of 8, 64 and 4093 bytes; fails when any run fails.
//! - [`size`]: builds it without error texts (`ECU_FW_QUIET`, as the Rust size report's
//!   `quiet` build) and measures flash, static RAM and the install's stack.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::firmware::{self, BLOCK_SIZES};
use crate::tools::{have, root, run};

const TARGET: &str = "thumbv7em-none-eabihf";
const SCENARIOS: [&str; 4] = [
    "from scratch",
    "delta",
    "one flipped byte",
    "below the floor",
];

fn out_dir() -> PathBuf {
    root().join("target/c-firmware")
}

fn ensure_tools() -> Result<()> {
    for tool in ["arm-none-eabi-gcc", "qemu-system-arm", "arm-none-eabi-size"] {
        if !have(tool) {
            bail!(
                "{tool} is missing: apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm binutils-arm-none-eabi"
            );
        }
    }
    Ok(())
}

/// `libecu_update.a` for the Cortex-M4: opt-level "s", fat LTO, one codegen unit, panic
/// abort (profile `firmware`), compact SHA-256 rounds (as tests/firmware/.cargo/config.toml).
/// Its own target folder, so these flags do not rebuild the workspace's other builds.
fn build_lib() -> Result<PathBuf> {
    eprintln!("xtask: building libecu_update.a for {TARGET}");
    run(Command::new("cargo")
        .current_dir(root())
        .args([
            "build",
            "-q",
            "-p",
            "ecu-update-capi",
            "--profile",
            "firmware",
        ])
        .args(["--target", TARGET])
        .env("CARGO_TARGET_DIR", out_dir())
        .env("RUSTFLAGS", "--cfg sha2_backend_soft=\"compact\"")
        .env_remove("CARGO_ENCODED_RUSTFLAGS"))?;
    Ok(out_dir().join(TARGET).join("firmware/libecu_update.a"))
}

/// The trusted key (tests/firmware/test-key.pub, which signs the scenario files) as a C
/// initialiser.
fn key_define() -> Result<String> {
    let hex = fs::read_to_string(root().join("tests/firmware/test-key.pub"))?;
    let hex = hex.trim();
    ensure!(
        hex.len() == 64,
        "tests/firmware/test-key.pub must hold 64 hex digits"
    );
    let bytes: Vec<String> = (0..32)
        .map(|i| format!("0x{}", &hex[2 * i..2 * i + 2]))
        .collect();
    Ok(format!("-DECU_TEST_KEY={}", bytes.join(",")))
}

/// Compiles and links the firmware; `quiet` leaves the error texts out.
fn build_elf(lib: &Path, quiet: bool) -> Result<PathBuf> {
    let src = root().join("tests/c-firmware");
    let elf = out_dir().join(if quiet {
        "ecu-c-fw-quiet.elf"
    } else {
        "ecu-c-fw.elf"
    });
    let mut cc = Command::new("arm-none-eabi-gcc");
    cc.args([
        "-mcpu=cortex-m4",
        "-mthumb",
        "-mfloat-abi=hard",
        "-mfpu=fpv4-sp-d16",
    ])
    .args(["-std=c11", "-Os", "-g", "-Wall", "-Wextra", "-Werror"])
    .args(["-ffunction-sections", "-fdata-sections"])
    .arg(key_define()?)
    .arg("-I")
    .arg(root().join("agent-core/capi/include"))
    .arg("-I")
    .arg(root().join("bootloader-hooks/include"));
    if quiet {
        cc.arg("-DECU_FW_QUIET");
    }
    cc.args(["main_qemu.c", "scenario.c", "flash.c"].map(|f| src.join(f)))
        .arg(lib)
        .args(["-nostartfiles", "-T"])
        .arg(src.join("link.ld"))
        .args([
            "-Wl,--gc-sections",
            "-Wl,--no-warn-execstack",
            "--specs=nano.specs",
        ])
        .args(["-lc", "-lgcc", "-o"])
        .arg(&elf);
    eprintln!(
        "xtask: building the C firmware{}",
        if quiet { " (no error texts)" } else { "" }
    );
    run(&mut cc)?;
    Ok(elf)
}

fn passed(out: &firmware::Run) -> bool {
    out.ok
        && SCENARIOS
            .iter()
            .all(|s| out.text.contains(&format!("scenario {s}: PASS")))
}

/// `cargo xtask c-firmware`: every scenario, every block size.
pub fn c_firmware() -> Result<()> {
    ensure_tools()?;
    firmware::gen_data()?;
    let lib = build_lib()?;
    let elf = build_elf(&lib, false)?;
    let mut failed = Vec::new();
    for block in BLOCK_SIZES {
        let mut out = firmware::run_qemu(&elf, block, false)?;
        out.ok = passed(&out);
        firmware::report("C", block, &out, &mut failed);
    }
    if !failed.is_empty() {
        bail!("C firmware scenarios failed: {}", failed.join(", "));
    }
    println!("c-firmware: all scenarios passed (blocks {BLOCK_SIZES:?})");
    Ok(())
}

/// The C firmware's budget (used by `cargo xtask size`).
pub struct CSize {
    /// Code and constants of the whole image (`.vectors + .text + .rodata + .ARM.exidx +
    /// .data`).
    pub flash: u64,
    /// Static RAM: `.data + .bss` (the simulated flash excluded).
    pub ram: u64,
    /// The install's stack high-water mark (feed + finish), max over the block sizes.
    pub stack: u64,
    /// Bytes of the memory lent to `ecu_update_init` (part of `ram`).
    pub handle: u64,
    /// `.text` bytes by crate: the agent's crates, the C API, the C firmware, the rest.
    pub code: std::collections::BTreeMap<String, u64>,
}

/// Builds the quiet C firmware, runs it for every block size, measures it.
pub fn size() -> Result<CSize> {
    ensure_tools()?;
    firmware::gen_data()?;
    let lib = build_lib()?;
    let elf = build_elf(&lib, true)?;
    let mut stack = 0;
    for block in BLOCK_SIZES {
        let out = firmware::run_qemu(&elf, block, false)?;
        ensure!(
            passed(&out),
            "the C firmware failed under QEMU (block {block}):\n{}",
            out.text
        );
        stack = stack.max(firmware::value(&out.text, "c-install-stack-bytes")?);
    }
    let sec = |name: &str| firmware::section_size(&elf, name);
    let flash =
        sec(".vectors")? + sec(".text")? + sec(".rodata")? + sec(".ARM.exidx")? + sec(".data")?;
    let ram = sec(".data")? + sec(".bss")?;
    ensure!(
        flash > 0 && ram > 0,
        "no sections measured in {}",
        elf.display()
    );
    let handle = firmware::symbol_size(&elf, "update_mem")?;
    let mut code = std::collections::BTreeMap::new();
    for (k, v) in firmware::code_by_crate(&elf)? {
        let k = if firmware::is_agent(&k) {
            "agent crates".to_string()
        } else {
            k
        };
        *code.entry(k).or_insert(0) += v;
    }
    let _ = fs::metadata(&elf).context("the C firmware ELF")?;
    Ok(CSize {
        flash,
        ram,
        stack,
        handle,
        code,
    })
}
