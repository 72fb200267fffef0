//! `cargo xtask test`: everything CI runs, in order, stopping at the first failure.

use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use crate::tools::{self, run as sh};

/// The `no_std` crates and the feature sets each is built with for the Cortex-M targets.
const NO_STD_CRATES: &[&str] = &["agent-core", "bootloader-hooks"];
const NO_STD_FEATURES: &[&[&str]] = &[&[], &["defmt"], &["log"]];
const NO_STD_TARGETS: &[&str] = &["thumbv7em-none-eabihf", "thumbv6m-none-eabi"];

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(tools::root());
    c
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("\n==> {name}");
    let t = Instant::now();
    f()?;
    eprintln!("<== {name}: ok ({:.1} s)", t.elapsed().as_secs_f64());
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let start = Instant::now();
    step(
        "toolchain: rustup targets and components",
        tools::ensure_rust,
    )?;
    step(
        "Debian packages for the real-tool tests",
        tools::ensure_packages,
    )?;
    step(
        "cargo fmt --check (the workspace, fuzz/ and tests/firmware)",
        || {
            sh(cargo().args(["fmt", "--all", "--check"]))?;
            // Outside the workspace: `--all` does not reach them.
            for manifest in ["fuzz/Cargo.toml", "tests/firmware/Cargo.toml"] {
                sh(cargo().args(["fmt", "--check", "--manifest-path", manifest]))?;
            }
            Ok(())
        },
    )?;
    step(
        "cargo clippy --workspace --all-targets -- -D warnings",
        || {
            sh(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        },
    )?;
    step(
        "U-Boot build: vexpress-a9 for RAUC and Mender (once per machine)",
        || crate::uboot::ensure().map(|_| ()),
    )?;
    step("cargo test --workspace", || {
        sh(cargo().args(["test", "--workspace"]))
    })?;
    step(
        "cargo doc (the library crates, warnings are errors)",
        || {
            sh(cargo()
                .args([
                    "doc",
                    "--no-deps",
                    "--lib",
                    "-p",
                    "agent-core",
                    "-p",
                    "bootloader-hooks",
                    "-p",
                    "agent-linux",
                    "-p",
                    "test-support",
                ])
                .env("RUSTDOCFLAGS", "-D warnings"))
        },
    )?;
    for target in NO_STD_TARGETS {
        for krate in NO_STD_CRATES {
            for features in NO_STD_FEATURES {
                let label = format!(
                    "build {krate} for {target} (features: {})",
                    features.join(",").as_str()
                );
                step(&label, || {
                    let mut c = cargo();
                    c.args([
                        "build",
                        "--quiet",
                        "-p",
                        krate,
                        "--target",
                        target,
                        "--no-default-features",
                    ]);
                    if !features.is_empty() {
                        c.arg("--features").arg(features.join(","));
                    }
                    sh(&mut c)
                })?;
            }
        }
    }
    // bootloader-hooks' NorFlash record store (feature `embedded-storage`), with a logger; its
    // serde impls (feature `serde`, what agent-linux's typed reports use) without std.
    for target in NO_STD_TARGETS {
        for features in ["embedded-storage,defmt", "embedded-storage,log", "serde"] {
            step(
                &format!("build bootloader-hooks for {target} (features: {features})"),
                || {
                    sh(cargo().args([
                        "build",
                        "--quiet",
                        "-p",
                        "bootloader-hooks",
                        "--target",
                        target,
                        "--no-default-features",
                        "--features",
                        features,
                    ]))
                },
            )?;
        }
    }
    // libecu_update.a (agent-core's C API) for the Cortex-M targets.
    for target in NO_STD_TARGETS {
        step(&format!("build ecu-update-capi for {target}"), || {
            sh(cargo().args([
                "build",
                "--quiet",
                "-p",
                "ecu-update-capi",
                "--target",
                target,
            ]))
        })?;
    }
    if !quick {
        step(
            &format!(
                "fuzz smoke run: seeds, then every target for {} s (nightly, cargo-fuzz)",
                crate::fuzz::SMOKE_SECONDS
            ),
            crate::fuzz::smoke,
        )?;
        step("firmware scenarios under QEMU", crate::firmware::firmware)?;
        step(
            "C firmware scenarios under QEMU (libecu_update.a)",
            crate::c_firmware::c_firmware,
        )?;
        step("firmware size report", crate::firmware::size)?;
    }
    eprintln!(
        "\nxtask test: all steps passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
