//! `include/ecu_boot_state.h` against the Rust crate: the header's constants match the Rust
//! layout, and its plain-C decision (compiled with gcc) gives the same slot, kind and record
//! bytes as the C ABI function `ecu_boot_decide` for random record pairs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bootloader_hooks::ffi::{decide_into, EcuBootDecision, ECU_BOOT_OK};
use bootloader_hooks::flash_record::{self, field, RECORD_LEN};
use bootloader_hooks::{BootState, SlotName, SlotState};
use common::*;
use proptest::prelude::*;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

fn header() -> String {
    std::fs::read_to_string(Path::new(CRATE).join("include/ecu_boot_state.h")).unwrap()
}

/// Evaluates a `#define NAME expr` of the header (numbers, other names, + and *).
fn define(h: &str, name: &str) -> u64 {
    let line = h
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("#define"))
        .unwrap_or_else(|| panic!("#define {name} missing"));
    let expr = line
        .split_whitespace()
        .skip(2)
        .collect::<Vec<_>>()
        .join(" ");
    let expr = expr.split("/*").next().unwrap();
    eval(h, expr)
}

fn eval(h: &str, expr: &str) -> u64 {
    let expr = expr.trim().trim_start_matches('(').trim_end_matches(')');
    if let Some((a, b)) = expr.split_once(" + ") {
        return eval(h, a) + eval(h, b);
    }
    if let Some((a, b)) = expr.split_once(" * ") {
        return eval(h, a) * eval(h, b);
    }
    let t = expr.trim().trim_end_matches('u');
    if let Some(x) = t.strip_prefix("0x") {
        return u64::from_str_radix(x, 16).unwrap();
    }
    t.parse().unwrap_or_else(|_| define(h, t))
}

#[test]
fn header_constants_match_rust_layout() {
    let h = header();
    for (name, rust) in [
        ("ECU_BOOT_MAGIC", flash_record::MAGIC as u64),
        ("ECU_BOOT_VERSION", flash_record::VERSION as u64),
        ("ECU_BOOT_RECORD_LEN", RECORD_LEN as u64),
        ("ECU_BOOT_SLOT_LEN", flash_record::SLOT_LEN as u64),
        ("ECU_BOOT_OFF_REVISION", field::REVISION as u64),
        ("ECU_BOOT_OFF_SLOT_A", field::SLOT_A as u64),
        ("ECU_BOOT_OFF_SLOT_B", field::SLOT_B as u64),
        ("ECU_BOOT_OFF_CRC", field::CRC as u64),
        ("ECU_BOOT_OFF_FLOOR", field::FLOOR as u64),
        (
            "ECU_BOOT_OFF_SECURITY_VERSION",
            field::SECURITY_VERSION as u64,
        ),
        ("ECU_BOOT_V1_OFF_CRC", field::V1_CRC as u64),
        ("ECU_BOOT_V1_RECORD_LEN", flash_record::V1_RECORD_LEN as u64),
        ("ECU_BOOT_VERSION_1", flash_record::VERSION_1 as u64),
        ("ECU_BOOT_SLOT_OFF_TRIES", field::SLOT_TRIES as u64),
        ("ECU_BOOT_SLOT_OFF_FLAGS", field::SLOT_FLAGS as u64),
        ("ECU_BOOT_SLOT_OFF_NAME_LEN", field::SLOT_NAME_LEN as u64),
        ("ECU_BOOT_SLOT_OFF_NAME", field::SLOT_NAME as u64),
        (
            "ECU_BOOT_FLAG_SUCCESSFUL",
            flash_record::FLAG_SUCCESSFUL as u64,
        ),
    ] {
        assert_eq!(
            define(&h, name),
            rust,
            "{name} in the header against the Rust layout"
        );
    }
}

fn c_program() -> Option<PathBuf> {
    static BIN: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if !have("gcc", "c_header") {
            return None;
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ecu-boot-decide");
        run(Command::new("gcc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
            .arg(Path::new(CRATE).join("include"))
            .arg(Path::new(CRATE).join("tests/c/decide.c"))
            .arg("-o")
            .arg(&out));
        Some(out)
    })
    .clone()
}

/// decide.c linked against the crate built as a staticlib (`cargo rustc --crate-type
/// staticlib`), so it calls the Rust `ecu_boot_decide` through the header's declaration.
fn c_program_with_rust() -> Option<PathBuf> {
    static BIN: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if !have("gcc", "c_header_with_rust") {
            return None;
        }
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let target = tmp.join("staticlib");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo)
            .args([
                "rustc",
                "-q",
                "-p",
                "bootloader-hooks",
                "--release",
                "--features",
                "std",
            ])
            .args(["--crate-type", "staticlib", "--manifest-path"])
            .arg(Path::new(CRATE).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target));
        let out = tmp.join("ecu-boot-decide-rust");
        run(Command::new("gcc")
            .args([
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-O1",
                "-DWITH_RUST",
                "-I",
            ])
            .arg(Path::new(CRATE).join("include"))
            .arg(Path::new(CRATE).join("tests/c/decide.c"))
            .arg(target.join("release/libbootloader_hooks.a"))
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&out));
        Some(out)
    })
    .clone()
}

fn slot_state() -> impl Strategy<Value = SlotState> {
    (
        0u8..4,
        0u8..4,
        any::<bool>(),
        "[a-z0-9]{0,20}",
        any::<u64>(),
    )
        .prop_map(
            |(priority, tries_left, successful, n, security_version)| SlotState {
                priority,
                tries_left,
                successful,
                name: SlotName::from_str(&n).unwrap(),
                security_version,
            },
        )
}

/// `state` as a version-1 record (floor and security versions dropped), in a buffer of
/// [`RECORD_LEN`] bytes padded with `0xFF` as on flash.
fn emit_v1(state: &BootState) -> [u8; RECORD_LEN] {
    let mut r = [0xFFu8; RECORD_LEN];
    flash_record::emit(state, &mut r);
    r[4..8].copy_from_slice(&[1, 0, 0x18, 0x01]);
    let crc = bootloader_hooks::crc32(&r[..field::V1_CRC]);
    r[field::V1_CRC..field::V1_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    r[flash_record::V1_RECORD_LEN..].fill(0xFF);
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn c_decision_equals_rust(a in slot_state(), b in slot_state(), rev in any::<u32>(), floor in any::<u64>(), v1 in any::<bool>(), other in prop_oneof![Just(0u8), Just(1), Just(2)], swap in any::<bool>()) {
        let Some(bin) = c_program() else { return Ok(()) };
        let state = BootState { slots: [a, b], revision: rev, floor, ..Default::default() };
        let mut cur = [0u8; RECORD_LEN];
        flash_record::emit(&state, &mut cur);
        if v1 { cur = emit_v1(&state); }
        // the other copy: erased, corrupted, or an older valid state
        let mut oth = [0xFFu8; RECORD_LEN];
        match other {
            0 => {}
            1 => { oth = cur; oth[50] ^= 1; }
            _ => { let mut o = state; o.revision = rev.wrapping_sub(1); o.slots.swap(0, 1); flash_record::emit(&o, &mut oth); }
        }
        let (c0, c1) = if swap { (oth, cur) } else { (cur, oth) };
        let dir = tempfile::tempdir().unwrap();
        let (p0, p1, pout) = (dir.path().join("c0"), dir.path().join("c1"), dir.path().join("out"));
        std::fs::write(&p0, c0).unwrap();
        std::fs::write(&p1, c1).unwrap();
        let out = run(Command::new(&bin).arg(&p0).arg(&p1).arg(&pout));
        let line = String::from_utf8(out.stdout).unwrap();
        let field = |n: &str| -> i64 {
            line.split_whitespace().find_map(|w| w.strip_prefix(n)).unwrap().parse().unwrap()
        };
        let mut rust = EcuBootDecision { slot: 9, write_needed: 9, write_copy: 9, kind: 9, record: [0; RECORD_LEN] };
        prop_assert_eq!(decide_into(&c0, &c1, &mut rust), ECU_BOOT_OK);
        prop_assert_eq!(field("rc="), 0);
        prop_assert_eq!(field("slot=") as u8, rust.slot);
        prop_assert_eq!(field("kind=") as u8, rust.kind);
        prop_assert_eq!(field("write=") as u8, rust.write_needed);
        prop_assert_eq!(field("sizeof=") as usize, std::mem::size_of::<EcuBootDecision>());
        prop_assert_eq!(field("offsetof_record=") as usize, 4);
        let (_, current) = flash_record::select(&c0, &c1).unwrap();
        let num = |n: &str| -> u64 {
            line.split_whitespace().find_map(|w| w.strip_prefix(n)).unwrap().parse().unwrap()
        };
        prop_assert_eq!(num("floor="), current.floor);
        prop_assert_eq!(num("sv_a="), current.slots[0].security_version);
        prop_assert_eq!(num("sv_b="), current.slots[1].security_version);
        if v1 {
            prop_assert_eq!((current.floor, current.slots[1].security_version), (0, 0));
        }
        if rust.write_needed == 1 {
            prop_assert_eq!(field("copy=") as u8, rust.write_copy);
            prop_assert_eq!(std::fs::read(&pout).unwrap(), rust.record.to_vec());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rust_c_abi_called_from_c_equals_c_decision(a in slot_state(), b in slot_state(), rev in any::<u32>(), floor in any::<u64>(), v1 in any::<bool>(), corrupt in any::<bool>()) {
        let Some(bin) = c_program_with_rust() else { return Ok(()) };
        let state = BootState { slots: [a, b], revision: rev, floor, ..Default::default() };
        let mut c0 = [0u8; RECORD_LEN];
        flash_record::emit(&state, &mut c0);
        if v1 { c0 = emit_v1(&state); }
        let mut c1 = [0xFFu8; RECORD_LEN];
        if corrupt { c1 = c0; c1[7] ^= 0x40; }
        let dir = tempfile::tempdir().unwrap();
        let (p0, p1, pout) = (dir.path().join("c0"), dir.path().join("c1"), dir.path().join("out"));
        std::fs::write(&p0, c0).unwrap();
        std::fs::write(&p1, c1).unwrap();
        let out = String::from_utf8(run(Command::new(&bin).arg(&p0).arg(&p1).arg(&pout)).stdout).unwrap();
        prop_assert!(out.contains("rust_equal=1"), "{}", out);
        prop_assert!(!out.contains("rust_einval=0"), "{}", out);
    }
}
