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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agent_core::object::{
    self, Commit, DirEntry, DirMeta, DirTree, ObjectId, ObjectKind, Xattrs, S_IFDIR,
};
use agent_core::wire::Codec;
use agent_core::write::UpdateWriter;
use anyhow::{bail, ensure, Context, Result};

use crate::tools::{ensure_cargo_tool, have, root};

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

pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) text: String,
}

/// Runs the firmware under QEMU with the data folder as working directory.
pub(crate) fn run_qemu(elf: &Path, block: usize, defmt: bool) -> Result<Run> {
    let data = data_dir();
    fs::write(data.join("params.txt"), format!("block={block}\n"))?;
    let mut qemu = Command::new("timeout");
    qemu.current_dir(&data)
        .args([
            "120",
            "qemu-system-arm",
            "-cpu",
            "cortex-m4",
            "-machine",
            "mps2-an386",
            "-nographic",
        ])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = qemu.spawn().context("could not start qemu-system-arm")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let text = if defmt {
        let out = Command::new("defmt-print")
            .arg("-e")
            .arg(elf)
            .stdin(stdout)
            .stderr(Stdio::inherit())
            .output()
            .context("could not start defmt-print")?;
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut s)?;
        s
    };
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && text.lines().any(|l| l.contains("RESULT: PASS"));
    let mut text = text;
    if !stderr.trim().is_empty() {
        text.push_str(&format!("[qemu stderr] {stderr}"));
    }
    if !out.status.success() {
        text.push_str(&format!("[qemu exit status] {}\n", out.status));
    }
    Ok(Run { ok, text })
}

pub(crate) fn report(variant: &str, block: usize, run: &Run, failed: &mut Vec<String>) {
    println!(
        "---- firmware ({variant}), block {block} bytes: {}",
        if run.ok { "PASS" } else { "FAIL" }
    );
    for l in run.text.lines() {
        println!("  {l}");
    }
    if !run.ok {
        failed.push(format!("{variant}/block {block}"));
    }
}

/// The number after `key: ` on a line of `text`.
pub(crate) fn value(text: &str, key: &str) -> Result<u64> {
    let pat = format!("{key}: ");
    text.lines()
        .find_map(|l| {
            l.split_once(&pat)
                .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        })
        .with_context(|| format!("the firmware printed no `{key}` line"))
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

// ---------------------------------------------------------------------------------------------
// Test data: two commits sharing most objects, the updates between them, the expected images.

/// A directory tree.
enum Node {
    File(Vec<u8>),
    Dir(BTreeMap<String, Node>),
}

fn dir(entries: Vec<(&str, Node)>) -> Node {
    Node::Dir(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// Flash address the test images are linked at (literal words point into it).
const LINK_BASE: u32 = 0x0800_0000;

/// A deterministic firmware-like image: Thumb-ish code words, string tables, and literal
/// words (4-byte aligned) holding addresses inside the image, as a linker lays them out.
fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(5) {
            out.extend_from_slice(b"ECU diagnostic string table entry ");
        } else if x.is_multiple_of(7) {
            out.resize(out.len().next_multiple_of(4), 0);
            let target = LINK_BASE + (x >> 24) as u32 % len as u32;
            out.extend_from_slice(&target.to_le_bytes());
        } else {
            out.extend_from_slice(&((x as u16 & 0x0fff) | 0x4600).to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The next build of `old` after a small code change: `code` inserted at `at` (4-byte
/// aligned), and every literal word that pointed at or past `at` moved by its length, as a
/// relink moves them. Everything after the change shifts; few bytes really differ.
fn rebuilt(old: &[u8], at: usize, code: &[u8]) -> Vec<u8> {
    let shift = code.len() as u32;
    let moved = LINK_BASE + at as u32..LINK_BASE + old.len() as u32;
    let mut new = old.to_vec();
    for w in new.chunks_exact_mut(4) {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if moved.contains(&v) {
            w.copy_from_slice(&(v + shift).to_le_bytes());
        }
    }
    new.splice(at..at, code.iter().copied());
    new
}

type Objects = BTreeMap<(u8, ObjectId), Vec<u8>>;

fn put(objects: &mut Objects, kind: ObjectKind, bytes: Vec<u8>) -> ObjectId {
    let id = ObjectId::of(&bytes);
    objects.insert((kind.code(), id), bytes);
    id
}

fn build_dir(node: &BTreeMap<String, Node>, objects: &mut Objects) -> Result<(ObjectId, ObjectId)> {
    let m = DirMeta {
        mode: S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
        xattrs: Xattrs::EMPTY,
    };
    let meta = put(objects, ObjectKind::DirMeta, m.to_vec());
    let mut entries = Vec::with_capacity(node.len());
    for (name, child) in node {
        let e = match child {
            Node::File(c) => DirEntry::File {
                name: name.as_bytes(),
                id: put(
                    objects,
                    ObjectKind::File,
                    object::file_object(0o644, 0, 0, c),
                ),
            },
            Node::Dir(d) => {
                let (tree, meta) = build_dir(d, objects)?;
                DirEntry::Dir {
                    name: name.as_bytes(),
                    tree,
                    meta,
                }
            }
        };
        entries.push(e);
    }
    let tree = object::dirtree_object(&entries).context("encoding a test dirtree")?;
    Ok((put(objects, ObjectKind::DirTree, tree), meta))
}

struct Built {
    commit: ObjectId,
    objects: Objects,
    root: (ObjectId, ObjectId),
    version: String,
}

fn build_commit(
    tree: &Node,
    parent: Option<ObjectId>,
    version: &str,
    security_version: u64,
) -> Result<Built> {
    let Node::Dir(root) = tree else {
        unreachable!("the root is a directory")
    };
    let mut objects = BTreeMap::new();
    let (rt, rm) = build_dir(root, &mut objects)?;
    let c = Commit {
        parent,
        timestamp: 1_760_000_000,
        root_tree: rt,
        root_meta: rm,
        version,
        subject: "ECU firmware",
        body: "",
        security_version,
    };
    let b = c.to_vec().context("encoding a test commit")?;
    let commit = put(&mut objects, ObjectKind::Commit, b);
    Ok(Built {
        commit,
        objects,
        root: (rt, rm),
        version: version.to_string(),
    })
}

/// An update file to `to` (from scratch, or a delta reusing what `from` has and patching
/// each new file from the source's `firmware.bin` when the patch pays).
fn update_file(to: &Built, from: Option<&Built>, seed: &[u8; 32]) -> Result<Vec<u8>> {
    let have: BTreeSet<(u8, ObjectId)> = from
        .map(|f| f.objects.keys().copied().collect())
        .unwrap_or_default();
    let mut w = UpdateWriter::new(
        REF,
        from.map(|f| f.commit),
        to.commit,
        1_760_000_000,
        &to.version,
        "ECU firmware",
    )
    .part_size(32 * 1024)
    // The firmware's agent is built without xz, and lends deflate's 32 KiB window.
    .codec(Codec::Deflate)
    .max_dictionary(32 * 1024);
    let mut done = BTreeSet::new();
    let source = from.and_then(|f| {
        let (tree, _) = f.root;
        let body = &f.objects[&(ObjectKind::DirTree.code(), tree)];
        let t = DirTree::parse(body).ok()?;
        t.entries().find_map(|e| match e {
            DirEntry::File { name, id } if name == b"firmware.bin" => {
                f.objects.get(&(ObjectKind::File.code(), id)).cloned()
            }
            _ => None,
        })
    });
    let mut e = Emit {
        have: &have,
        done: &mut done,
        source: source.as_deref(),
        w: &mut w,
    };
    emit_tree(to, to.root.0, to.root.1, &mut e)?;
    let ck = (ObjectKind::Commit.code(), to.commit);
    w.write_object(ObjectKind::Commit, to.commit, &to.objects[&ck])?;
    let mut out = Vec::new();
    w.finish(Some(seed), &mut out)
        .map_err(|e| anyhow::anyhow!("writing the update: {e}"))?;
    Ok(out)
}

/// What [`emit_tree`] needs: what the source has, what is done, the source image to patch
/// from, the writer.
struct Emit<'a> {
    have: &'a BTreeSet<(u8, ObjectId)>,
    done: &'a mut BTreeSet<(u8, ObjectId)>,
    source: Option<&'a [u8]>,
    w: &'a mut UpdateWriter,
}

/// Writes, patches or reuses one object; true when done (a dirtree still to be written says
/// false).
fn emit_one(b: &Built, kind: ObjectKind, id: ObjectId, e: &mut Emit<'_>) -> Result<bool> {
    let key = (kind.code(), id);
    if !e.done.insert(key) {
        return Ok(true);
    }
    if e.have.contains(&key) {
        e.w.reuse_object(kind, id);
        return Ok(true);
    }
    if kind == ObjectKind::DirTree {
        return Ok(false);
    }
    let bytes = &b.objects[&key];
    if let (ObjectKind::File, Some(old)) = (kind, e.source) {
        let p = agent_core::write::diff(old, bytes);
        if agent_core::write::patch_pays(bytes, &p) {
            let len = bytes.len() as u64;
            e.w.patch_object(kind, id, len, ObjectId::of(old), &p)?;
            return Ok(true);
        }
    }
    e.w.write_object(kind, id, bytes)?;
    Ok(true)
}

fn emit_tree(b: &Built, tree: ObjectId, meta: ObjectId, e: &mut Emit<'_>) -> Result<()> {
    emit_one(b, ObjectKind::DirMeta, meta, e)?;
    if emit_one(b, ObjectKind::DirTree, tree, e)? {
        return Ok(());
    }
    let body = b.objects[&(ObjectKind::DirTree.code(), tree)].clone();
    let t = DirTree::parse(&body).map_err(|e| anyhow::anyhow!("{e}"))?;
    for entry in t.entries() {
        match entry {
            DirEntry::File { id, .. } => {
                emit_one(b, ObjectKind::File, id, e)?;
            }
            DirEntry::Dir { tree, meta, .. } => emit_tree(b, tree, meta, e)?,
        }
    }
    e.w.write_object(ObjectKind::DirTree, tree, &body)?;
    Ok(())
}

fn hex_bytes<const N: usize>(s: &str) -> Result<[u8; N]> {
    let s = s.trim();
    ensure!(
        s.len() == 2 * N,
        "expected {} hex digits, found {}",
        2 * N,
        s.len()
    );
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

/// Writes the scenario files into `tests/firmware/target/fw-data`: `v1.update` (from scratch,
/// security version 1), `v1-v2.update` (delta, security version 2), `v2-flipped.update` (v2
/// from scratch, one byte flipped in the middle), `v1.bin` and `v2.bin` (the images the slots
/// must hold). The firmware replays `v1.update` after v2 is marked good: below the floor.
/// The delta patches `firmware.bin` (a small code change, relinked) from v1's.
pub(crate) fn gen_data() -> Result<Sizes> {
    let fw = fw_dir();
    let seed: [u8; 32] =
        hex_bytes(&fs::read_to_string(fw.join("test-key")).context("tests/firmware/test-key")?)?;
    let public: [u8; 32] = hex_bytes(&fs::read_to_string(fw.join("test-key.pub"))?)?;
    let derived = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    ensure!(
        derived == public,
        "tests/firmware/test-key.pub is not the public key of tests/firmware/test-key"
    );

    let fw1 = image(1, 72 * 1024 + 13);
    // The next build: 40 bytes of new code a third of the way in, everything after it
    // relinked.
    let fw2 = rebuilt(&fw1, 24 * 1024, &image(9, 40));
    let cal = image(3, 2048);
    let tree = |fw: Vec<u8>, extra: bool| {
        let mut lib = vec![
            ("crypto.bin", Node::File(image(4, 6000))),
            (
                "deep",
                dir(vec![(
                    "a",
                    dir(vec![(
                        "b",
                        dir(vec![("c.txt", Node::File(b"c\n".to_vec()))]),
                    )]),
                )]),
            ),
        ];
        if extra {
            lib.push(("uds.bin", Node::File(image(5, 900))));
        }
        dir(vec![
            (
                "config",
                dir(vec![
                    ("app.cfg", Node::File(b"can.bitrate=500000\n".to_vec())),
                    ("cal.bin", Node::File(cal.clone())),
                ]),
            ),
            ("firmware.bin", Node::File(fw)),
            ("lib", dir(lib)),
        ])
    };
    // v2 at a higher security version: once it is marked good, v1.update is below the floor.
    let v1 = build_commit(&tree(fw1.clone(), false), None, "1.0.0", 1)?;
    let v2 = build_commit(&tree(fw2.clone(), true), Some(v1.commit), "1.1.0", 2)?;
    let full1 = update_file(&v1, None, &seed)?;
    let delta = update_file(&v2, Some(&v1), &seed)?;
    let full2 = update_file(&v2, None, &seed)?;
    let mut flipped = full2.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let data = data_dir();
    fs::create_dir_all(&data)?;
    for (name, bytes) in [
        ("v1.update", &full1),
        ("v1-v2.update", &delta),
        ("v2-flipped.update", &flipped),
        ("v1.bin", &fw1),
        ("v2.bin", &fw2),
    ] {
        fs::write(data.join(name), bytes)?;
    }
    eprintln!(
        "xtask: firmware data: v1.update {} B, v1-v2.update {} B (delta), v2-flipped.update {} B (byte {mid} flipped), images {} and {} B",
        full1.len(),
        delta.len(),
        flipped.len(),
        fw1.len(),
        fw2.len()
    );
    Ok(Sizes {
        full: full2.len() as u64,
        delta: delta.len() as u64,
    })
}

/// Bytes of the update files to the second build: from scratch and as a delta from the first.
pub(crate) struct Sizes {
    pub(crate) full: u64,
    pub(crate) delta: u64,
}

/// Size of the symbol `name` of an ELF (`nm -S`).
pub(crate) fn symbol_size(elf: &Path, name: &str) -> Result<u64> {
    symbols(elf)?
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.size)
        .with_context(|| format!("no symbol {name} in {}", elf.display()))
}
