//! The Cortex-M firmware (`tests/firmware`, its own workspace): test data, builds, the
//! scenarios under QEMU, and the flash/RAM/stack budget.
//!
//! - [`firmware`]: generates the update files (signed with the test key whose public half is
//!   compiled into the firmware), builds the firmware with `defmt`, with `log` and with no
//!   logging, and runs the scenarios (from scratch, delta, one flipped byte, below the
//!   anti-rollback floor) under `qemu-system-arm -machine mps2-an386 -cpu cortex-m4` for
//!   transport blocks of 8, 64 and 4093 bytes. Fails when any run fails.
//! - [`size`]: the budget of the firmware built with opt-level "s" and LTO (no logging):
//!   flash of `agent-core` + `bootloader-hooks`, the installer's static RAM and the install's
//!   stack high-water mark, each also as a `key: N` line. `docs/BUDGET.md` says how each is
//!   measured.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::tools::{ensure_cargo_tool, have, root};

mod data;
mod qemu;
mod size;

pub(crate) use data::gen_data;
pub(crate) use qemu::{report, run_qemu, value, Run};
pub use size::size;
pub(crate) use size::{code_by_crate, is_agent, section_size, symbol_size};

/// Transport block sizes the scenarios run with: a classic CAN frame, a CAN FD frame and a
/// UDS TransferData block.
pub const BLOCK_SIZES: [usize; 3] = [8, 64, 4093];
/// Budget targets (bytes).
const FLASH_TARGET: u64 = 64 * 1024;
const RAM_TARGET: u64 = 48 * 1024;
const STACK_TARGET: u64 = 4 * 1024;
const TARGET: &str = "thumbv7em-none-eabihf";
const REF: &str = "ecu/cortex-m4/main";

fn fw_dir() -> PathBuf {
    root().join("tests/firmware")
}

pub(crate) fn data_dir() -> PathBuf {
    fw_dir().join("target/fw-data")
}

/// A firmware build variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Defmt,
    Log,
    Plain,
    Quiet,
    NoAgent,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Defmt => "defmt",
            Variant::Log => "log",
            Variant::Plain => "plain",
            Variant::Quiet => "quiet",
            Variant::NoAgent => "no-agent",
        }
    }
    fn features(self) -> Option<&'static str> {
        match self {
            Variant::Defmt => Some("defmt"),
            Variant::Log => Some("log"),
            Variant::Plain => None,
            Variant::Quiet => Some("quiet"),
            Variant::NoAgent => Some("no-agent,quiet"),
        }
    }
}

/// `cargo xtask firmware`: every scenario, every block size, with defmt; then the `log` and the
/// no-logging builds once each. Fails when any run fails.
pub fn firmware() -> Result<()> {
    ensure_tools()?;
    gen_data()?;
    let defmt = build(Variant::Defmt)?;
    let mut failed = Vec::new();
    for block in BLOCK_SIZES {
        let out = run_qemu(&defmt, block, true)?;
        report("defmt", block, &out, &mut failed);
    }
    for v in [Variant::Log, Variant::Plain] {
        let elf = build(v)?;
        let out = run_qemu(&elf, 64, false)?;
        report(v.name(), 64, &out, &mut failed);
    }
    if !failed.is_empty() {
        bail!("firmware scenarios failed: {}", failed.join(", "));
    }
    println!("firmware: all scenarios passed (defmt: blocks {BLOCK_SIZES:?}; log and no logging: block 64)");
    Ok(())
}

fn ensure_tools() -> Result<()> {
    for tool in ["qemu-system-arm", "arm-none-eabi-nm", "arm-none-eabi-size"] {
        if !have(tool) {
            bail!("{tool} is missing: apt-get install -y qemu-system-arm binutils-arm-none-eabi");
        }
    }
    ensure_cargo_tool("defmt-print", "defmt-print")?;
    Ok(())
}

/// Builds a variant; returns a copy of its ELF named after it.
fn build(v: Variant) -> Result<PathBuf> {
    let dir = fw_dir();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&dir)
        .args(["build", "--release", "--target", TARGET])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(f) = v.features() {
        cmd.args(["--features", f]);
    }
    eprintln!("xtask: building the firmware ({})", v.name());
    let status = cmd.status().context("could not start cargo")?;
    ensure!(
        status.success(),
        "building the firmware ({}) failed",
        v.name()
    );
    let elf = dir.join("target").join(TARGET).join("release/ecu-fw");
    let copy = dir.join("target").join(format!("ecu-fw-{}.elf", v.name()));
    fs::copy(&elf, &copy).with_context(|| format!("copying {}", elf.display()))?;
    Ok(copy)
}
