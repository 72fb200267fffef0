//! `cargo xtask fuzz`: checks the seed corpus, then runs every cargo-fuzz target in `fuzz/`
//! for a while (`docs/FUZZ.md`).
//!
//! Installs the nightly toolchain and cargo-fuzz when they are missing. `cargo xtask test`
//! runs it as a smoke run ([`smoke`]).
//!
//! Options: `--seconds N` per target (default 20), `--target T` (repeatable; default all),
//! `--asan` to build with AddressSanitizer (default: no sanitizer, as the fuzzed code is safe
//! Rust; debug assertions and overflow checks are always on).
//!
//! New inputs the fuzzer finds go to `<target dir>/fuzz-corpus/<target>/`; the committed seeds
//! in `fuzz/corpus/<target>/` are only read. A crash fails the task and leaves its input in
//! `fuzz/artifacts/<target>/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tools;

/// The fuzz targets, in the order they run.
pub const TARGETS: &[&str] = &[
    "installer_bytes",
    "installer_mutated",
    "bootenv_parse",
    "bootstate_ops",
    "env_load",
    "sysroot_ops",
    "index_parse",
];

const NIGHTLY: &str = "nightly";

fn nightly_installed() -> Result<bool> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("could not run `rustup toolchain list` (cargo-fuzz needs rustup's nightly)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("nightly")))
}

/// Installs the nightly toolchain cargo-fuzz needs (minimal profile) when it is missing.
pub fn ensure_nightly() -> Result<()> {
    if nightly_installed()? {
        return Ok(());
    }
    eprintln!("xtask: installing the nightly toolchain for cargo-fuzz (rustup toolchain install nightly --profile minimal)");
    tools::run(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
    ]))
}

/// Seconds each target runs in the smoke run of `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 10;

/// The smoke run of `cargo xtask test`: installs nightly and cargo-fuzz when missing (the
/// tool goes to cargo's own bin directory, outside the clone, and is reused), then checks the
/// seeds and runs every target for [`SMOKE_SECONDS`]. When they cannot be installed, the run
/// is skipped with a warning, except under CI (`CI=true`), where that fails.
pub fn smoke() -> Result<()> {
    let tools_ready =
        ensure_nightly().and_then(|()| tools::ensure_cargo_tool("cargo-fuzz", "cargo-fuzz"));
    if let Err(e) = tools_ready {
        if tools::in_ci() {
            return Err(e.context("under CI the fuzz smoke run needs nightly and cargo-fuzz"));
        }
        eprintln!("xtask: WARNING: fuzz smoke run skipped ({e:#}); run `cargo xtask fuzz` once they install");
        return Ok(());
    }
    run(&["--seconds".to_string(), SMOKE_SECONDS.to_string()])
}

/// Runs the task with `args` (see the module docs).
pub fn run(args: &[String]) -> Result<()> {
    let mut seconds: u64 = 20;
    let mut targets: Vec<String> = Vec::new();
    let mut asan = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds {v}: not a whole number of seconds"))?;
            }
            "--target" => {
                let t = it.next().context("--target needs a fuzz target name")?;
                if !TARGETS.contains(&t.as_str()) {
                    bail!("unknown fuzz target `{t}`; the targets are {TARGETS:?}");
                }
                targets.push(t.clone());
            }
            "--asan" => asan = true,
            other => bail!("unknown option `{other}` (use --seconds N, --target T, --asan)"),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }

    ensure_nightly()?;
    tools::ensure_cargo_tool("cargo-fuzz", "cargo-fuzz")?;

    let root = tools::root();
    let fuzz_dir = root.join("fuzz");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));

    // The seeds are what the corpus test builds, and each reaches what it is meant to.
    eprintln!("xtask fuzz: checking the seed corpus (cargo test in fuzz/)");
    tools::run(
        Command::new("rustup")
            .args(["run", NIGHTLY, "cargo", "test", "--lib", "--quiet"])
            .current_dir(&fuzz_dir),
    )?;

    for t in &targets {
        let scratch = target_dir.join("fuzz-corpus").join(t);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("could not create {}", scratch.display()))?;
        let seeds = fuzz_dir.join("corpus").join(t);
        eprintln!("xtask fuzz: {t} for {seconds} s");
        let mut cmd = Command::new("rustup");
        cmd.args(["run", NIGHTLY, "cargo", "fuzz", "run", "--debug-assertions"]);
        if !asan {
            cmd.args(["--sanitizer", "none"]);
        }
        cmd.arg(t)
            .arg(&scratch)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(&fuzz_dir);
        tools::run(&mut cmd).with_context(|| {
            format!(
                "fuzz target {t} failed; the input is in {}",
                fuzz_dir.join("artifacts").join(t).display()
            )
        })?;
    }
    Ok(())
}
