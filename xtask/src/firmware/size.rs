//! `cargo xtask size`: the firmware's flash, RAM and stack budget, and the ELF tools it reads
//! sizes with (`arm-none-eabi-size`, `nm`, `objdump` line tables).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::{
    build, ensure_tools, gen_data, run_qemu, value, Variant, BLOCK_SIZES, FLASH_TARGET, RAM_TARGET,
    STACK_TARGET, TARGET,
};

/// `cargo xtask size`: the budget, as a table and as `key: N` lines.
pub fn size() -> Result<()> {
    ensure_tools()?;
    let sizes = gen_data()?;
    let plain = build(Variant::Quiet)?;
    let base = build(Variant::NoAgent)?;
    let mut stack = 0u64;
    let mut init_stack = 0u64;
    for block in BLOCK_SIZES {
        let out = run_qemu(&plain, block, false)?;
        ensure!(
            out.ok,
            "the firmware failed under QEMU (block {block}):\n{}",
            out.text
        );
        stack = stack.max(value(&out.text, "install-stack-bytes")?);
        init_stack = init_stack.max(value(&out.text, "init-stack-bytes")?);
    }
    let syms = symbols(&plain)?;
    let code = code_by_crate(&plain)?;
    let consts = consts_by_crate(&syms);
    let agent_code: u64 = code
        .iter()
        .filter(|(k, _)| is_agent(k))
        .map(|(_, v)| v)
        .sum();
    let agent_consts: u64 = consts
        .iter()
        .filter(|(k, _)| is_agent(k))
        .map(|(_, v)| v)
        .sum();
    let rodata = section_size(&plain, ".rodata")?;
    // Every constant not named by a non-agent crate is counted as the agent's (conservative:
    // string literals and panic locations of every crate are anonymous).
    let others: u64 = consts
        .iter()
        .filter(|(k, _)| !is_agent(k) && k.as_str() != UNNAMED && k.as_str() != "(other)")
        .map(|(_, v)| v)
        .sum();
    let unnamed = rodata.saturating_sub(others + agent_consts);
    let agent_flash = agent_code + agent_consts + unnamed;
    let total = code_size(&plain)?;
    let baseline = code_size(&base)?;
    let subtracted = total.saturating_sub(baseline);
    let ram_of = |name: &str| syms.iter().find(|s| s.name.ends_with(name)).map(|s| s.size);
    let installer = ram_of("agent::INSTALLER").context("no INSTALLER symbol in the firmware")?;
    let store = ram_of("agent::STORE").context("no STORE symbol in the firmware")?;
    let window = ram_of("agent::WINDOW").context("no WINDOW symbol in the firmware")?;

    println!("Firmware budget ({TARGET}, opt-level \"s\", LTO, codegen-units 1, no logging, errors not formatted)");
    println!("  flash (code + constants) of the whole image: {total:>7} B");
    println!(
        "  code by the crate its source lines belong to (DWARF line table; inlined code counts"
    );
    println!("  for the crate that wrote it, inlined `core` code for the crate that called it):");
    for (k, v) in &code {
        let mark = if is_agent(k) { "agent" } else { "" };
        println!("      {k:<24} {v:>7}  {mark}");
    }
    println!("  named constants of the agent's crates:       {agent_consts:>7} B");
    println!("  other constants not named by a non-agent crate (counted as the agent's): {unnamed:>7} B (.rodata: {rodata} B)");
    println!("  => agent-core + bootloader-hooks + their dependencies: {agent_flash} B");
    println!("  cross-check: image minus the same firmware without the agent (feature no-agent, {baseline} B): {subtracted} B");
    println!("     (an upper bound: it also holds the scenario glue and the Rust runtime the agent pulls in)");
    println!("  Installer (static, without its window):    {installer:>7} B");
    println!("  window lent to the installer (static):     {window:>7} B (deflate's 32 KiB)");
    println!("  FlashStore (static):                       {store:>7} B");
    println!("  stack while constructing the Installer:    {init_stack:>7} B (once, at start-up)");
    println!("  stack high-water during an install:        {stack:>7} B (feed + finish, max over blocks {BLOCK_SIZES:?})");
    println!(
        "  update to the second build: {} B from scratch, {} B as a delta (firmware.bin patched), {:.1}%",
        sizes.full,
        sizes.delta,
        100.0 * sizes.delta as f64 / sizes.full.max(1) as f64
    );
    let verdict = |name: &str, n: u64, target: u64, under: bool| {
        let ok = if under { n < target } else { n <= target };
        if ok {
            println!("  target {name}: {n} B, met ({} B to spare)", target - n);
        } else {
            println!("  target {name}: {n} B, MISSED by {} B", n - target);
        }
    };
    verdict("agent flash < 64 KiB", agent_flash, FLASH_TARGET, true);
    verdict(
        "installer + window RAM <= 48 KiB",
        installer + window,
        RAM_TARGET,
        false,
    );
    verdict(
        "installer + window + flash store RAM <= 48 KiB",
        installer + window + store,
        RAM_TARGET,
        false,
    );
    verdict("install stack < 4 KiB", stack, STACK_TARGET, true);
    println!("agent-flash-bytes: {agent_flash}");
    println!("installer-ram-bytes: {installer}");
    println!("installer-window-bytes: {window}");
    println!("flash-store-ram-bytes: {store}");
    println!("install-stack-bytes: {stack}");
    println!("firmware-full-update-bytes: {}", sizes.full);
    println!("firmware-delta-update-bytes: {}", sizes.delta);
    let c = crate::c_firmware::size()?;
    println!();
    println!("C firmware (tests/c-firmware: arm-none-eabi-gcc -Os, libecu_update.a with opt-level \"s\", LTO, panic abort; no error texts), beside the Rust firmware:");
    println!("  {:<48} {:>9} {:>9}", "", "C", "Rust");
    println!(
        "  {:<48} {:>7} B {:>7} B",
        "flash of the whole image", c.flash, total
    );
    println!(
        "  {:<48} {:>7} B {:>7} B",
        "static RAM (C: .data + .bss; Rust: Installer + FlashStore)",
        c.ram,
        installer + store
    );
    println!(
        "  {:<48} {:>7} B {:>7} B",
        "stack high-water during an install", c.stack, stack
    );
    println!("  code of the C image by the source its lines belong to:");
    for (k, v) in &c.code {
        println!("      {k:<24} {v:>7}");
    }
    println!("  (the C image holds the whole C API: both stores, the boot-record steps, the C glue and newlib's string functions; its RAM the 4 KiB block buffer and the lent handle memory, {} B)", c.handle);
    println!("c-firmware-flash-bytes: {}", c.flash);
    println!("c-firmware-ram-bytes: {}", c.ram);
    println!("c-firmware-stack-bytes: {}", c.stack);
    Ok(())
}

/// Bytes of one section of an ELF.
pub(crate) fn section_size(elf: &Path, name: &str) -> Result<u64> {
    let out = Command::new("arm-none-eabi-size")
        .arg("-A")
        .arg(elf)
        .output()?;
    ensure!(out.status.success(), "arm-none-eabi-size failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name))
                .then(|| f.next()?.parse().ok())
                .flatten()
        })
        .unwrap_or(0))
}

/// `.vector_table + .text + .rodata` of an ELF.
fn code_size(elf: &Path) -> Result<u64> {
    let out = Command::new("arm-none-eabi-size")
        .arg("-A")
        .arg(elf)
        .output()?;
    ensure!(out.status.success(), "arm-none-eabi-size failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut n = 0;
    for l in text.lines() {
        let mut f = l.split_whitespace();
        if let (Some(sec), Some(size)) = (f.next(), f.next()) {
            if matches!(sec, ".vector_table" | ".text" | ".rodata" | ".data") {
                n += size.parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(n)
}

struct Sym {
    size: u64,
    kind: char,
    name: String,
}

fn symbols(elf: &Path) -> Result<Vec<Sym>> {
    let out = Command::new("arm-none-eabi-nm")
        .args(["-S", "-C", "--size-sort", "--radix=d"])
        .arg(elf)
        .output()?;
    ensure!(out.status.success(), "arm-none-eabi-nm failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let _addr = f.next()?;
            let size = f.next()?.parse::<u64>().ok()?;
            let kind = f.next()?.chars().next()?;
            Some(Sym {
                size,
                kind,
                name: f.next()?.to_string(),
            })
        })
        .collect())
}

/// Crates whose code is the agent's: the two crates and what they pull in.
const AGENT_CRATES: &[&str] = &[
    "agent_core",
    "bootloader_hooks",
    "miniz_oxide",
    "sha2",
    "digest",
    "block_buffer",
    "salty",
    "zeroize",
    "postcard",
    "heapless",
    "serde",
    "serde_core",
    "embedded_storage",
    "crc",
    "subtle",
    "adler2",
    "hybrid_array",
    "cobs",
];

/// Functions without DWARF line info that an agent crate wrote in assembly: salty's field
/// arithmetic for the Cortex-M4 (`fe25519_mul_asm`, ...).
const ASM_FUNCTIONS: &[(&str, &str)] = &[("<fe25519_", "salty")];

pub(crate) fn is_agent(krate: &str) -> bool {
    AGENT_CRATES.contains(&krate)
}

const UNNAMED: &str = "(unnamed constants)";

/// Crate of a source path in the DWARF line table.
fn crate_of_path(path: &str) -> String {
    if path.contains("/agent-core/capi/") {
        return "ecu_update (C API)".into();
    }
    if path.contains("/tests/c-firmware/") {
        return "(C firmware)".into();
    }
    if path.contains("/agent-core/") {
        return "agent_core".into();
    }
    if path.contains("/bootloader-hooks/") {
        return "bootloader_hooks".into();
    }
    if path.contains("/tests/firmware/") {
        return "(firmware)".into();
    }
    if let Some(rest) = path.split("/registry/src/").nth(1) {
        // index.crates.io-XXXX/name-1.2.3/src/...
        if let Some(dir) = rest.split('/').nth(1) {
            let name = dir.rsplit_once('-').map_or(dir, |(n, _)| n);
            return name.replace('-', "_");
        }
    }
    if path.contains("/library/core/") {
        return "(Rust core)".into();
    }
    "(no line info)".into()
}

/// `.text` bytes per crate: every instruction goes to the crate of the source line it was
/// compiled from (`objdump -d -l`), so code inlined into the firmware's functions still counts
/// for the crate that wrote it.
pub(crate) fn code_by_crate(elf: &Path) -> Result<BTreeMap<String, u64>> {
    let out = Command::new("arm-none-eabi-objdump")
        .args(["-d", "-l", "--no-show-raw-insn"])
        .arg(elf)
        .output()?;
    ensure!(out.status.success(), "arm-none-eabi-objdump failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut current = "(no line info)".to_string();
    // Within a function, lines of Rust's `core` (inlined slice, iterator, Option code) are
    // charged to the crate of the last non-core line before them: the code that called them.
    let mut caller: Option<String> = None;
    let mut insns: Vec<(u64, String)> = Vec::new();
    for l in text.lines() {
        if l.starts_with('/') {
            let path = l.rsplit_once(':').map_or(l, |(p, _)| p);
            current = crate_of_path(path);
            if current == "(Rust core)" {
                if let Some(c) = &caller {
                    current = c.clone();
                }
            } else {
                caller = Some(current.clone());
            }
        } else if l.ends_with(">:") {
            let name = l.split_once(' ').map_or("", |(_, f)| f);
            current = ASM_FUNCTIONS
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .map_or("(no line info)", |(_, krate)| krate)
                .to_string();
            caller = None;
        } else if let Some((addr, _)) = l.trim_start().split_once(":\t") {
            if l.starts_with(' ') {
                if let Ok(a) = u64::from_str_radix(addr, 16) {
                    insns.push((a, current.clone()));
                }
            }
        }
    }
    let mut m = BTreeMap::new();
    for w in insns.windows(2) {
        // Gaps (alignment, the next section) are not charged: an instruction is 2 or 4 bytes.
        *m.entry(w[0].1.clone()).or_insert(0) += (w[1].0 - w[0].0).min(4);
    }
    if let Some(last) = insns.last() {
        *m.entry(last.1.clone()).or_insert(0) += 2;
    }
    Ok(m)
}

/// Constant bytes per crate, from the demangled names of read-only symbols; anonymous
/// constants (string literals, panic locations) under [`UNNAMED`].
fn consts_by_crate(syms: &[Sym]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for s in syms.iter().filter(|s| matches!(s.kind, 'r' | 'R')) {
        let name = s.name.trim_start_matches(['<', '&', ' ']);
        let krate = if name.starts_with(".L") {
            UNNAMED.to_string()
        } else {
            let k = name.split("::").next().unwrap_or("");
            if name.contains("::")
                && !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                k.to_string()
            } else {
                "(other)".to_string()
            }
        };
        *m.entry(krate).or_insert(0) += s.size;
    }
    m
}

/// Size of the symbol `name` of an ELF (`nm -S`).
pub(crate) fn symbol_size(elf: &Path, name: &str) -> Result<u64> {
    symbols(elf)?
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.size)
        .with_context(|| format!("no symbol {name} in {}", elf.display()))
}
